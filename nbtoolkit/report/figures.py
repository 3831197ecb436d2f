"""The run's charts as matplotlib figures: ``res.plot.<name>()``, and the same in reports.

>>> fig = res.plot.agreement()                  # doctest: +SKIP
>>> fig.axes[0].set_title("Panel agreement")    # doctest: +SKIP
>>> fig.savefig("agreement.pdf")                # doctest: +SKIP

Each method of ``Plots`` returns a new ``matplotlib.figure.Figure`` built with the object
API (no pyplot, no global state): restyle it, save it, put it in a paper. A report embeds
the same figures as inline SVG (``svg``): no external resource, and the same bytes for the
same run. matplotlib is imported when a figure is drawn, never by ``import nbtoolkit``.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..results import RunResult

__all__ = ["Plots", "bars", "heatmap", "scatter", "svg"]

_MODEL_COLOUR = "#7c3aed"
_STRATEGY_COLOUR = "#ea580c"
_GREY = "#6b7280"
_MISSING = "#e5e7eb"


# ------------------------------------------------------------------------ accessor


class Plots:
    """The charts of one run, as ``res.plot.<name>()``; each returns a new ``Figure``.

    ``gold`` (where a chart needs right answers) is the name of a column of the run's data,
    or the answers themselves: a Series indexed by row, or a list in row order. Costs are in
    USD, latencies in seconds; an unknown cost or latency is left out and named, never drawn
    as 0.
    """

    def __init__(self, result: RunResult) -> None:
        self.result = result

    def __repr__(self) -> str:
        return "<charts: " + ", ".join(f".{n}()" for n in _CHARTS) + ">"

    def agreement(self) -> Figure:
        """Models x models heatmap: the share of rows where both gave the same valid answer
        (``res.agreement_matrix()``); grey "n/a" where two models never both answered."""
        matrix = self.result.agreement_matrix()
        return heatmap(
            [str(m) for m in matrix.index],
            matrix.to_numpy().tolist(),
            title="How often two models gave the same answer",
            note="share of rows where both gave a valid answer and it was the same; "
            "n/a: they never both answered one row",
        )

    def cost_accuracy(self, *, gold: Any = None) -> Figure:
        """Each model's cost per row (USD) against its accuracy on ``gold``, with the
        consensus; without ``gold``, against how often it agrees with the consensus."""
        from . import analysis as an

        res = self.result
        answers = (
            an.gold_answers(res, gold, who="res.plot.cost_accuracy()") if gold is not None else None
        )
        table = an.per_model(res, answers)
        y_column = "accuracy" if answers is not None else "agrees_with_consensus"
        points = [
            (str(m), rec["cost_per_row_usd"], rec[y_column], "model") for m, rec in table.iterrows()
        ]
        if answers is not None:
            consensus = res.consensus.set_index("row")["answer"]
            points.append(
                (
                    f"consensus ({res.strategy})",
                    an.cost_total(an.calls_made(res)["cost_usd"]) / max(1, len(res.consensus)),
                    an.accuracy(consensus, answers),
                    "strategy",
                )
            )
        y_label = "accuracy (gold)" if answers is not None else "agrees with the consensus"
        return scatter(
            points,
            title=f"Cost per row against {y_label}",
            x_label="cost per row (USD)",
            y_label=y_label,
        )

    def accuracy(self, *, gold: Any) -> Figure:
        """Bars: each model's share of rows answered right, against ``gold``."""
        from . import analysis as an

        answers = an.gold_answers(self.result, gold, who="res.plot.accuracy()")
        table = an.per_model(self.result, answers)
        return _shares(
            bars(
                [(str(m), v, _percent(v)) for m, v in table["accuracy"].items()],
                title="Accuracy per model",
                x_label="accuracy (share of rows right)",
                limit=1.0,
            )
        )

    def valid(self) -> Figure:
        """Bars: each model's share of calls made whose reply could be read as an answer."""
        from . import analysis as an

        table = an.per_model(self.result)
        return _shares(
            bars(
                [(str(m), v, _percent(v)) for m, v in table["valid"].items()],
                title="Valid answers per model",
                x_label="valid answers (share of calls made)",
                limit=1.0,
            )
        )

    def cost(self) -> Figure:
        """Bars: each model's total cost (USD); a model with an unknown price is named, not 0."""
        from ..formatting import format_cost
        from . import analysis as an

        table = an.per_model(self.result)
        simulated = " (simulated prices)" if self.result.simulated else ""
        fig = bars(
            [(str(m), v, format_cost(v)) for m, v in table["cost_usd"].items()],
            title="Cost per model" + simulated,
            x_label="cost (USD)",
        )
        from matplotlib.ticker import FuncFormatter

        fig.axes[0].xaxis.set_major_formatter(FuncFormatter(lambda v, _: _usd_tick(v)))
        return fig

    def latency(self) -> Figure:
        """Bars: each model's median latency per call (s), a tick at the 90th percentile."""
        from . import analysis as an

        table = an.per_model(self.result)
        items = [(str(m), rec["latency_s"], _latency_text(rec)) for m, rec in table.iterrows()]
        note = "simulated latencies" if self.result.simulated else "recorded latency of each call"
        return bars(
            items,
            title="Latency per model (median per call, | at p90)",
            x_label="latency (s)",
            note=note,
            ticks=list(table["latency_p90_s"]),
        )

    def strategies(self, *, gold: Any) -> Figure:
        """Cost per row (USD) against accuracy on ``gold``, for each model alone and several
        strategies replayed over the recorded answers (``rescore``: no new call)."""
        from . import analysis as an

        answers = an.gold_answers(self.result, gold, who="res.plot.strategies()")
        return strategy_scatter(an.strategy_table(self.result, answers))


