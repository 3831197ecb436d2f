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
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CellError, ConfigError, ParameterError, redact

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
# API key shapes: OpenAI/Anthropic/OpenRouter, Google, GitHub, Hugging Face, Slack, AWS,
# Groq, Perplexity, Replicate. A match in a parameter value is refused.
_KEY_SHAPES = re.compile(
    r"\bsk-[A-Za-z0-9_\-]{16,}"
    r"|\bAIza[0-9A-Za-z_\-]{30,}"
    r"|\b(?:ghp|gho|ghu|ghs|github_pat)_[A-Za-z0-9_]{20,}"
    r"|\bhf_[A-Za-z0-9]{30,}"
    r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|\bgsk_[A-Za-z0-9]{20,}"
    r"|\bpplx-[A-Za-z0-9]{20,}"
    r"|\br8_[A-Za-z0-9]{20,}"
)


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
    """One parameter of a template's ``parameters`` cell."""

    name: str
    type: str  # str | int | float | bool | list | dict | any
    optional: bool = False
    default: Any = None
    help: str = ""

    def describe(self) -> str:
        kind = f"{self.type} or None" if self.optional else self.type
        return f"{self.name} ({kind}, default {self.default!r})" + (
            f": {self.help}" if self.help else ""
        )


def _parse_type(annotation: str, default: Any) -> tuple[str, bool]:
    text = annotation.replace(" ", "")
    optional = False
    match = re.fullmatch(r"(?:typing\.)?Optional\[(.+)\]", text)
    if match:
        text, optional = match.group(1), True
    base = text.split("[", 1)[0].lower()
    base = {"list": "list", "tuple": "list", "sequence": "list", "mapping": "dict"}.get(base, base)
    if base not in _TYPES - {"any"}:
        if default is None:
            return "any", True
        base = type(default).__name__
        base = base if base in _TYPES else "any"
    return base, optional or default is None


def template_parameters(path: str | os.PathLike[str]) -> dict[str, Parameter]:
    """The parameters a template declares, with their types (``papermill.inspect_notebook``)."""
    import papermill

    declared: dict[str, Parameter] = {}
    for name, info in papermill.inspect_notebook(str(path)).items():
        try:
            default = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            default = info["default"]
        kind, optional = _parse_type(str(info["inferred_type_name"]), default)
        declared[name] = Parameter(name, kind, optional, default, str(info.get("help") or ""))
    return declared


def parse_cli_value(param: Parameter, raw: str) -> Any:
    """A ``-p NAME VALUE`` string as the parameter's declared type."""
    import yaml

    if param.optional and raw.strip() in ("None", "none", "null", "~"):
        return None
    kind = param.type
    try:
        if kind == "str":
            return raw
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ValueError(raw)
        value = yaml.safe_load(raw) if raw.strip() else ([] if kind == "list" else {})
    except (ValueError, yaml.YAMLError):
        raise ParameterError(_mistyped(param, raw)) from None
    if kind == "list" and isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def _mistyped(param: Parameter, value: Any) -> str:
    hint = {"list": " (e.g. '[a, b]' or 'a,b')", "dict": " (e.g. '{name: value}')"}
    return (
        f"parameter '{param.name}' takes {param.type}{' or None' if param.optional else ''}"
        f"{hint.get(param.type, '')}, not {value!r}"
    )


def _check_type(param: Parameter, value: Any) -> Any:
    if value is None:
        if param.optional or param.type == "any":
            return None
        raise ParameterError(_mistyped(param, value))
    kind = param.type
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "list": isinstance(value, (list, tuple)),
        "dict": isinstance(value, dict),
        "any": True,
    }[kind]
    if not ok:
        raise ParameterError(_mistyped(param, value))
    if kind == "float":
        return float(value)
    return list(value) if kind == "list" else value


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
            if redact(text) != text or _KEY_SHAPES.search(text):
                raise ParameterError(
                    f"parameter '{name}' looks like an API key: parameters are written into "
                    "the notebook, so keep the key in an environment variable and pass its "
                    "NAME instead (e.g. -p api_key_env OPENAI_API_KEY)"
                )


def check_parameters(
    declared: Mapping[str, Parameter],
    given: Mapping[str, Any] | None = None,
    cli: Sequence[tuple[str, str]] = (),
    *,
    template: str = "the template",
) -> dict[str, Any]:
    """``given`` (typed, e.g. from YAML) then ``cli`` (``-p NAME VALUE`` strings, parsed as
    the declared type) checked against the template: known names, types, no secrets."""
    values: dict[str, Any] = {}
    pairs = [(n, v, False) for n, v in (given or {}).items()] + [(n, v, True) for n, v in cli]
    for name, value, raw in pairs:
        if name not in declared:
            raise ParameterError(
                f"{template} has no parameter '{name}'; its parameters: {', '.join(declared)}"
            )
        param = declared[name]
        if raw:
            value = parse_cli_value(param, value)
        values[name] = _check_type(param, value)
    check_no_secrets(values)
    return values


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
        raise CellError(exc.exec_count, exc.ename, exc.evalue, output) from None
    except (CellTimeoutError, DeadKernelError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CellError(None, type(exc).__name__, first, output) from None


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
    import nbformat

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
    out.parent.mkdir(parents=True, exist_ok=True)
    if "output_prefix" in declared and "output_prefix" not in values:
        values["output_prefix"] = str(out.with_suffix(""))
    nb = execute(path, out, values, kernel_name=kernel_name, progress=progress, timeout=timeout)
    effective = {n: p.default for n, p in declared.items()} | values
    meta = record(nb, out, name, effective)
    nbformat.write(nb, str(out))
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
