"""Reports: run a template notebook with papermill, record what it did, write one HTML file.

``run_report`` reads as the recipe it follows::

    path = template_path(template)               # a path, or compare_models | batch_eval | pipeline
    declared = template_parameters(path)         # the template's parameters cell, typed
    values = check_parameters(declared, given)   # unknown, mistyped or secret: an error, now
    nb = execute(path, output, values)           # papermill, in a kernel of this interpreter
    record(nb, output)                           # manifest + frames into nb.metadata["nbtoolkit"]
    write_html(nb, html)                         # self-contained, code hidden, nothing fetched

A template calls ``nbtoolkit.report_sections`` for its sections and ends with
``report.appendix(output_prefix)``, whose output carries the run record (mimetype
``application/vnd.nbtoolkit.record+json``) that ``record`` moves into the notebook metadata:
``nb.metadata["nbtoolkit"] = {"manifest", "frames", "summary", "parameters", "template"}``.
``collect_frames(notebook)`` reads the saved result frames back.

This is glue (it imports papermill and nbconvert); the core never imports it.
"""

from __future__ import annotations

import ast
import copy
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import KEY_SHAPES, CellError, ConfigError, ParameterError, StrategyError, redact

__all__ = [
    "BUILTIN_TEMPLATES",
    "CellError",
    "Parameter",
    "ParameterError",
    "ReportRun",
    "check_parameters",
    "collect_frames",
    "estimate_template",
    "run_report",
    "template_parameters",
    "template_path",
    "to_html",
]

BUILTIN_TEMPLATES = ("compare_models", "batch_eval", "pipeline")
RECORD_MIME = "application/vnd.nbtoolkit.record+json"
_TYPES = {"str", "int", "float", "bool", "list", "dict", "any"}


# ------------------------------------------------------------------------- templates


def templates_dir() -> Path:
    """The built-in templates: inside the installed package, or ``templates/`` of a checkout."""
    packaged = Path(__file__).resolve().parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


def template_path(template: str | os.PathLike[str]) -> Path:
    """A notebook path as given, or a built-in template by name."""
    path = Path(template)
    if path.is_file():
        return path
    name = str(template)
    if path.suffix == ".ipynb":
        raise ConfigError(f"template {name!r} does not exist")
    if name in BUILTIN_TEMPLATES:
        found = templates_dir() / f"{name}.ipynb"
        if found.is_file():
            return found
        raise ConfigError(f"the built-in template {name!r} is missing from {found.parent}")
    raise ConfigError(
        f"template {name!r} is neither a notebook file nor a built-in template "
        f"({', '.join(BUILTIN_TEMPLATES)})"
    )


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
    """The parameters a template declares, with their types (``papermill.inspect_notebook``)."""
    import papermill

    declared: dict[str, Parameter] = {}
    for name, info in papermill.inspect_notebook(str(path)).items():
        try:
            default = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            default = info["default"]
        kind, optional, item = _parse_type(str(info["inferred_type_name"]), default)
        declared[name] = Parameter(name, kind, optional, default, str(info.get("help") or ""), item)
    return declared


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
            from .suggest import did_you_mean

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


def check_before_running(declared: Mapping[str, Parameter], values: Mapping[str, Any]) -> None:
    """What the parameters mean, checked before the kernel starts (``check_parameters``
    checks names and types): strategies are built, every model a template would call
    (``models``, ``<step>_models``) is checked as ``orchestrate`` checks it (known id, API
    key set, recordings present), and the answer readers (``extract``) are built. A typo or a
    missing key is one line here, not a traceback in the notebook's third cell."""
    from . import providers

    _check_strategies(values)
    from .plan import build_extractor
    from .report_sections import panel

    effective = {n: p.default for n, p in declared.items()} | dict(values)
    options = {"recordings": effective.get("recordings") or None}
    for name, value in effective.items():
        if (name == "models" or name.endswith("_models")) and isinstance(value, list):
            for model in panel(
                value,
                api_base=str(effective.get("api_base") or ""),
                api_key_env=str(effective.get("api_key_env") or ""),
            ):
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
    from . import strategies

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


# ------------------------------------------------------------------------- execution


def _kernel_manager_class() -> type:
    """A kernel manager whose ``python3`` is always this interpreter (this env's packages).

    A ``python3`` kernelspec installed elsewhere (``ipykernel install --user``) may point at
    another Python without nbtoolkit; a report must run where ``nbtoolkit`` was started.
    """
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class ThisInterpreter(AsyncKernelManager):  # type: ignore[misc]
        @property
        def kernel_spec(self) -> Any:
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(
                    argv=[
                        sys.executable,
                        "-m",
                        "ipykernel_launcher",
                        "-f",
                        "{connection_file}",
                        # Keeps ipykernel's start-up chatter (an unencrypted-TCP warning) off
                        # the terminal; errors still show.
                        "--IPKernelApp.log_level=ERROR",
                    ],
                    display_name=f"Python {sys.version_info[0]} (nbtoolkit)",
                    language="python",
                )
            return self._kernel_spec

        async def _async_interrupt_kernel(self) -> None:
            # jupyter_client interrupts a kernel before asking it to shut down. After the last
            # cell the kernel has sent its reply but may not have left the handler yet; the
            # SIGINT then lands there and ipykernel logs "KeyboardInterrupt caught in kernel"
            # on the terminal (a race: about one run in two on a busy machine). A kernel being
            # shut down has no cell to stop: the shutdown request (then SIGTERM) is enough.
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return ThisInterpreter