_CHARTS = ("agreement", "cost_accuracy", "accuracy", "valid", "cost", "latency", "strategies")


def strategy_scatter(table: Any) -> Figure:
    """The ``analysis.strategy_table`` frame as cost per row against accuracy."""
    points = [
        (
            str(rec["candidate"]),
            rec["cost_per_row"],
            rec["accuracy"],
            "model" if rec["kind"] == "single model" else "strategy",
        )
        for rec in table.to_dict("records")
    ]
    return scatter(
        points,
        title="Cost against accuracy, per model and strategy",
        x_label="cost per row (USD)",
        y_label="accuracy",
    )


def _shares(fig: Figure) -> Figure:
    from matplotlib.ticker import PercentFormatter

    fig.axes[0].xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    return fig


def _percent(value: float) -> str:
    return "unknown" if _nan(value) else f"{value:.0%}"


def _latency_text(rec: Any) -> str:
    if _nan(rec["latency_s"]):
        return "unknown"
    return f"median {rec['latency_s']:.2f} s, p90 {rec['latency_p90_s']:.2f} s"


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# -------------------------------------------------------------------------- drawing


def _figure(width: float, height: float) -> Figure:
    # The object API: a Figure of its own, no pyplot and no backend switch, so nothing is
    # shared between calls and it draws headless.
    from .chart import Chart

    return Chart(figsize=(width, height), layout="constrained")


def heatmap(
    labels: Sequence[str], values: Sequence[Sequence[float]], *, title: str, note: str = ""
) -> Figure:
    """A square matrix of shares in [0, 1], red (0) to green (1); NaN cells grey, "n/a";
    the diagonal (a model with itself) grey, "—"."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    n = len(labels)
    data = np.ma.masked_invalid(np.array(values, dtype="float64").reshape(n, n))
    side = 1.2 + 0.6 * n
    fig = _figure(side + 0.09 * max((len(str(m)) for m in labels), default=0), side + 0.4)
    ax = fig.add_subplot()
    cmap = colormaps["RdYlGn"].with_extremes(bad=_MISSING)
    ax.pcolormesh(data, cmap=cmap, vmin=0.0, vmax=1.0, edgecolors="white", linewidth=2)
    for i in range(n):
        ax.add_patch(Rectangle((i, i), 1, 1, facecolor=_MISSING, edgecolor="white", linewidth=2))
        for j in range(n):
            value = values[i][j]
            # n/a: the two never both answered one row (not 0 %: they never disagreed either)
            shown = "—" if i == j else "n/a" if _nan(value) else f"{value:.0%}"
            ax.text(j + 0.5, i + 0.5, shown, ha="center", va="center", fontsize=9)
    ax.set_xticks([k + 0.5 for k in range(n)], [str(k + 1) for k in range(n)])
    ax.set_yticks([k + 0.5 for k in range(n)], [f"{k + 1}. {m}" for k, m in enumerate(labels)])
    ax.set_xlim(0, n)
    ax.set_ylim(n, 0)
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    if note:
        fig.supxlabel(note, fontsize=8, color=_GREY, wrap=True)
    return fig


def scatter(
    points: Sequence[tuple[str, float, float, str]],
    *,
    title: str,
    x_label: str,
    y_label: str,
) -> Figure:
    """Labelled points ``(label, x, y, kind)``; kind "model" is a dot, anything else a
    diamond. A point with an unknown x or y is left out and named under the chart. The x axis
    is logarithmic when the values span more than 20x (prices usually do)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator, PercentFormatter

    shown = [p for p in points if not (_nan(p[1]) or _nan(p[2]))]
    unknown = [p[0] for p in points if _nan(p[1]) or _nan(p[2])]
    fig = _figure(8.4, 4.4)
    ax = fig.add_subplot()
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.grid(True, color=_MISSING, linewidth=0.8)
    ax.set_axisbelow(True)
    if not shown:
        ax.text(0.5, 0.5, "nothing to plot (unknown values)", ha="center", transform=ax.transAxes)
    else:
        xs = [float(p[1]) for p in shown]
        if min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
            ax.set_xlim(min(xs) / 1.5, max(xs) * 1.5)
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xlabel(f"{x_label}, log scale")
        else:
            ax.set_xlim(0, max(xs) * 1.15 or 1.0)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _usd_tick(v)))
        y_lo = min(0.5, min(float(p[2]) for p in shown)) - 0.03
        ax.set_ylim(y_lo, 1.03)
        for is_model, colour, marker in (
            (True, _MODEL_COLOUR, "o"),
            (False, _STRATEGY_COLOUR, "D"),
        ):
            mine = [p for p in shown if (p[3] == "model") == is_model]
            if mine:
                ax.scatter(
                    [float(p[1]) for p in mine],
                    [float(p[2]) for p in mine],
                    color=colour,
                    marker=marker,
                    s=40,
                    zorder=3,
                    label="model" if is_model else "strategy",
                )
        # Names in a column right of the plot, each joined to its point: points of equal
        # accuracy and cost sit on top of each other, their names must not.
        placed: list[float] = []
        for label, x, y, _ in sorted(shown, key=lambda p: (-float(p[2]), float(p[1]))):
            spot = (float(y) - y_lo) / (1.03 - y_lo)
            spot = min([spot, *(p - 0.075 for p in placed[-1:])])
            placed.append(spot)
            ax.annotate(
                _cut(label, 42),
                (float(x), float(y)),
                xytext=(1.03, spot),
                textcoords="axes fraction",
                va="center",
                fontsize=8,
                arrowprops={"arrowstyle": "-", "color": "#d1d5db", "linewidth": 0.8},
            )
    if unknown:
        fig.supxlabel("unknown, not shown: " + ", ".join(unknown), fontsize=8, color=_GREY)
    return fig


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _usd_tick(value: float) -> str:
    if value == 0:
        return "$0"
    if abs(value) >= 0.01:
        return f"${value:.2f}"
    # $0.00005, not $5e-05: a price is read by its digits
    digits = -math.floor(math.log10(abs(value))) + 1
    return f"${value:.{digits}f}".rstrip("0")


