"""A template's parameters: declared in its ``parameters`` cell, checked before the kernel starts.

``template_parameters(path)`` reads what a template declares, typed by its annotations;
``check_parameters`` checks given values against it (known names, declared types, no
secrets), reading text (``-p NAME VALUE``, a parameters file through ``yaml_text``) as the
declared type; ``check_before_running`` checks what they mean (models, keys, strategies,
answer readers), so a mistake is one line, not a traceback in the notebook.
"""

from __future__ import annotations

import ast
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import KEY_SHAPES, ConfigError, ParameterError, StrategyError, redact

__all__ = [
    "Parameter",
    "check_before_running",
    "check_no_secrets",
    "check_parameters",
    "from_text",
    "parse_cli_value",
    "template_parameters",
    "yaml_text",
]

_TYPES = {"str", "int", "float", "bool", "list", "dict", "any"}


@dataclass(frozen=True)
class Parameter:
    """One parameter of a template's ``parameters`` cell, typed by its annotation."""

    name: str
    type: str  # str | int | float | bool | list | dict | any
    optional: bool = False
    default: Any = None
    help: str = ""
    item: str = "any"  # a list's items or a dict's values: str | int | float | bool | any

    @property
    def kind(self) -> str:
        """The type as a reader writes it: ``int``, ``list[str]``, ``dict[str, int]``."""
        if self.type == "list" and self.item != "any":
            return f"list[{self.item}]"
        if self.type == "dict" and self.item != "any":
            return f"dict[str, {self.item}]"
        return self.type

    def describe(self) -> str:
        kind = f"{self.kind} or None" if self.optional else self.kind
        return f"{self.name} ({kind}, default {self.default!r})" + (
            f": {self.help}" if self.help else ""
        )


_CONTAINERS = {"list": "list", "tuple": "list", "sequence": "list", "dict": "dict"}
_CONTAINERS["mapping"] = "dict"


def _parse_type(annotation: str, default: Any) -> tuple[str, bool, str]:
    """``(type, optional, item type)`` of an annotation as papermill reads it from the
    parameters cell (``Optional[int]``, ``list[str]``, ``dict[str, float] | None``)."""
    text = annotation.replace(" ", "").replace("typing.", "")
    optional = False
    match = re.fullmatch(r"Optional\[(.+)\]", text)
    if match:
        text, optional = match.group(1), True
    for none in ("|None", "None|"):
        if none in text:
            text, optional = text.replace(none, "", 1), True
    match = re.fullmatch(r"(\w+)(?:\[(.*)\])?", text)
    base = match.group(1).lower() if match else ""
    args = (match.group(2) or "") if match else ""
    base = _CONTAINERS.get(base, base)
    item = "any"
    if base == "list" and args:
        item = args.split(",")[0].lower()
    elif base == "dict" and "," in args:
        item = args.split(",", 1)[1].lower()
    item = item if item in _SCALARS else "any"
    if base not in _TYPES - {"any"}:
        if default is None:
            return "any", True, "any"
        base = _CONTAINERS.get(type(default).__name__, type(default).__name__)
        base = base if base in _TYPES else "any"
    return base, optional or default is None, item


_SCALARS = {"str", "int", "float", "bool"}


def template_parameters(path: str | os.PathLike[str]) -> dict[str, Parameter]:
    """The parameters a template declares, with their types (as ``papermill.inspect_notebook``
    reads them, from the cell tagged ``parameters``)."""
    found = _parameters_cell(path)
    if found is None:  # a cell Python cannot parse: papermill's own reading, line by line
        import papermill

        found = papermill.inspect_notebook(str(path))
    declared: dict[str, Parameter] = {}
    for name, info in found.items():
        try:
            default = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            default = info["default"]
        kind, optional, item = _parse_type(str(info["inferred_type_name"]), default)
        declared[name] = Parameter(name, kind, optional, default, str(info.get("help") or ""), item)
    return declared


