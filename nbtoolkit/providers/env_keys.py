"""Which environment variables hold each provider's key, read from litellm without importing it.

``import litellm`` takes seconds; a missing key should cost milliseconds (the CLI checks
keys before it starts a kernel) and listing the key variables should make no call at all.
So this module reads litellm's installed files as data, never runs them:

- the key variables per provider, from the source of ``litellm.validate_environment`` (its
  ``custom_llm_provider == ...`` chain: which variables it tests, and which it reports
  missing), parsed with ``ast``; and the ``api_key_env`` of each JSON-configured provider
  (``litellm/llms/openai_like/providers.json``);
- a bare model id's provider, from litellm's price table (``litellm_provider`` of each entry).

Anything it cannot read this way (a provider it does not know, a test it cannot evaluate)
is left to litellm itself (``providers.check_model``): the answer is then ``None``, never a
guess. No provider is asked anything: some would try to authenticate over the network.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import MissingAPIKeyError
from ..spec import Model
from .keys import KEY_VARIABLES, api_base_of, env_base_names, own_host

__all__ = [
    "KeyRule",
    "check_keys",
    "key_lines",
    "key_rules",
    "key_variables",
    "missing_key_variables",
    "model_key_variables",
    "static_provider",
]


class KeyRule:
    """One provider's key check as litellm's ``validate_environment`` makes it.

    ``variables``: the names it reports missing (in its order); ``test``: the parsed
    condition over ``os.environ`` that, when true, means the keys are there.
    """

    def __init__(self, variables: tuple[str, ...], test: ast.expr | None) -> None:
        self.variables = variables
        self.test = test

    def satisfied(self, provider: str, environ: Any = None) -> bool | None:
        """Whether the keys are set; None when the test is not one this module can read."""
        environ = os.environ if environ is None else environ
        if self.test is None:
            return all(bool(environ.get(v)) for v in self.variables)
        return _evaluate(self.test, provider, environ)


def _litellm_dir() -> Path | None:
    # find_spec of a top-level package locates it without executing it.
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.lru_cache(maxsize=1)
def key_rules() -> dict[str, KeyRule]:
    """``{provider: KeyRule}`` for every provider litellm checks a key of, read from its
    installed source and ``providers.json``; empty when litellm is not installed."""
    root = _litellm_dir()
    if root is None:
        return {}
    rules: dict[str, KeyRule] = {}
    try:
        listed = json.loads((root / "llms" / "openai_like" / "providers.json").read_text("utf-8"))
    except (OSError, ValueError):
        listed = {}
    for provider, config in listed.items():
        name = config.get("api_key_env") if isinstance(config, dict) else None
        if isinstance(name, str) and name:
            rules[provider] = KeyRule((name,), None)
    try:
        source = (root / "utils.py").read_text("utf-8")
    except OSError:
        return rules
    rules.update(_validate_environment_rules(source))
    return rules


def _validate_environment_rules(source: str) -> dict[str, KeyRule]:
    start = source.find("\ndef validate_environment(")
    if start < 0:
        return {}
    end = source.find("\ndef ", start + 1)
    try:
        tree = ast.parse(source[start + 1 : end if end > 0 else None])
    except SyntaxError:
        return {}
    chain = next(
        (
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "custom_llm_provider"
        ),
        None,
    )
    if chain is None or not chain.body or not isinstance(chain.body[0], ast.If):
        return {}
    rules: dict[str, KeyRule] = {}
    branch: ast.If | None = chain.body[0]
    while branch is not None:
        providers = _providers_named(branch.test)
        inner = branch.body[0] if branch.body else None
        if providers and isinstance(inner, ast.If):
            for provider in providers:
                names = tuple(_names(inner.orelse, provider))
                if names:
                    rules.setdefault(provider, KeyRule(names, inner.test))
        nxt = branch.orelse
        branch = nxt[0] if len(nxt) == 1 and isinstance(nxt[0], ast.If) else None
    return rules


def _providers_named(test: ast.expr) -> list[str]:
    """The providers an ``elif custom_llm_provider == "x"`` (or ``in [...]``, ``or``) names."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        return [p for value in test.values for p in _providers_named(value)]
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return []
    left, op, right = test.left, test.ops[0], test.comparators[0]
    if not (isinstance(left, ast.Name) and left.id == "custom_llm_provider"):
        return []
    if isinstance(op, ast.Eq) and isinstance(right, ast.Constant) and isinstance(right.value, str):
        return [right.value]
    if isinstance(op, ast.In) and isinstance(right, (ast.List, ast.Tuple, ast.Set)):
        return [
            e.value for e in right.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
        ]
    return []