def bars(
    items: Sequence[tuple[str, float, str]],
    *,
    title: str,
    x_label: str,
    note: str = "",
    limit: float | None = None,
    ticks: Sequence[float] | None = None,
) -> Figure:
    """Horizontal bars ``(label, value, shown text)``, first item on top. A NaN value gets no
    bar (a bar of 0 would read as free or instant): its text says "unknown". ``ticks``: one
    extra value per item marked with "|" (a p90 beside a median)."""
    n = len(items)
    fig = _figure(7.2, 1.0 + 0.42 * max(n, 1))
    ax = fig.add_subplot()
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    ax.set_xlabel(x_label)
    known = [(k, v) for k, (_, v, _) in enumerate(items) if not _nan(v)]
    ax.barh(
        [k for k, _ in known],
        [float(v) for _, v in known],
        height=0.6,
        color=_MODEL_COLOUR,
        alpha=0.85,
    )
    marks = [(k, t) for k, t in enumerate(ticks or []) if not _nan(t)]
    if marks:
        ax.scatter([t for _, t in marks], [k for k, _ in marks], marker="|", s=160, color="#111827")
    finite = [float(v) for _, v in known] + [float(t) for _, t in marks]
    most = max(finite, default=0.0) or 1.0
    ax.set_xlim(0, max(limit or 0.0, most) * 1.35)
    for k, (_, value, text) in enumerate(items):
        x = max(0.0 if _nan(v) else float(v) for v in (value, (ticks or [math.nan] * n)[k]))
        ax.annotate(
            text,
            (x, k),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            color=_GREY,
        )
    ax.set_yticks(range(n), [label for label, _, _ in items])
    ax.set_ylim(n - 0.5, -0.5)
    ax.grid(True, axis="x", color=_MISSING, linewidth=0.8)
    ax.set_axisbelow(True)
    if note:
        fig.supxlabel(note, fontsize=8, color=_GREY)
    return fig


# ------------------------------------------------------------------------- embedding

# The parts of matplotlib's SVG file that do not belong inline in a page: the XML prolog,
# the DOCTYPE (its DTD is a URL) and the RDF metadata (namespace and type URLs).
_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)


def svg(figure: Figure) -> str:
    """The figure as one inline ``<svg>`` element for an HTML page.

    Deterministic (a fixed id salt, no date), so the same run gives the same bytes; text
    stays text (searchable, and no font is embedded or fetched)."""
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "nbtoolkit", "svg.fonttype": "none"}):
        figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    drawing = _METADATA.sub("", _PROLOG.sub("", out.getvalue()))
    # matplotlib's style sheet is written for a file of its own: in a page, keep it to the figure.
    drawing = drawing.replace(
        '<style type="text/css">*{', '<style type="text/css">.nbtoolkit-figure *{', 1
    )
    return drawing.replace(
        "<svg ", '<svg class="nbtoolkit-figure" style="max-width:100%;height:auto" ', 1
    ).strip()