def _parameters_cell(path: str | os.PathLike[str]) -> dict[str, dict[str, str]] | None:
    """``{name: {inferred_type_name, default, help}}`` of the notebook's parameters cell, read
    with ``ast``: importing papermill (nbformat, jsonschema) takes seconds, and the CLI
    checks a report's parameters and keys before anything that slow. None when the cell
    does not parse."""
    import io
    import json
    import tokenize

    try:
        with open(path, encoding="utf-8") as fh:
            nb = json.load(fh)
    except (OSError, ValueError):
        return None
    cell = next(
        (c for c in nb.get("cells", []) if "parameters" in c.get("metadata", {}).get("tags", [])),
        None,
    )
    if cell is None:
        return {}
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else str(source)
    try:
        tree = ast.parse(source)
        comments = {
            tok.start[0]: tok.string.lstrip("#").strip()
            for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT
        }
    except (SyntaxError, tokenize.TokenError):
        return None
    found: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            name, value, hint = node.target.id, node.value, node.annotation
            kind = hint.value if isinstance(hint, ast.Constant) else ast.unparse(hint)
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            name, value, kind = node.targets[0].id, node.value, "None"
        else:
            continue
        help_text = comments.get(node.end_lineno or node.lineno, "")
        if help_text.startswith("type:"):  # papermill's "# type: int" comment
            declared, _, help_text = help_text[5:].strip().partition(" ")
            kind = kind if kind != "None" else declared
            help_text = help_text.strip()
        found[name] = {
            "inferred_type_name": str(kind),
            "default": ast.get_source_segment(source, value) or "",
            "help": help_text,
        }
    return found


# ------------------------------------------------------------- parameter values as text
#
# A value from the command line or a parameters file is text, typed by the template's
# annotation, not by what YAML guesses: YAML 1.1 reads ``NO`` as False, ``01234`` as 668 and
# ``2024-01-05`` as a date (which papermill cannot even write into the notebook).


class _Quoted(str):
    """A scalar the YAML quoted: text whatever it looks like."""


def _text_tree(node: Any) -> Any:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return {str(_text_tree(k)): _text_tree(v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_text_tree(v) for v in node.value]
    return _Quoted(node.value) if node.style in ("'", '"') else str(node.value)


def yaml_text(text: str) -> Any:
    """YAML as a tree of dicts, lists and the scalars' own text: no scalar is typed.

    >>> yaml_text("{country: NO, zip: 01234, day: 2024-01-05}")
    {'country': 'NO', 'zip': '01234', 'day': '2024-01-05'}
    """
    import yaml

    node = yaml.compose(text, Loader=yaml.BaseLoader)
    return None if node is None else _text_tree(node)


_NULLS = ("None", "none", "null", "Null", "NULL", "~")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _lossless(text: str) -> Any:
    """An untyped scalar: a number or true/false only when it is written exactly as that
    value prints (``5``, ``0.25``, ``true``), so nothing changes meaning; ``NO``, ``01234``,
    ``1e3`` and ``2024-01-05`` stay the text they are."""
    if isinstance(text, _Quoted):
        return str(text)
    if text in ("null", "~"):
        return None
    if text in ("true", "false"):
        return text == "true"
    for number in (int, float):
        try:
            value = number(text)
        except ValueError:
            continue
        if str(value) == text and math.isfinite(value):
            return value
    return text


class _Mistyped(Exception):
    pass


def _scalar_from_text(kind: str, value: Any) -> Any:
    if kind == "any":
        if isinstance(value, list):
            return [_scalar_from_text("any", v) for v in value]
        if isinstance(value, dict):
            return {k: _scalar_from_text("any", v) for k, v in value.items()}
        return _lossless(value)
    if not isinstance(value, str):
        raise _Mistyped
    try:
        if kind == "str":
            return str(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
    except ValueError:
        raise _Mistyped from None
    lowered = value.strip().lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise _Mistyped


def from_text(param: Parameter, value: Any) -> Any:
    """A value given as text (``-p NAME VALUE``, or a parameters file read by ``yaml_text``)
    as the parameter's declared type; ``ParameterError`` when it is not one."""
    bare = isinstance(value, str) and not isinstance(value, _Quoted)
    if bare and param.optional and value.strip() in _NULLS:
        return None
    try:
        if param.type in ("list", "dict") and isinstance(value, str):
            stripped = value.strip()
            if param.type == "list" and not stripped.startswith(("[", "{")):
                # -p models a,b: a comma-separated list
                value = [v.strip() for v in stripped.split(",") if v.strip()]
            else:
                value = yaml_text(stripped) if stripped else ([] if param.type == "list" else {})
        elif param.type == "any" and isinstance(value, str) and not isinstance(value, _Quoted):
            value = yaml_text(value) if value.strip() else value
        if param.type == "list":
            if not isinstance(value, list):
                raise _Mistyped
            return [_scalar_from_text(param.item, v) for v in value]
        if param.type == "dict":
            if not isinstance(value, dict):
                raise _Mistyped
            return {str(k): _scalar_from_text(param.item, v) for k, v in value.items()}
        return _scalar_from_text(param.type, value)
    except _Mistyped:
        raise ParameterError(_mistyped(param, value)) from None
    except Exception as exc:  # yaml.YAMLError: the text is not YAML at all
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParameterError(f"parameter '{param.name}': not valid YAML ({first})") from None


def parse_cli_value(param: Parameter, raw: str) -> Any:
    """A ``-p NAME VALUE`` string as the parameter's declared type."""
    return from_text(param, raw)


def _mistyped(param: Parameter, value: Any) -> str:
    hint = {"list": " (e.g. '[a, b]' or 'a,b')", "dict": " (e.g. '{name: value}')"}
    shown = _plain(value)
    return (
        f"parameter '{param.name}' takes {param.kind}{' or None' if param.optional else ''}"
        f"{hint.get(param.type, '')}, not {shown!r}"
    )


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------- parameter values from Python

_OK = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, (list, tuple)),
    "dict": lambda v: isinstance(v, dict),
    "any": lambda v: True,
}