def _names(body: list[ast.stmt], provider: str) -> list[str]:
    """The variable names ``missing_keys.append(...)``/``extend([...])`` report."""
    out: list[str] = []
    for stmt in body:
        if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
            continue
        call = stmt.value
        if not isinstance(call.func, ast.Attribute) or not call.args:
            continue
        values = (
            call.args[0].elts if isinstance(call.args[0], (ast.List, ast.Tuple)) else [call.args[0]]
        )
        for value in values:
            name = _string(value, provider)
            if name:
                out.append(name)
    return out


def _string(node: ast.expr, provider: str) -> str | None:
    """A constant string, or an f-string of ``custom_llm_provider.upper()`` and text."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for part in node.values:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                parts.append(part.value)
            elif isinstance(part, ast.FormattedValue) and ast.unparse(part.value) == (
                "custom_llm_provider.upper()"
            ):
                parts.append(provider.upper())
            else:
                return None
        return "".join(parts)
    return None


def _evaluate(node: ast.expr, provider: str, environ: Any) -> bool | None:
    """``"NAME" in os.environ``, joined by ``and``/``or``; None for anything else."""
    if isinstance(node, ast.BoolOp):
        values = [_evaluate(v, provider, environ) for v in node.values]
        if any(v is None for v in values):
            return None
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if (
        isinstance(node, ast.Compare)
        and len(node.ops) == 1
        and isinstance(node.ops[0], ast.In)
        and ast.unparse(node.comparators[0]) == "os.environ"
    ):
        name = _string(node.left, provider)
        # litellm tests presence; an empty value is no key either (as check_model treats it).
        return None if name is None else bool(environ.get(name))
    return None


@functools.lru_cache(maxsize=1)
def _price_table_providers() -> dict[str, str]:
    root = _litellm_dir()
    if root is None:
        return {}
    try:
        table = json.loads(
            (root / "model_prices_and_context_window_backup.json").read_text("utf-8")
        )
    except (OSError, ValueError):
        return {}
    return {
        str(name): str(entry["litellm_provider"])
        for name, entry in table.items()
        if isinstance(entry, dict) and entry.get("litellm_provider")
    }


def static_provider(model_id: str) -> str | None:
    """litellm's provider for ``model_id`` read from its files (``openai/x`` -> ``openai``,
    ``gpt-4o-mini`` -> ``openai`` by the price table); None when they do not say."""
    from .registry import PREFIX_PROVIDERS

    table = _price_table_providers()
    if model_id in table:
        return table[model_id]
    prefix, slash, _ = model_id.partition("/")
    known = set(table.values()) | set(key_rules())
    if slash and prefix in known:
        return prefix
    for pattern, provider in PREFIX_PROVIDERS:
        if pattern.match(model_id):
            return provider
    return None


def model_key_variables(model: Model) -> tuple[str, ...]:
    """The key variables ``model`` reads: its ``api_key_env``, else its provider's (``()``
    for an offline model, or a provider litellm's files do not name)."""
    from .registry import is_offline

    if is_offline(model.id):
        return ()
    if model.api_key_env:
        return (model.api_key_env,)
    provider = static_provider(model.id)
    rule = key_rules().get(provider) if provider else None
    if rule is None or provider is None:
        return ()
    base = api_base_of(model.litellm_kwargs())
    if base and not own_host(provider, base):
        return ()  # another server (vLLM, Ollama...): the provider's key never goes there
    return tuple(
        v for v in rule.variables if not v.endswith(("_API_BASE", "_BASE_URL", "_ENDPOINT"))
    )