def _need(module: str, why: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{why} needs the package {module!r}: pip install {module}")


def execute(
    path: Path,
    output: Path,
    values: Mapping[str, Any],
    *,
    kernel_name: str | None = None,
    progress: bool = True,
    timeout: float | None = None,
) -> Any:
    """Run the notebook with papermill; a failing cell raises ``CellError`` (notebook kept)."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    _need("ipykernel", "running a report notebook")
    options: dict[str, Any] = {}
    if kernel_name is None:
        options["kernel_manager_class"] = _kernel_manager_class()
    try:
        return papermill.execute_notebook(
            str(path),
            str(output),
            parameters=dict(values),
            kernel_name=kernel_name or "python3",
            language="python",
            progress_bar=progress,
            execution_timeout=timeout,
            **options,
        )
    except papermill.PapermillExecutionError as exc:
        # The execution count: the "In [N]" a reader sees in the notebook, and the cell
        # papermill's error banner at the top of the partial notebook points to.
        _redact_file(output)  # a traceback may quote a key: the kept notebook must not
        raise CellError(exc.exec_count, exc.ename, exc.evalue, output) from None
    except (CellTimeoutError, DeadKernelError) as exc:
        _redact_file(output)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CellError(None, type(exc).__name__, first, output) from None


def _redact_file(path: Path) -> None:
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        clean = redact(text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")


def write_notebook(nb: Any, path: Path) -> None:
    """Write ``nb`` with every secret redacted (outputs, tracebacks, metadata): the one
    writer of report notebooks."""
    import nbformat

    path.write_text(redact(nbformat.writes(nb)), encoding="utf-8")


def record(nb: Any, output: Path, template: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Move the appendix's run record into ``nb.metadata["nbtoolkit"]``; returns it.

    ``values`` are the parameters papermill injected; the template's defaults fill the rest.
    """
    found: dict[str, Any] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if RECORD_MIME in data:
                found = dict(data[RECORD_MIME])
    frames = {}
    for name, where in (found.get("frames") or {}).items():
        frames[name] = os.path.relpath(Path(where).resolve(), output.resolve().parent)
    meta = {
        "template": template,
        "parameters": dict(values),
        "manifest": found.get("manifest", {}),
        "frames": frames,
        "summary": found.get("summary", {}),
    }
    nb.metadata["nbtoolkit"] = meta
    return meta


# ------------------------------------------------------------------------------ HTML

_PAGE_CSS = """
body{margin:0;background:#fff;color:#111827;
font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:1.9em;margin:0.2em 0}h2{font-size:1.4em;margin:1.6em 0 0.4em;
border-bottom:2px solid #e5e7eb;padding-bottom:0.2em}h3{font-size:1.1em}
table{border-collapse:collapse;margin:0.4em 0 0.8em;font-size:0.92em}
td,th{border-bottom:1px solid #e5e7eb;padding:3px 9px;text-align:left;vertical-align:top}
pre{white-space:pre-wrap;overflow-x:auto}
.jp-InputPrompt,.jp-OutputPrompt{display:none}
.jp-RenderedText pre,.output_stream pre{background:#f9fafb;padding:6px 8px}
a.anchor-link{display:none}
"""


def to_html(nb: Any, *, show_input: bool = False, title: str = "nbtoolkit report") -> str:
    """One self-contained HTML page: no script, stylesheet, font or image is fetched."""
    _need("nbconvert", "writing a report's HTML")
    from nbconvert import HTMLExporter

    page = copy.deepcopy(nb)
    for cell in page.cells:
        # The terminal saw the progress and the warnings; the page shows the results.
        cell["outputs"] = [o for o in cell.get("outputs", []) if o.get("name") != "stderr"]
    exporter = HTMLExporter(
        template_name="basic",
        exclude_input=not show_input,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(page)
    body = redact(body)  # the page is what gets mailed around: no output may carry a key
    css = _PAGE_CSS
    if show_input:
        from pygments.formatters import HtmlFormatter

        css += HtmlFormatter().get_style_defs(".highlight")
    from html import escape

    from . import __version__

    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="nbtoolkit {__version__}">\n'
        f"<title>{escape(title)}</title>\n<style>{css}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


# ----------------------------------------------------------------------------- runs


@dataclass
class ReportRun:
    """Where a report was written, and what it recorded."""

    notebook: Path
    html: Path | None
    parameters: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def frames(self) -> dict[str, Path]:
        base = self.notebook.parent
        return {k: base / v for k, v in self.record.get("frames", {}).items()}


def run_report(
    template: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    parameters: Mapping[str, Any] | None = None,
    html: str | os.PathLike[str] | bool = True,
    replay_only: bool = False,
    show_input: bool = False,
    cli_parameters: Sequence[tuple[str, str]] = (),
    kernel_name: str | None = None,
    progress: bool = True,
    timeout: float | None = None,
) -> ReportRun:
    """Execute a template into ``output`` (.ipynb) and write its HTML; see the module doc.

    ``html=True`` writes ``output`` with the suffix ``.html``; a path writes there; ``False``
    writes none. ``replay_only`` sets the template's ``cache`` parameter to "replay-only":
    every answer comes from the cache, no provider is called.
    """
    path = template_path(template)
    name = path.stem
    declared = template_parameters(path)
    values = check_parameters(declared, parameters, cli_parameters, template=f"template {name}")
    if replay_only:
        if "cache" not in declared:
            raise ParameterError(f"template {name} has no 'cache' parameter: it cannot replay")
        values["cache"] = "replay-only"
    out = Path(output)
    if out.suffix != ".ipynb":
        raise ConfigError(f"the output notebook must end in .ipynb, not {out.name!r}")
    check_before_running(declared, values)
    out.parent.mkdir(parents=True, exist_ok=True)
    if "output_prefix" in declared and "output_prefix" not in values:
        values["output_prefix"] = str(out.with_suffix(""))
    nb = execute(path, out, values, kernel_name=kernel_name, progress=progress, timeout=timeout)
    effective = {n: p.default for n, p in declared.items()} | values
    meta = record(nb, out, name, effective)
    write_notebook(nb, out)
    html_path: Path | None = None
    if html:
        html_path = out.with_suffix(".html") if html is True else Path(html)
        html_path.parent.mkdir(parents=True, exist_ok=True)
        title = str(values.get("title") or declared.get("title", Parameter("", "str")).default)
        html_path.write_text(
            to_html(nb, show_input=show_input, title=title or name), encoding="utf-8"
        )
    return ReportRun(out, html_path, values, meta)


def collect_frames(notebook_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The result frames a report saved, as DataFrames: ``{"outputs": df, "consensus": df}``."""
    import nbformat
    import pandas as pd

    nb = nbformat.read(str(notebook_path), as_version=4)
    frames = nb.metadata.get("nbtoolkit", {}).get("frames") or {}
    if not frames:
        raise ConfigError(f"{notebook_path} records no result frames (was it run as a report?)")
    base = Path(notebook_path).parent
    return {name: pd.read_csv(base / where) for name, where in frames.items()}


# -------------------------------------------------------------------------- estimate


def estimate_template(
    template: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    cli_parameters: Sequence[tuple[str, str]] = (),
) -> list[tuple[str, Any]]:
    """The ``estimate`` of a template's run, from its parameters: one per step.

    A step is a ``<step>_prompt`` parameter with its ``<step>_models`` (or ``prompt`` with
    ``models``). An earlier step's answer in a later prompt counts as empty, so those prompt
    tokens are a lower bound (the estimate's notes say so).
    """
    from .estimates import estimate
    from .report_sections import load_inputs, panel
    from .templating import Template

    path = template_path(template)
    declared = template_parameters(path)
    given = check_parameters(declared, parameters, cli_parameters, template=f"template {path.stem}")
    values = {n: p.default for n, p in declared.items()} | given
    data = load_inputs(str(values.get("data") or ""), int(values.get("rows") or 0))
    columns = set(map(str, data.columns)) if data is not None else set()
    variables = dict(values.get("variables") or {})
    steps = [n[: -len("prompt")] for n in declared if n.endswith("prompt")]
    out = []
    for prefix in steps:
        prompt, models = values.get(prefix + "prompt"), values.get(prefix + "models")
        if not isinstance(prompt, str) or not models:
            continue
        earlier = [n for n in Template(prompt).names if n not in columns and n not in variables]
        result = estimate(
            prompt,
            panel(
                models,
                api_base=str(values.get("api_base") or ""),
                api_key_env=str(values.get("api_key_env") or ""),
            ),
            data=data,
            variables={**variables, **dict.fromkeys(earlier, "")},
            samples=int(values.get(prefix + "samples") or values.get("samples") or 1),
            max_tokens=values.get(prefix + "max_tokens") or values.get("max_tokens"),
        )
        if earlier:
            result.notes.append(
                "Prompt tokens are a lower bound: "
                + ", ".join("{" + n + "}" for n in earlier)
                + " (earlier steps' answers) are counted as empty."
            )
        out.append((prefix.rstrip("_") or path.stem, result))
    if not out:
        raise ConfigError(f"template {path.stem} has no prompt/models parameters to estimate")
    return out