def _literal_problem(value: Any, where: str) -> str | None:
    """Where ``value`` holds something papermill cannot write as a Python literal (a date,
    a set, an object, NaN): it would crash the run or reach the notebook as other text."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is {value!r}"
    if isinstance(value, (list, tuple)):
        return next(
            (p for i, v in enumerate(value) if (p := _literal_problem(v, f"{where}[{i}]"))), None
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)):
                return f"{where} has the key {key!r}"
            problem = _literal_problem(item, f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    return f"{where} is a {type(value).__name__} ({value!s})"


def _check_type(param: Parameter, value: Any) -> Any:
    if value is None:
        if param.optional or param.type == "any":
            return None
        raise ParameterError(_mistyped(param, value))
    if not _OK[param.type](value):
        raise ParameterError(_mistyped(param, value))
    items = value if isinstance(value, (list, tuple)) else []
    items = list(value.values()) if isinstance(value, dict) else items
    if param.type in ("list", "dict") and not all(_OK[param.item](v) for v in items):
        raise ParameterError(_mistyped(param, value))
    problem = _literal_problem(value, f"parameter '{param.name}'")
    if problem:
        raise ParameterError(
            f"{problem}: parameters are written into the notebook as Python literals "
            "(text, numbers, true/false, lists, dicts): pass it as text, e.g. str(value)"
        )
    if param.type == "float":
        return float(value)
    return list(value) if param.type == "list" else value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for k, v in value.items() for s in _strings(k) + _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def check_no_secrets(values: Mapping[str, Any]) -> None:
    """Refuse a parameter whose value looks like an API key or holds a secret variable's value.

    papermill writes parameters into the notebook's source, so a key passed as one would be
    in the output notebook and its HTML for good.
    """
    for name, value in values.items():
        for text in _strings(value):
            if redact(text) != text or KEY_SHAPES.search(text):
                raise ParameterError(
                    f"parameter '{name}' looks like an API key: parameters are written into "
                    "the notebook, so keep the key in an environment variable and pass its "
                    "NAME instead (e.g. -p api_key_env OPENAI_API_KEY)"
                )


def check_parameters(
    declared: Mapping[str, Parameter],
    given: Mapping[str, Any] | None = None,
    cli: Sequence[tuple[str, Any]] = (),
    *,
    template: str = "the template",
) -> dict[str, Any]:
    """Parameters checked against the template: known names, declared types, no secrets.

    ``given`` are Python values (``run_report(parameters=...)``), checked as they are.
    ``cli`` are ``(name, text)`` pairs: a ``-p NAME VALUE`` string, or a parameters file's
    value read by ``yaml_text``; text is read as the declared type (``from_text``).
    """
    values: dict[str, Any] = {}
    pairs = [(n, v, False) for n, v in (given or {}).items()] + [(n, v, True) for n, v in cli]
    for name, value, raw in pairs:
        if name not in declared:
            from ..suggest import did_you_mean

            raise ParameterError(
                f"{template} has no parameter '{name}'.{did_you_mean(name, declared)} "
                f"Its parameters: {', '.join(declared)}"
            )
        param = declared[name]
        if raw:
            value = from_text(param, value)
        values[name] = _check_type(param, value)
    check_no_secrets(values)
    return values


# Counts a template passes on; a negative one would be read as something else (rows=-1 by
# pandas' head() as "all but the last row", before this check: as "all rows").
_LOWEST = {
    "rows": (0, "the first N rows; 0 for all"),
    "samples": (1, "answers per model per row"),
    "retries": (0, "retries per call; 0 for none"),
    "repair": (0, "re-asks per unreadable reply; 0 for none"),
    "concurrency": (1, "calls at once"),
}


def check_before_running(declared: Mapping[str, Parameter], values: Mapping[str, Any]) -> None:
    """What the parameters mean, checked before the kernel starts (``check_parameters``
    checks names and types): strategies are built, every model a template would call
    (``models``, ``<step>_models``) is checked as ``orchestrate`` checks it (known id, API
    key set, recordings present), and the answer readers (``extract``) are built. A typo or a
    missing key is one line here, not a traceback in the notebook's third cell."""
    from ..providers.env_keys import check_keys
    from .inputs import panel

    _check_strategies(values)

    effective = {n: p.default for n, p in declared.items()} | dict(values)
    for name, (lowest, meaning) in _LOWEST.items():
        value = effective.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value < lowest:
            raise ParameterError(f"parameter '{name}': {value} is below {lowest} ({meaning})")
    target = effective.get("target_error")
    if isinstance(target, (int, float)) and not 0 < target < 1:
        raise ParameterError(
            f"parameter 'target_error': {target!r} is not an error rate between 0 and 1; "
            "give a share such as 0.05 (5 %)"
        )
    options = {"recordings": effective.get("recordings") or None}
    models = [
        model
        for name, value in effective.items()
        if (name == "models" or name.endswith("_models")) and isinstance(value, list)
        for model in panel(
            value,
            api_base=str(effective.get("api_base") or ""),
            api_key_env=str(effective.get("api_key_env") or ""),
        )
    ]
    # Every missing key named at once, in milliseconds: litellm (seconds to import) is
    # not needed to read which variables a provider's key lives in.
    check_keys(models)
    from .. import providers
    from ..plan import build_extractor

    for model in models:
        providers.check_model(model, options)
    if isinstance(effective.get("extract"), list):
        try:
            build_extractor(effective["extract"] or None)
        except ConfigError as exc:
            raise ParameterError(f"parameter 'extract': {exc}") from None


def _check_strategies(values: Mapping[str, Any]) -> None:
    """A strategy name (``strategy``, ``<step>_strategy``) is built now, so a typo or a
    strategy that needs options the templates cannot give (judge, fuse: a model) is one line
    before the kernel starts, not a traceback in the notebook."""
    from .. import strategies

    for name, value in values.items():
        if not (name == "strategy" or name.endswith("_strategy")) or not isinstance(value, str):
            continue
        if value not in strategies.names():
            try:
                strategies.get(value)
            except StrategyError as exc:
                raise ParameterError(f"parameter '{name}': {exc}") from None
        try:
            strategies.get(value)
        except StrategyError:
            # Known, but needs options (judge, fuse: a model) that a parameter cannot carry.
            usable = []
            for known in strategies.names():
                try:
                    strategies.get(known)
                except StrategyError:
                    continue
                usable.append(known)
            raise ParameterError(
                f"parameter '{name}': {value!r} needs options (a judge or aggregator model) "
                f"that report parameters cannot give; use one of {', '.join(usable)}, or run "
                f"{value} from Python"
            ) from None