def missing_key_variables(model: Model) -> tuple[str, ...] | None:
    """The variables ``model`` needs and the environment lacks (either one will do), ``()``
    when none is missing, None when only litellm can tell (then ask ``check_model``).

    The same rules as ``check_model``: an offline model needs none; ``api_key_env`` names
    the one variable; a server other than the provider's own needs none.
    """
    from .registry import is_offline

    if is_offline(model.id):
        return ()
    if model.api_key_env:
        return () if os.environ.get(model.api_key_env) else (model.api_key_env,)
    provider = static_provider(model.id)
    if provider is None:
        return None
    base = api_base_of(model.litellm_kwargs()) or next(
        (os.environ[n] for n in env_base_names(provider) if os.environ.get(n)), None
    )
    if base and not own_host(provider, base):
        return ()
    rule = key_rules().get(provider)
    if rule is None:
        return None
    satisfied = rule.satisfied(provider)
    if satisfied is None:
        return None
    if satisfied:
        return ()
    # *_API_BASE variables have defaults (Ollama's localhost) or come from api_base=.
    return tuple(
        dict.fromkeys(
            v for v in rule.variables if not v.endswith(("_API_BASE", "_BASE_URL", "_ENDPOINT"))
        )
    )


def check_keys(models: list[Model]) -> None:
    """Raise one ``MissingAPIKeyError`` naming every model whose key is not set, read
    without importing litellm (milliseconds); models only litellm can judge are skipped
    (``check_model`` judges them later)."""
    missing: dict[str, tuple[str, ...]] = {}
    for model in models:
        names = missing_key_variables(model)
        if names:
            missing.setdefault(model.label, names)
    if not missing:
        return
    said = "; ".join(f"{label} needs {' or '.join(names)}" for label, names in missing.items())
    first = next(iter(missing.values()))[0]
    error = MissingAPIKeyError(
        f"API keys are missing: {said}. Set them (os.environ['{first}'] = '...'), or pass "
        "Model(..., api_key_env='NAME') for a key kept in another variable"
    )
    error.missing = tuple(missing.items())
    if len(missing) == 1:
        error.model, error.variables = next(iter(missing.items()))
    raise error


def key_variables(models: Sequence[Model] = ()) -> list[tuple[str, bool]]:
    """``(name, is set)`` for every variable litellm reads a provider's key from (read from
    its files, not imported: ``env_keys``), the well-known ones first, then any other
    ``*_API_KEY`` in the environment, then those ``models`` name (``api_key_env``, or their
    provider's). Values are never returned."""
    from_litellm = {
        v
        for rule in key_rules().values()
        for v in rule.variables
        if not v.endswith(("_API_BASE", "_BASE_URL", "_ENDPOINT"))
    }
    names = list(
        dict.fromkeys(
            [
                *KEY_VARIABLES,
                *sorted(from_litellm),
                *sorted(k for k in os.environ if k.endswith("_API_KEY")),
                *(v for m in models for v in model_key_variables(m)),
            ]
        )
    )
    return [(name, bool(os.environ.get(name))) for name in names]


def key_lines(models: Sequence[Model] = ()) -> list[str]:
    """What ``nbtoolkit models`` and ``%orchestrate models`` say of the key variables (one
    list, ``key_variables``): the set ones and those your models name one a line, the other
    unset ones in a paragraph. Names only, never values."""
    import textwrap

    named: dict[str, list[str]] = {}
    for model in models:
        for variable in model_key_variables(model):
            labels = named.setdefault(variable, [])
            if model.label not in labels:
                labels.append(model.label)
    lines = ["API keys in the environment (names only, never values):"]
    unset = []
    for name, is_set in key_variables(models):
        if not is_set and name not in named:
            unset.append(name)
            continue
        used = f"  (for {', '.join(named[name])})" if name in named else ""
        lines.append(f"  {name:<20} {'set' if is_set else 'not set'}{used}")
    if unset:
        lines += textwrap.wrap(
            "not set (the other variables litellm reads keys from): " + ", ".join(unset),
            width=100,
            initial_indent="  ",
            subsequent_indent="    ",
            break_on_hyphens=False,
        )
    return lines
