"""A ``%%orchestrate`` cell read and checked: its options, its prompt, the run it asks for.

Shared by the magics (which run a cell) and the app (which writes one and runs it), so
neither reaches into the other. A mistake is one ``UsageError`` line.
"""

from __future__ import annotations

import argparse
import inspect
import keyword
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from IPython.core import magic_arguments as ma
from IPython.core.error import UsageError

from ..errors import ConfigError
from .cell_messages import flag_hint
from .settings import CACHE_MODES, DEFAULT_OUT, PROGRESS_MODES, Orchestrate

__all__ = ["CellRun", "cell_options", "format_cell", "parse_options", "prepare", "usage"]

F = TypeVar("F", bound=Callable[..., Any])


class _Picked(argparse.Action):
    """``-m``: each model with the ``--api-base``/``--api-key-env`` in force where it is named."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        picks = list(getattr(namespace, "model", None) or [])
        endpoint = (getattr(namespace, "api_base", None), getattr(namespace, "api_key_env", None))
        picks.append((values, *endpoint))
        namespace.model = picks


class _Endpoint(argparse.Action):
    """``--api-base``/``--api-key-env``: for the ``-m`` after it (all models if none follows)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        setattr(namespace, self.dest, values)
        # How many models were named before it: those keep what they had.
        setattr(namespace, f"{self.dest}_after", len(getattr(namespace, "model", None) or []))


# The options of %%orchestrate, top to bottom as ``%%orchestrate?`` lists them.
_OPTIONS = [
    ma.argument(
        "-m",
        "--model",
        action=_Picked,
        metavar="MODEL",
        help="a litellm model id, an alias, or a notebook variable holding an nbt.Model (or a "
        "list of them); repeat it, or separate ids with commas",
    ),
    ma.argument(
        "--api-base",
        dest="api_base",
        action=_Endpoint,
        metavar="URL",
        help="an OpenAI-compatible server (vLLM, Ollama's /v1, LM Studio, a LiteLLM proxy) for "
        "the -m models after it (for every model when no -m follows)",
    ),
    ma.argument(
        "--api-key-env",
        dest="api_key_env",
        action=_Endpoint,
        metavar="NAME",
        help="the environment variable holding the key for the -m models after it (the "
        "variable's name, never the key)",
    ),
    ma.argument("-s", "--strategy", help="consensus strategy (default: vote)"),
    ma.argument(
        "--extract",
        action="append",
        metavar="SPEC",
        help="read the answer: number, choice, json, json:FIELD or a regex; repeat for steps",
    ),
    ma.argument("--schema", metavar="NAME", help="a pydantic model class in the notebook"),
    ma.argument("--over", metavar="NAME", help="a DataFrame in the notebook: one run per row"),
    ma.argument(
        "--out", metavar="NAME", help=f"bind the RunResult to NAME (default {DEFAULT_OUT})"
    ),
    ma.argument("--samples", type=int, metavar="N", help="ask each model N times"),
    ma.argument("--temperature", type=float, metavar="T"),
    ma.argument("--seed", type=int, metavar="N", help="a seed, for providers that take one"),
    ma.argument("--max-tokens", type=int, dest="max_tokens", metavar="N"),
    ma.argument("--system", metavar="TEXT", help="a system message"),
    ma.argument("--judge", metavar="MODEL", help="let MODEL pick the best answer (judge strategy)"),
    ma.argument(
        "--threshold",
        type=float,
        metavar="N",
        help="cascade: stop asking a row's models once N answers agree (default 2); below 1, "
        "a share of the answers asked (0.6)",
    ),
    ma.argument(
        "--cache", choices=CACHE_MODES, metavar="MODE", help="use, refresh, off or replay-only"
    ),
    ma.argument("--recordings", metavar="PATH", help="recordings for replay/ models"),
    ma.argument("--concurrency", type=int, metavar="N", help="calls in flight at once"),
    ma.argument("--timeout", type=float, metavar="SECONDS", help="per call"),
    ma.argument("--retries", type=int, metavar="N", help="per call, on transient errors"),
    ma.argument("--strict", action="store_true", help="fail the cell if any call fails"),
    ma.argument("--budget", type=float, metavar="USD", help="stop before spending more than USD"),
    ma.argument(
        "--progress", choices=PROGRESS_MODES, metavar="MODE", help="auto, widget, text or none"
    ),
    ma.argument("--no-progress", action="store_true", dest="no_progress", help="no progress"),
    ma.argument(
        "--stream",
        action="store_true",
        help="stream the replies into one pane per model, with a Stop button (in a kernel a "
        "person watches; papermill/nbconvert runs keep only the final table)",
    ),
    ma.argument("--no-stream", action="store_true", dest="no_stream", help="do not stream"),
    ma.argument(
        "--batch",
        action="store_true",
        help="through the providers' batch APIs (about half price, answered within 24 h): "
        "submit, wait, show the result; models without one run live",
    ),
]


