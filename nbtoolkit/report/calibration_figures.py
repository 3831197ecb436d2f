"""How far a calibrated confidence can be trusted, drawn: ``cal.plot.reliability()`` and
``cal.plot.selective()``, and the same figures in reports.

>>> cal = nbt.calibrate(res, gold="gold")           # doctest: +SKIP
>>> fig = cal.plot.reliability()                     # doctest: +SKIP
>>> fig.savefig("reliability.pdf")                   # doctest: +SKIP

Every number drawn is held out (``Calibration.reliability()`` / ``selective()``: each row
scored by a confidence model fitted without it). Like ``figures``: a new
``matplotlib.figure.Figure`` per call, built with the object API (no pyplot), and matplotlib
is imported only when a figure is drawn.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..reliability import BINS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..calibration_result import Calibration

__all__ = ["CalibrationPlots"]

_CALIBRATED = "#7c3aed"
_OWN = "#ea580c"
_GREY = "#6b7280"
_GRID = "#e5e7eb"
#: The legend's names of the two confidences; tests and reports read the same words.
CALIBRATED_LABEL = "calibrated confidence"
OWN_LABEL = "the strategy's own confidence"
DIAGONAL_LABEL = "perfectly calibrated"


class CalibrationPlots:
    """The charts of one ``Calibration``, as ``cal.plot.<name>()``; each returns a new
    ``Figure``. Confidence and accuracy are shares in [0, 1]; bins are equal-width."""

    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration

    def __repr__(self) -> str:
        return "<charts: .reliability(), .selective()>"

    def reliability(self, bins: int = BINS) -> Figure:
        """The reliability diagram, held out: per confidence bin, the rows' mean confidence
        (x) against the share of them that were right (y), for the calibrated confidence and
        the strategy's own, beside the diagonal of a perfect calibration; below, how many rows
        each bin holds. Bins without rows are not drawn."""
        from .chart import Chart

        cal = self.calibration
        tables = [
            (CALIBRATED_LABEL, cal.reliability(bins), cal.ece, _CALIBRATED, "o"),
            (OWN_LABEL, cal.reliability(bins, of="strategy"), cal.strategy_ece, _OWN, "s"),
        ]
        fig = Chart(figsize=(6.4, 6.2), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        rows = len(cal.held_out)
        top.set_title(
            f"Reliability of the confidence, held out ({rows} rows, {bins} bins)",
            loc="left",
            fontsize=11,
            fontweight="bold",
        )
        top.plot([0, 1], [0, 1], linestyle="--", color=_GREY, linewidth=1, label=DIAGONAL_LABEL)
        width = 0.4 / bins
        for k, (label, table, ece, colour, marker) in enumerate(tables):
            full = table[table["rows"] > 0]
            top.plot(
                full["mean_confidence"].tolist(),
                full["accuracy"].tolist(),
                marker=marker,
                color=colour,
                linewidth=1.6,
                label=f"{label} (ECE {_number(ece)})",
            )
            centres = ((table["low"] + table["high"]) / 2).tolist()
            bottom.bar(
                [c + (k - 0.5) * width for c in centres],
                table["rows"].tolist(),
                width=width,
                color=colour,
                alpha=0.85,
                label=label,
            )
        top.set_xlim(0, 1)
        top.set_ylim(0, 1.02)
        top.set_ylabel("accuracy (share of the bin's rows right)")
        top.legend(loc="upper left", fontsize=8, frameon=False)
        top.grid(True, color=_GRID, linewidth=0.8)
        top.set_axisbelow(True)
        bottom.set_xlabel("confidence")
        bottom.set_ylabel("rows")
        bottom.grid(True, axis="y", color=_GRID, linewidth=0.8)
        bottom.set_axisbelow(True)
        if not rows:
            top.text(0.5, 0.5, "no held-out rows", ha="center", transform=top.transAxes)
        return fig

    def selective(self, target_error: float = 0.05) -> Figure:
        """The selective accuracy curve, held out: keep the rows at or above a confidence;
        the share kept (x) against how often the kept rows are wrong (y), for both
        confidences, with the target error and the threshold that meets it
        (``cal.threshold_for(target_error)``) marked."""
        from matplotlib.ticker import PercentFormatter

        from .chart import Chart

        cal = self.calibration
        fig = Chart(figsize=(6.4, 4.4), layout="constrained")
        ax = fig.add_subplot()
        ax.set_title(
            "Error against the share of rows kept, held out",
            loc="left",
            fontsize=11,
            fontweight="bold",
        )
        lines = ((CALIBRATED_LABEL, "calibrated", _CALIBRATED), (OWN_LABEL, "strategy", _OWN))
        for label, of, colour in lines:
            curve = cal.selective(of=of)
            ax.step(
                curve["kept"].tolist(),
                curve["error"].tolist(),
                where="post",
                color=colour,
                linewidth=1.6,
                label=label,
            )
        ax.axhline(target_error, linestyle="--", color=_GREY, linewidth=1)
        chosen = cal.threshold_for(target_error)
        if chosen.rows:
            kept = f"{chosen.rows} of {chosen.total_rows} rows kept"
            ax.plot(
                [chosen.kept],
                [chosen.error],
                marker="o",
                color="#111827",
                linestyle="none",
                label=f"confidence >= {chosen.threshold:.3g}: {kept}",
            )
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, max(0.1, 1.3 * max(target_error, _worst(cal))))
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel("share of rows kept (the most confident first)")
        ax.set_ylabel("error of the kept rows")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        ax.grid(True, color=_GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        fig.supxlabel(
            f"dashed: the target error, {target_error:.0%}. {chosen.sentence[:1].upper()}"
            f"{chosen.sentence[1:]}",
            fontsize=8,
            color=_GREY,
            wrap=True,
        )
        return fig


def _worst(cal: Calibration) -> float:
    errors = [float(e) for of in ("calibrated", "strategy") for e in cal.selective(of=of)["error"]]
    return max((e for e in errors if not math.isnan(e)), default=0.0)


def _number(value: Any) -> str:
    return "unknown" if value is None or math.isnan(float(value)) else f"{float(value):.3f}"
