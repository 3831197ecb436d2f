"""Reports: run a template notebook with papermill, record what it did, write one HTML file.

``run_report`` reads as the recipe it follows::

    path = template_path(template)               # a path, or compare_models | batch_eval | pipeline
    declared = template_parameters(path)         # the template's parameters cell, typed
    values = check_parameters(declared, given)   # unknown, mistyped or secret: an error, now
    nb = execute(path, output, values)           # papermill, in a kernel of this interpreter
    record(nb, output)                           # manifest + frames into nb.metadata["nbtoolkit"]
    write_html(nb, html)                         # self-contained, code hidden, nothing fetched

A template calls ``nbtoolkit.report.sections`` for its sections and ends with
``report.appendix(output_prefix)``, whose output carries the run record (mimetype
``application/vnd.nbtoolkit.record+json``) that ``record`` moves into the notebook metadata:
``nb.metadata["nbtoolkit"] = {"manifest", "frames", "summary", "parameters", "template"}``.
``collect_frames(notebook)`` reads the saved result frames back. The parameters are checked
in ``nbtoolkit.report.parameters``.

This is glue (it imports papermill and nbconvert, when a report runs); the core never
imports it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CellError, ConfigError, ParameterError, redact
from .parameters import Parameter, check_before_running, check_parameters, template_parameters

__all__ = [
    "BUILTIN_TEMPLATES",
    "RECORD_MIME",
    "ReportRun",
    "collect_frames",
    "estimate_template",
    "execute",
    "record",
    "run_report",
    "template_path",
    "templates_dir",
    "to_html",
    "write_notebook",
]

BUILTIN_TEMPLATES = ("compare_models", "batch_eval", "pipeline")
#: The mimetype of the run record a report's appendix carries (``markup.Section``).
RECORD_MIME = "application/vnd.nbtoolkit.record+json"


# ------------------------------------------------------------------------- templates


def templates_dir() -> Path:
    """The built-in templates: inside the installed package, or ``templates/`` of a checkout."""
    package = Path(__file__).resolve().parent.parent  # nbtoolkit/
    packaged = package / "templates"
    if packaged.is_dir():
        return packaged
    return package.parent / "templates"


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


def require(module: str, why: str) -> None:
    """``ConfigError`` naming the package to install when ``module`` is missing."""
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

    require("ipykernel", "running a report notebook")
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
    if not path.is_file():
        return
    import nbformat

    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:  # not a whole notebook (a write cut short): redact it as text
        text = path.read_text(encoding="utf-8")
        clean = redact(text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")
        return
    write_notebook(nb, path)


def write_notebook(nb: Any, path: Path) -> None:
    """Write ``nb`` with every secret redacted (outputs, tracebacks, metadata): the one
    writer of report notebooks.

    Each text in the notebook is redacted, not the JSON written: a secret made of digits (a
    numeric token) would otherwise hide part of a number and leave a file no reader opens.
    """
    import nbformat

    path.write_text(nbformat.writes(nbformat.from_dict(_redacted(nb))), encoding="utf-8")


def _redacted(node: Any) -> Any:
    """``node`` (a notebook's dicts, lists and values) with every string redacted."""
    if isinstance(node, str):
        return redact(node)
    if isinstance(node, dict):
        return {redact(k) if isinstance(k, str) else k: _redacted(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_redacted(v) for v in node]
    return node


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
    require("nbconvert", "writing a report's HTML")
    import nbformat
    from nbconvert import HTMLExporter

    # Each text redacted before nbconvert escapes it: a secret holding "<" or "&" would no
    # longer match once written as "&lt;" or "&amp;". (A copy: ``nb`` is left as it is.)
    page = nbformat.from_dict(_redacted(nb))
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

    from .. import __version__

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
    batch: bool = False,
    cli_parameters: Sequence[tuple[str, str]] = (),
    kernel_name: str | None = None,
    progress: bool = True,
    timeout: float | None = None,
) -> ReportRun:
    """Execute a template into ``output`` (.ipynb) and write its HTML; see the module doc.

    ``html=True`` writes ``output`` with the suffix ``.html``; a path writes there; ``False``
    writes none. ``replay_only`` sets the template's ``cache`` parameter to "replay-only":
    every answer comes from the cache, no provider is called. ``batch`` sets its ``batch``
    parameter: the calls go through the providers' batch APIs (``orchestrate(batch=True)``).
    """
    path = template_path(template)
    name = path.stem
    declared = template_parameters(path)
    values = check_parameters(declared, parameters, cli_parameters, template=f"template {name}")
    if replay_only:
        if "cache" not in declared:
            raise ParameterError(f"template {name} has no 'cache' parameter: it cannot replay")
        values["cache"] = "replay-only"
    if batch:
        if "batch" not in declared:
            raise ParameterError(f"template {name} has no 'batch' parameter: it cannot batch")
        values["batch"] = True
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
    from ..estimates import estimate
    from ..templating import Template
    from .inputs import load_inputs, panel

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
