"""Hand-written SVG charts for reports: a flow diagram, a heatmap, a scatter and bar charts.

Each function returns one ``<svg>`` element as a string, with every style inline and no
external reference (no fonts, scripts or images to fetch), so it shows the same in a
notebook, in a static HTML file opened offline, and in an e-mail. Labels are escaped.
No plotting library is needed.

>>> svg = bars([("sim/oracle-large", 2.4, "2.40 s"), ("sim/swift-mini", 0.6, "0.60 s")],
...            title="median latency per call")
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import clip

__all__ = ["Box", "Edge", "bars", "flow", "heatmap", "scatter"]

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
_ids = itertools.count(1)


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
    uid = next(_ids)
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


# -------------------------------------------------------------------------- heatmap


def _colour(value: float) -> str:
    from .formatting import colour

    return colour(value)


def heatmap(
    labels: Sequence[str], values: Sequence[Sequence[float]], *, title: str, note: str = ""
) -> str:
    """A square matrix of shares in [0, 1], red (0) to green (1); NaN cells grey, "n/a"."""
    n = len(labels)
    cell = 54.0
    name_w = 14 + 7.0 * max((len(f"{i + 1}. {m}") for i, m in enumerate(labels)), default=0)
    top = 46.0
    width = name_w + n * cell + 20
    height = top + n * cell + (34 if note else 16)
    parts = [_text(10, 18, title, size=13, weight="600")]
    for j in range(n):
        parts.append(_text(name_w + j * cell + cell / 2, top - 8, j + 1, anchor="middle"))
    for i, label in enumerate(labels):
        y = top + i * cell
        parts.append(_text(name_w - 8, y + cell / 2 + 4, f"{i + 1}. {label}", anchor="end"))
        for j in range(n):
            x = name_w + j * cell
            value = values[i][j]
            missing = value is None or math.isnan(value)
            fill = "#e5e7eb" if i == j or missing else _colour(value)
            # n/a: the two never both answered one row (not 0 %: they never disagreed either)
            shown = "—" if i == j else "n/a" if missing else f"{value:.0%}"
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="{fill}"><title>{_e(labels[i])} / {_e(labels[j])}: {_e(shown)}</title></rect>'
            )
            parts.append(_text(x + cell / 2 - 1, y + cell / 2 + 3, shown, anchor="middle"))
    if note:
        parts.append(_text(10, height - 10, note, size=11, fill=_GREY))
    return _svg(width, height, "".join(parts), title)


# -------------------------------------------------------------------------- scatter


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        start, stop = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        return [10.0**k for k in range(start, stop + 1)]
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step) + 2)]


def _fmt(value: float, unit: str) -> str:
    if unit == "$":
        if value == 0:
            return "$0"
        return f"${value:.2g}" if value < 0.01 else f"${value:.2f}"
    if unit == "%":
        return f"{value:.0%}"
    return f"{value:g}{unit}"


def scatter(
    points: Sequence[tuple[str, float, float, str]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_unit: str = "$",
    y_unit: str = "%",
    note: str = "",
) -> str:
    """Labelled points ``(label, x, y, kind)``; kind "model" is a dot, anything else a diamond.

    The x axis is logarithmic when the values span more than 20x (prices usually do).
    """
    pts = [p for p in points if not (math.isnan(p[1]) or math.isnan(p[2]))]
    left, right, top, bottom = 64.0, 200.0, 34.0, 46.0
    plot_w, plot_h = 420.0, 240.0
    width, height = left + plot_w + right, top + plot_h + bottom + (16 if note else 0)
    parts = [_text(10, 18, title, size=13, weight="600")]
    if not pts:
        parts.append(_text(left, top + 40, "nothing to plot (unknown values)", fill=_GREY))
        return _svg(width, height, "".join(parts), title)
    xs, ys = [p[1] for p in pts], [p[2] for p in pts]
    log = min(xs) > 0 and max(xs) / min(xs) > 20
    x_lo, x_hi = (min(xs) / 1.5, max(xs) * 1.5) if log else (0.0, max(xs) * 1.1 or 1.0)
    y_lo, y_hi = min(0.5, min(ys)), 1.0 if y_unit == "%" else max(ys) * 1.1

    def sx(v: float) -> float:
        if log:
            f = (math.log10(v) - math.log10(x_lo)) / (math.log10(x_hi) - math.log10(x_lo))
        else:
            f = (v - x_lo) / ((x_hi - x_lo) or 1)
        return left + f * plot_w

    def sy(v: float) -> float:
        return top + plot_h - (v - y_lo) / ((y_hi - y_lo) or 1) * plot_h

    for t in _ticks(x_lo, x_hi, log):
        if x_lo <= t <= x_hi:
            x = sx(t)
            parts.append(
                f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="{_GRID}"/>'
            )
            parts.append(_text(x, top + plot_h + 16, _fmt(t, x_unit), size=10, anchor="middle"))
    for t in _ticks(y_lo, y_hi, False):
        if y_lo <= t <= y_hi + 1e-9:
            y = sy(t)
            parts.append(
                f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{_GRID}"/>'
            )
            parts.append(_text(left - 6, y + 4, _fmt(t, y_unit), size=10, anchor="end"))
    parts.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="{_GREY}"/>'
    )
    parts.append(
        _text(
            left + plot_w / 2,
            top + plot_h + 34,
            x_label + (" (log scale)" if log else ""),
            size=11,
            anchor="middle",
        )
    )
    parts.append(
        _text(
            14,
            top + plot_h / 2,
            y_label,
            size=11,
            anchor="middle",
            extra=f' transform="rotate(-90 14 {top + plot_h / 2:.1f})"',
        )
    )
    placed: list[float] = []
    for label, xv, yv, kind in sorted(pts, key=lambda p: -p[2]):
        x, y = sx(xv), sy(yv)
        if kind == "model":
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="#7c3aed" opacity="0.85"/>')
        else:
            parts.append(
                f'<path d="M {x:.1f} {y - 7:.1f} L {x + 7:.1f} {y:.1f} L {x:.1f} {y + 7:.1f} '
                f'L {x - 7:.1f} {y:.1f} z" fill="#ea580c" opacity="0.9"/>'
            )
        ty = y + 4
        while any(abs(ty - p) < 12 for p in placed):
            ty += 12
        placed.append(ty)
        parts.append(_text(left + plot_w + 8, ty, _cut(label, 30), size=10.5))
        parts.append(
            f'<line x1="{x + 6:.1f}" y1="{y:.1f}" x2="{left + plot_w + 6:.1f}" y2="{ty - 4:.1f}" '
            f'stroke="{_GRID}"/>'
        )
    if note:
        parts.append(_text(10, height - 8, note, size=11, fill=_GREY))
    return _svg(width, height, "".join(parts), title)


# ----------------------------------------------------------------------------- bars


def bars(
    items: Sequence[tuple[str, float, str]],
    *,
    title: str,
    note: str = "",
    colour: str = "#7c3aed",
) -> str:
    """Horizontal bars ``(label, value, shown text)``; NaN values are listed as unknown."""
    label_w = 14 + 7.0 * max((len(i[0]) for i in items), default=0)
    bar_h, gap, top, plot_w = 18.0, 8.0, 32.0, 320.0
    height = top + len(items) * (bar_h + gap) + (26 if note else 8)
    width = label_w + plot_w + 200
    finite = [v for _, v, _ in items if not math.isnan(v)]
    most = max(finite, default=0.0) or 1.0
    parts = [_text(10, 18, title, size=13, weight="600")]
    for k, (label, value, shown) in enumerate(items):
        y = top + k * (bar_h + gap)
        parts.append(_text(label_w - 8, y + bar_h - 5, label, anchor="end"))
        w = 0.0 if math.isnan(value) else max(1.0, value / most * plot_w)
        parts.append(
            f'<rect x="{label_w:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bar_h}" rx="3" '
            f'fill="{colour}" opacity="0.8"/>'
        )
        parts.append(_text(label_w + w + 6, y + bar_h - 5, shown, size=11, fill=_GREY))
    if note:
        parts.append(_text(10, height - 8, note, size=11, fill=_GREY))
    return _svg(width, height, "".join(parts), title)