def cell_options(fn: F) -> F:
    """Give ``fn`` the options of ``%%orchestrate``: its ``.parser`` and its help text."""
    for option in reversed(_OPTIONS):
        fn = option(fn)
    return ma.magic_arguments("%orchestrate")(fn)  # type: ignore[no-any-return]


@cell_options
def _options(line: str, cell: str) -> None:
    """The options of %%orchestrate (parsed here without a shell)."""


_PARSER = _options.parser  # type: ignore[attr-defined]


@dataclass
class CellRun:
    """A checked ``%%orchestrate`` cell: what to pass to ``orchestrate`` and where to bind it."""

    prompt: str
    models: list[Any]  # model ids, and nbt.Model objects (from the notebook or --api-base)
    options: dict[str, Any] = field(default_factory=dict)
    out: str = DEFAULT_OUT
    progress: str = "auto"
    stream: bool | str = "auto"  # True, False, or "auto" (see Orchestrate.stream)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def usage(message: object) -> UsageError:
    """``message`` as the one line a mistake in a cell shows."""
    return UsageError(_one_line(f"%%orchestrate: {message}"))


def _resolve(name: str, aliases: dict[str, str]) -> str:
    return aliases.get(name, name)


def _models(args: Any, settings: Orchestrate, namespace: dict[str, Any]) -> list[Any]:
    """The cell's models: ids (aliases resolved) and ``Model`` objects from the notebook,
    each with the ``--api-base``/``--api-key-env`` in force where it was named."""
    picks = args.model or [(value, None, None) for value in settings.default_models]
    # A flag after the last -m (or with no -m at all) is for every model without its own.
    for flag in ("api_base", "api_key_env"):
        value = getattr(args, flag, None)
        if value is not None and getattr(args, f"{flag}_after", 0) >= len(args.model or []):
            at = 1 if flag == "api_base" else 2
            picks = [(*p[:at], p[at] or value, *p[at + 1 :]) for p in picks]
    models: list[Any] = []
    for value, api_base, api_key_env in picks:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            found = _model_variable(namespace, part)
            if found is not None:
                if api_base or api_key_env:
                    raise usage(
                        f"-m {part}: '{part}' is an nbt.Model in the notebook, with its own "
                        "settings; set api_base/api_key_env on it, not with --api-base"
                    )
                models.extend(found)
                continue
            model_id = _resolve(part, settings.aliases)
            if api_base or api_key_env:
                models.append(_endpoint_model(model_id, api_base, api_key_env))
            else:
                models.append(model_id)
    if not models:
        raise usage(
            "no models: name them with -m (e.g. -m oracle -m swift), or set "
            "%config Orchestrate.default_models = ['gpt-4o-mini', 'claude-3-5-haiku-20241022']"
        )
    return models


def _model_variable(namespace: dict[str, Any], name: str) -> list[Any] | None:
    """The ``Model`` (or list of them) a notebook variable called ``name`` holds, else None."""
    if not name.isidentifier() or name not in namespace:
        return None
    from ..spec import Model

    value = namespace[name]
    if isinstance(value, Model):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Model) for v in value):
        return list(value)
    return None


def _endpoint_model(model_id: str, api_base: str | None, api_key_env: str | None) -> Any:
    from ..spec import Model

    try:
        return Model(model_id, api_base=api_base, api_key_env=api_key_env)
    except (ConfigError, ValueError) as exc:
        raise usage(f"-m {model_id}: {exc}") from None


def _lookup(namespace: dict[str, Any], name: str, option: str) -> Any:
    if name not in namespace:
        from ..suggest import did_you_mean

        # The notebook's own names only: IPython's In, Out, _i1... are never meant.
        mine = [n for n in namespace if not n.startswith("_") and n not in ("In", "Out")]
        raise usage(
            f"{option} {name}: there is no variable '{name}' in the notebook."
            f"{did_you_mean(name, mine)}"
        )
    return namespace[name]


def _dataframe(namespace: dict[str, Any], name: str) -> Any:
    import pandas as pd

    value = _lookup(namespace, name, "--over")
    if not isinstance(value, pd.DataFrame):
        raise usage(
            f"--over {name}: '{name}' is a {type(value).__name__}, not a pandas DataFrame "
            "(one run per row); for a list of dicts use pd.DataFrame(records)"
        )
    return value


def _schema(namespace: dict[str, Any], name: str) -> Any:
    value = _lookup(namespace, name, "--schema")
    if not (isinstance(value, type) and callable(getattr(value, "model_validate", None))):
        raise usage(
            f"--schema {name}: '{name}' is not a pydantic model class "
            "(class Answer(pydantic.BaseModel): ...)"
        )
    return value


