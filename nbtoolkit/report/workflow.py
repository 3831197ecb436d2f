"""The workflow diagram of a report: input -> models -> extraction -> strategy -> consensus,
or a pipeline's steps, as one hand-built inline ``<svg>``.

Hand-built on purpose: the charts are matplotlib (``figures``), but a flow of labelled boxes
is not what matplotlib draws well, and the libraries that lay out graphs (graphviz, mermaid)
need a binary or a script at view time. This draws columns of boxes joined by labelled
arrows, with every style inline and no external reference (no fonts, scripts or images to
fetch), so it shows the same in a notebook, in a static HTML file opened offline, and in an
e-mail. Labels are escaped; the same run gives the same bytes.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import clip
from ..results import RunResult
from . import analysis as an

__all__ = ["Box", "Edge", "flow", "pipeline_flow", "run_flow"]

_INK = "#111827"
_GREY = "#6b7280"
_GRID = "#e5e7eb"
_FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"
_KIND_FILL = {
    "input": ("#eff6ff", "#3b82f6"),
    "model": ("#f5f3ff", "#7c3aed"),
    "simulated": ("#faf5ff", "#a855f7"),
    "step": ("#ecfdf5", "#059669"),
    "rule": ("#fff7ed", "#ea580c"),
    "output": ("#f0fdf4", "#16a34a"),
}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _cut(text: str, limit: int) -> str:
    return clip(" ".join(str(text).split()), limit, "…")


def _svg(width: float, height: float, body: str, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{_e(label)}" '
        f'style="max-width:100%;height:auto;{_FONT}">'
        f"<title>{_e(label)}</title>{body}</svg>"
    )


def _text(
    x: float,
    y: float,
    text: object,
    *,
    size: float = 12,
    anchor: str = "start",
    weight: str = "normal",
    fill: str = _INK,
    extra: str = "",
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'font-weight="{weight}" fill="{fill}"{extra}>{_e(text)}</text>'
    )


# ----------------------------------------------------------------------------- flow


@dataclass
class Box:
    """A node of a flow diagram: a title and a few lines, in a column."""

    id: str
    title: str
    lines: list[str] = field(default_factory=list)
    kind: str = "model"  # input | model | simulated | step | rule | output


@dataclass
class Edge:
    """An arrow from one box to another, with what travels along it."""

    source: str
    target: str
    label: str = ""


def flow(columns: Sequence[Sequence[Box]], edges: Sequence[Edge], *, title: str) -> str:
    """Boxes in columns, left to right, joined by labelled arrows."""
    box_w, line_h, gap_y, gap_x, pad = 190.0, 15.0, 18.0, 110.0, 14.0
    heights = {b.id: 24 + line_h * len(b.lines) + 6 for col in columns for b in col}
    col_heights = [sum(heights[b.id] for b in col) + gap_y * (len(col) - 1) for col in columns]
    height = max(col_heights, default=0) + 2 * pad + 10
    width = len(columns) * box_w + (len(columns) - 1) * gap_x + 2 * pad
    # Unique to the drawing, the same for the same drawing: reports are reproducible.
    uid = hashlib.sha256(repr((title, columns, edges)).encode()).hexdigest()[:10]
    where: dict[str, tuple[float, float, float]] = {}  # id -> x, y, h
    parts = [
        f'<defs><marker id="nbt-arrow-{uid}" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        f'<path d="M 0 0 L 10 5 L 0 10 z" fill="{_GREY}"/></marker></defs>'
    ]
    for i, col in enumerate(columns):
        x = pad + i * (box_w + gap_x)
        y = pad + (height - 2 * pad - col_heights[i]) / 2
        for b in col:
            where[b.id] = (x, y, heights[b.id])
            y += heights[b.id] + gap_y
    boxes, arrows, labels = [], [], []
    for b in (b for col in columns for b in col):
        x, y, h = where[b.id]
        fill, stroke = _KIND_FILL.get(b.kind, _KIND_FILL["model"])
        dash = ' stroke-dasharray="4 3"' if b.kind == "simulated" else ""
        boxes.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{box_w}" height="{h:.1f}" rx="7" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"{dash}/>'
        )
        boxes.append(_text(x + 9, y + 17, _cut(b.title, 26), size=12.5, weight="600"))
        for k, line in enumerate(b.lines):
            boxes.append(_text(x + 9, y + 34 + k * line_h, _cut(line, 30), size=11, fill=_GREY))
    for edge in edges:
        if edge.source not in where or edge.target not in where:
            continue
        sx, sy, sh = where[edge.source]
        tx, ty, th = where[edge.target]
        x1, y1 = sx + box_w, sy + sh / 2
        x2, y2 = tx, ty + th / 2
        bend = max(30.0, (x2 - x1) / 2)
        arrows.append(
            f'<path d="M {x1:.1f} {y1:.1f} C {x1 + bend:.1f} {y1:.1f} {x2 - bend:.1f} {y2:.1f} '
            f'{x2 - 2:.1f} {y2:.1f}" fill="none" stroke="{_GREY}" stroke-width="1.3" '
            f'marker-end="url(#nbt-arrow-{uid})"/>'
        )
        if edge.label:
            labels.append(
                _text(
                    (x1 + x2) / 2,
                    (y1 + y2) / 2 - 5,
                    _cut(edge.label, 24),
                    size=10,
                    anchor="middle",
                    extra=' stroke="#ffffff" stroke-width="3" paint-order="stroke"',
                )
            )
    body = "".join(parts + arrows + boxes + labels)
    return _svg(width, height, body, title)


# ------------------------------------------------------------------------- diagrams


def run_flow(res: RunResult, data_label: str, extract: Any, simulated: set[str]) -> tuple[str, str]:
    """One run drawn as input -> models -> extraction -> strategy -> consensus."""
    c = res.consensus
    rows = len(c)
    kinds = an.kinds(res)
    samples = int(res.outputs["sample"].max()) + 1 if len(res.outputs) else 1
    source = f"{rows} row(s)" + (f" of {data_label}" if data_label else "")
    inputs = [
        Box(
            "in",
            "Input",
            [source, f"prompt: {res.prompt}"]
            + ([f"× {samples} samples per model"] if samples > 1 else []),
            "input",
        )
    ]
    boxes = []
    for i, model in enumerate(res.models):
        k = kinds[kinds["model"] == model]
        lines = [f"{int(k['made'].sum())} calls, {int(k['failed'].sum())} failed"]
        if model in simulated:
            lines.append("simulated model")
        boxes.append(Box(f"m{i}", model, lines, "simulated" if model in simulated else "model"))
    invalid = int(kinds["unreadable"].sum())
    extract_box = Box(
        "x", "Extract answers", [an.describe_extract(extract), f"{invalid} unreadable"], "rule"
    )
    strategy_box = Box("s", f"Strategy: {res.strategy}", [an.strategy_label(res)], "rule")
    low = int(c["low_confidence"].sum())
    out_box = Box(
        "out",
        "Consensus",
        [
            f"{rows} answer(s)",
            f"mean confidence {c['confidence'].mean():.2f}",
            f"{low} low-confidence",
        ],
        "output",
    )
    edges = [Edge("in", b.id, "prompt" if i == 0 else "") for i, b in enumerate(boxes)]
    edges += [Edge(b.id, "x", "reply" if i == 0 else "") for i, b in enumerate(boxes)]
    edges += [Edge("x", "s", "answers"), Edge("s", "out", "answer, confidence")]
    drawing = flow(
        [inputs, boxes, [extract_box], [strategy_box], [out_box]],
        edges,
        title="Orchestration workflow",
    )
    words = (
        f"The prompt was rendered for {source} and sent to {len(res.models)} model(s) "
        f"({', '.join(res.models)}){f', {samples} samples each' if samples > 1 else ''}; "
        f"each reply was read with {an.describe_extract(extract)}, and the answers were combined "
        f"by {an.strategy_label(res)} into one answer and a confidence per row."
    )
    return drawing, words


def _wrap_names(names: list[str], *, first: str, width: int = 30) -> list[str]:
    """``names`` joined by commas over lines of at most ``width`` characters."""
    if not names:
        return [first + "no variable"]
    lines, line = [], first
    for name in names:
        piece = name if line in (first, "") else f", {name}"
        if len(line) + len(piece) > width and line not in (first, ""):
            lines.append(line + ",")
            line, piece = "", name
        line += piece
    return [*lines, line]


def pipeline_flow(runs: Sequence[tuple[str, RunResult]], data_label: str) -> tuple[str, str]:
    """A pipeline drawn as input -> step -> step ... -> output.

    Each step's box says which variables its prompt reads; the arrow from the step before
    is named by what it carries. (Arrows that skip a step would cross boxes: the box says it.)
    """
    from ..templating import Template

    names = [n for n, _ in runs]
    rows = len(runs[-1][1].consensus)
    source = f"{rows} row(s)" + (f" of {data_label}" if data_label else "")
    columns: list[list[Box]] = [[Box("in", "Input", [source], "input")]]
    edges: list[Edge] = []
    words = []
    previous = "in"
    for k, (name, r) in enumerate(runs):
        used = list(Template(r.prompt).names)
        shown = list(r.models[:3]) + ([f"+{len(r.models) - 3} more"] if len(r.models) > 3 else [])
        reads = _wrap_names(["{" + v + "}" for v in used], first="reads ")
        lines = [*shown, *reads, f"{len(r.outputs)} calls"]
        columns.append([Box(name, f"{name}: {r.strategy}", lines, "step")])
        if k == 0:
            carried = [v for v in used if v not in names]
        else:
            carried = [v for v in used if v in (previous, f"{previous}_outputs")]
        edges.append(Edge(previous, name, ", ".join("{" + v + "}" for v in carried)))
        earlier = [v for v in used if any(v in (n, f"{n}_outputs") for n in names[:k])]
        words.append(
            f"{name} asks {len(r.models)} model(s) and combines their answers by {r.strategy}"
            + (f", reading {', '.join(earlier)} from the steps before" if earlier else "")
        )
        previous = name
    columns.append([Box("out", "Final answer", [f"from step {names[-1]}"], "output")])
    edges.append(Edge(names[-1], "out", "answer"))
    drawing = flow(columns, edges, title="Pipeline workflow")
    return drawing, "; then ".join(words) + "."
