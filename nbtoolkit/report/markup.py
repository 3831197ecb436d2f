"""The HTML pieces a report section is made of: a ``Section``, tables, badges, headings.

Every value is escaped here; a section shows itself as HTML in a notebook (and so in the
HTML nbconvert writes) with no IPython import.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import clip
from .run import RECORD_MIME
from .values import missing

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CSS",
    "READABLE",
    "RECORD_MIME",
    "Section",
    "badge",
    "bullets",
    "esc",
    "h2",
    "manifest_table",
    "model_name",
    "seconds",
    "share",
    "table",
    "wrap",
]


class Section:
    """A piece of a report: HTML in a notebook or in nbconvert's output, text elsewhere."""

    def __init__(self, markup: str, text: str = "", record: dict[str, Any] | None = None) -> None:
        self.html = markup
        self.text = text
        self.record = record

    def _repr_html_(self) -> str:
        return self.html

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/html": self.html, "text/plain": repr(self)}
        if self.record is not None:
            bundle[RECORD_MIME] = self.record
        return bundle

    def __repr__(self) -> str:
        return self.text or f"<report section: {len(self.html)} characters of HTML>"


def esc(value: Any, limit: int | None = None) -> str:
    text = "" if missing(value) else str(value)
    return html.escape(clip(text, limit, "…") if limit is not None else text, quote=True)


def h2(title: str) -> str:
    anchor = title.lower().replace(" ", "-").replace(":", "")
    return f"<h2 id='{anchor}'>{html.escape(title)}</h2>"


def table(frame: pd.DataFrame, *, models: set[str] | None = None) -> str:
    """An HTML table; with ``models``, the "model"/"drop" column gets simulated badges."""
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = []
    for rec in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, rec, strict=True):
            cls = " class='num'" if isinstance(value, (int, float)) else ""
            shown = esc(value)
            if models is not None and column in ("model", "drop"):
                shown = model_name(str(value), models)
            cells.append(f"<td{cls}>{shown}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        "<table class='nbtoolkit-table'><thead><tr>" + head + "</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def badge(text: str) -> str:
    return f"<span class='nbtoolkit-badge'>{html.escape(text)}</span>"


def model_name(label: str, simulated: set[str]) -> str:
    return html.escape(label) + (badge("simulated") if label in simulated else "")


def share(x: Any) -> str:
    return "—" if missing(x) else f"{float(x):.0%}"


def seconds(x: Any) -> str:
    return "—" if missing(x) else f"{float(x):.2f} s"


READABLE = {
    "calls_per_row": "calls per row",
    "cost_per_row": "cost per row",
    "median_row_wait": "median row wait",
    "answers_changed": "answers changed vs this run",
    "latency_s": "median latency",
}


def bullets(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>" if items else ""


CSS = """<style>
.nbtoolkit-report table{border-collapse:collapse;margin:0.4em 0 0.8em;font-size:0.92em}
.nbtoolkit-report td,.nbtoolkit-report th{border-bottom:1px solid #e5e7eb;padding:3px 9px;
text-align:left;vertical-align:top}
.nbtoolkit-report td.num{text-align:right;font-variant-numeric:tabular-nums}
.nbtoolkit-badge{display:inline-block;padding:0 6px;margin-left:6px;border-radius:8px;
font-size:0.8em;background:#ede9fe;color:#4c1d95}
.nbtoolkit-callout{padding:6px 10px;margin:6px 0;border-left:4px solid #a855f7;
background:#faf5ff;color:#3b0764}
.nbtoolkit-report dt{font-weight:600;margin-top:0.5em}
.nbtoolkit-report dd{margin:0.1em 0 0.3em 1.2em}
.nbtoolkit-report pre{white-space:pre-wrap;background:#f9fafb;padding:6px 8px;margin:0.2em 0}
</style>"""


def wrap(*parts: str) -> str:
    return f"<div class='nbtoolkit-report'>{CSS}{''.join(parts)}</div>"


def manifest_table(manifest: Mapping[str, Any]) -> str:
    """The manifest as rows of name and compact JSON; a pipeline's steps one after another."""
    if "steps" in manifest and len(manifest) == 1:
        return "".join(
            f"<h3>Step {html.escape(name)}</h3>{manifest_table(meta)}"
            for name, meta in manifest["steps"].items()
        )
    rows = []
    for key, value in manifest.items():
        if key == "models" and all(isinstance(m, dict) and list(m) == ["id"] for m in value):
            shown = ", ".join(m["id"] for m in value)
        elif key == "strategy_record":  # thousands of numbers for a calibrated strategy
            from ..strategies.records import describe

            shown = describe(value)
        else:
            shown = json.dumps(value, default=str, ensure_ascii=False)
        rows.append((key, shown))
    import pandas as pd

    return table(pd.DataFrame(rows, columns=["item", "value"]))