def _variables(
    prompt: str, data: Any, namespace: dict[str, Any], over: str | None
) -> dict[str, Any]:
    from ..templating import Template

    columns = {str(c) for c in data.columns} if data is not None else set()
    variables: dict[str, Any] = {}
    missing = []
    for name in Template(prompt).names:
        if name in columns:
            continue
        if name in namespace:
            variables[name] = namespace[name]
        else:
            missing.append(name)
    if missing:
        where = f"no column of {over} and no variable" if over else "no variable"
        known = f" (columns of {over}: {', '.join(sorted(columns))})" if over else ""
        from ..suggest import closest

        near = closest(missing[0], sorted(columns)) or closest(
            missing[0], [n for n in namespace if not n.startswith("_")]
        )
        fix = f"did you mean {{{near}}}? Or define it" if near else "define it"
        raise usage(
            f"the prompt uses {{{missing[0]}}} but there is {where} called '{missing[0]}' "
            f"in the notebook{known}; {fix}, or write {{{{{missing[0]}}}}} for literal braces"
        )
    return variables


def _positive(option: str, value: float | None, *, zero: bool = False) -> None:
    if value is not None and not (value >= 0 if zero else value > 0):  # NaN fails too
        kind = "zero or more" if zero else "more than zero"
        raise usage(f"{option} {value}: must be {kind}")


def _judge(model: str, strategy: str | None, settings: Orchestrate) -> Any:
    from .. import strategies

    if "judge" not in strategies.names():
        raise usage("--judge is not available yet: this version has no judge strategy")
    if strategy not in (None, "judge"):
        raise usage(f"--judge uses the judge strategy; drop -s {strategy}")
    try:
        return strategies.get("judge", model=_resolve(model, settings.aliases))
    except ConfigError as exc:
        raise usage(exc) from None


def _cascade(threshold: float, strategy: Any) -> Any:
    from .. import strategies

    if strategy != "cascade":
        raise usage(f"--threshold {threshold:g} is the cascade's option: add -s cascade")
    # A count of agreeing answers (2), or below 1 a share of those asked (0.6).
    options: dict[str, Any] = (
        {"threshold": int(threshold)} if threshold.is_integer() else {"threshold": threshold}
    )
    if threshold < 1:
        options["share"] = True
    try:
        return strategies.get("cascade", **options)
    except ConfigError as exc:
        raise usage(exc) from None


def _budget(usd: float) -> dict[str, Any]:
    from .. import api

    if "max_cost_usd" not in inspect.signature(api.orchestrate).parameters:
        raise usage("--budget is not available yet: this version cannot cap a run's cost")
    return {"max_cost_usd": usd}


# A whole option value written as IPython's {expr} or $name.
_EXPANSION = re.compile(r"\{[^{}]+\}|\$[A-Za-z_][A-Za-z0-9_.]*")


def parse_options(line: str) -> Any:
    """The options of a ``%%orchestrate`` line, as an argparse namespace."""
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise usage(f"cannot read the options ({exc}); check the quotes") from None
    for before, token in zip(["", *argv], argv, strict=False):
        if _EXPANSION.fullmatch(token) and before not in ("--extract", "--system"):
            raise usage(
                f"{before} {token}: the %%orchestrate line is not expanded ({{...}} and $name "
                "stay as written, so an --extract regex keeps its {1,5}); write the value "
                "itself, or make nbt.Model(...) in Python and name its variable with -m"
            )
    parser = _PARSER
    try:
        return parser.parse_args(argv)
    except UsageError as exc:
        raise usage(flag_hint(str(exc), parser)) from None


def prepare(line: str, body: str, namespace: dict[str, Any], settings: Orchestrate) -> CellRun:
    """Check a ``%%orchestrate`` cell and turn it into a ``CellRun``; raises ``UsageError``.

    Errors the core would find later (an unknown model, a missing key) are not checked here.
    """
    args = parse_options(line)
    prompt = body.strip()
    if not prompt:
        raise usage("the cell is empty: write the prompt below the %%orchestrate line")
    models = _models(args, settings, namespace)
    for option, value in (
        ("--samples", args.samples),
        ("--max-tokens", args.max_tokens),
        ("--concurrency", args.concurrency),
        ("--timeout", args.timeout),
        ("--budget", args.budget),
    ):
        _positive(option, value)
    _positive("--temperature", args.temperature, zero=True)
    _positive("--retries", args.retries, zero=True)
    out = args.out or DEFAULT_OUT
    if not out.isidentifier() or keyword.iskeyword(out):
        raise usage(f"--out {out}: not a valid Python name")

    data = _dataframe(namespace, args.over) if args.over else None
    steps: list[Any] = list(args.extract or [])
    schema = _schema(namespace, args.schema) if args.schema else None
    extract = None if not steps else steps[0] if len(steps) == 1 else steps
    if args.judge:
        strategy: Any = _judge(args.judge, args.strategy, settings)
    else:
        strategy = args.strategy or settings.default_strategy
    if args.threshold is not None:
        strategy = _cascade(args.threshold, strategy)
    budget = _budget(args.budget) if args.budget is not None else {}
    variables = _variables(prompt, data, namespace, args.over)

    options: dict[str, Any] = {
        "strategy": strategy,
        "extract": extract,
        "concurrency": args.concurrency or settings.concurrency,
        "cache": args.cache or settings.cache,
    }
    if schema is not None:
        options["schema"] = schema  # asks for JSON, validates, and votes field by field
    if data is not None:
        options["data"] = data
    if variables:
        options["variables"] = variables
    optional = {
        "samples": args.samples,
        "temperature": args.temperature,
        "seed": args.seed,
        "max_tokens": args.max_tokens,
        "timeout": args.timeout,
        "retries": args.retries,
        "recordings": args.recordings,
        "system": args.system,
    }
    options.update({k: v for k, v in optional.items() if v is not None})
    if args.strict:
        options["strict"] = True
    if settings.proxy or settings.proxy_key_env:
        options["proxy"] = _proxy(settings)
    if args.batch:
        options["batch"] = True
    options.update(budget)
    progress = "none" if args.no_progress else (args.progress or settings.progress)
    if args.stream and args.no_stream:
        raise usage("--stream and --no-stream: give one of them")
    stream: bool | str = True if args.stream else False if args.no_stream else settings.stream
    if args.batch and args.stream:
        raise usage("--batch and --stream: a batch's replies arrive all at once; give one of them")
    if stream == "auto":
        # Over a DataFrame, on only when asked; a batch has nothing to stream.
        stream = "auto" if data is None and not args.batch else False
    return CellRun(
        prompt=prompt, models=models, options=options, out=out, progress=progress, stream=stream
    )


def _proxy(settings: Orchestrate) -> Any:
    """``%config Orchestrate.proxy`` / ``proxy_key_env`` as the run's ``Proxy``; an unset
    one falls back to its environment variable."""
    import os

    from ..providers.proxy import ENV_KEY_ENV, ENV_URL, Proxy

    url = settings.proxy or os.environ.get(ENV_URL) or ""
    if not url:
        raise usage(
            "Orchestrate.proxy_key_env is set but no proxy is: "
            "%config Orchestrate.proxy = 'http://proxy:4000'"
        )
    try:
        return Proxy(url, settings.proxy_key_env or os.environ.get(ENV_KEY_ENV) or None)
    except ConfigError as exc:
        raise usage(f"Orchestrate.proxy: {exc}") from None


def format_cell(
    prompt: str,
    models: list[str],
    *,
    strategy: str | None = None,
    judge: str | None = None,
    extract: str | None = None,
    over: str | None = None,
    out: str | None = None,
    samples: int | None = None,
    temperature: str | float | None = None,
    seed: str | int | None = None,
    max_tokens: str | int | None = None,
    own_models: list[str] | None = None,
    api_base: str | None = None,
    api_key_env: str | None = None,
    budget: str | float | None = None,
    threshold: str | float | None = None,
) -> str:
    """The ``%%orchestrate`` cell for these options (quoted so that it parses back the same).

    ``own_models`` come after ``--api-base``/``--api-key-env``, so only they go to that server.
    """
    parts = ["%%orchestrate"]
    for model in models:
        parts += ["-m", shlex.quote(model)]
    endpoint = [
        (flag, str(value).strip())
        for flag, value in (("--api-base", api_base), ("--api-key-env", api_key_env))
        if value is not None and str(value).strip()
    ]
    if own_models:
        for flag, setting in endpoint:
            parts += [flag, shlex.quote(setting)]
        for model in own_models:
            parts += ["-m", shlex.quote(model)]
    if judge:
        parts += ["--judge", shlex.quote(judge)]
    elif strategy:
        parts += ["-s", shlex.quote(strategy)]
    for option, value in (
        ("--extract", extract),
        ("--over", over),
        ("--samples", None if samples in (None, 1) else samples),
        ("--temperature", temperature),
        ("--seed", seed),
        ("--max-tokens", max_tokens),
        ("--budget", budget),
        ("--threshold", threshold if strategy == "cascade" and not judge else None),
        ("--out", None if out == DEFAULT_OUT else out),
    ):
        if value is not None and str(value).strip() != "":
            parts += [option, shlex.quote(str(value).strip())]
    return " ".join(parts) + "\n" + prompt.strip() + "\n"
