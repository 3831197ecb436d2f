"""``Calibration``: what ``calibrate`` learned, and how it shows itself (text and HTML).

Built only by ``calibrate`` (``nbtoolkit.calibration``); the held-out measures behind its
confidence lines are ``nbtoolkit.reliability``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .confidence import METHOD, ConfidenceModel
from .reliability import (
    BINS,
    HeldOut,
    PairedTest,
    Threshold,
)


@dataclass
class Calibration:
    """What ``calibrate`` learned; ``recommendation`` goes straight to ``strategy=``.

    ``held_out``: one row per calibrated row (index ``row``): ``fold``, the recommendation's
    ``answer`` there, its calibrated ``confidence`` (from the model fitted without that
    fold), the strategy's own ``strategy_confidence``, whether it was ``correct``, and
    whether the best single model was (``single_correct``). ``ece`` and ``strategy_ece``:
    the expected calibration error (10 bins) of those two confidences. ``fold_models``: the
    confidence model fitted for each fold (its ``rows`` never include the fold's).
    """

    per_model: pd.DataFrame
    weights: dict[str, float]
    order: list[str]
    candidates: pd.DataFrame
    recommendation: Any
    best_single: str
    single_beats_panels: bool
    message: str
    confidence_model: ConfidenceModel | None = None
    held_out: pd.DataFrame = field(default_factory=pd.DataFrame)
    fold_models: list[ConfidenceModel] = field(default_factory=list)
    paired: PairedTest | None = None

    # The per-model accuracy is in-sample (every row, the rows the weights are fitted on);
    # the candidates' is held out. Each table says which, so the two never read as one.
    PER_MODEL_LABEL = "per model, in-sample (accuracy on all rows, not held out)"
    CANDIDATES_LABEL = "candidates, held-out accuracy (k-fold cross-validation)"
    CONFIDENCE_LABEL = f"confidence of the recommendation, held out ({METHOD})"
    TARGETS = (0.01, 0.05)

    @property
    def measured(self) -> HeldOut:
        """The held-out calibrated confidences and outcomes, as ``HeldOut``."""
        return self._held("calibrated")

    def _held(self, of: str) -> HeldOut:
        columns = {"calibrated": "confidence", "strategy": "strategy_confidence"}
        if of not in columns:
            raise ValueError(f"of={of!r}: 'calibrated' or 'strategy'")
        return HeldOut(
            tuple(float(c) for c in self.held_out.get(columns[of], [])),
            tuple(bool(c) for c in self.held_out.get("correct", [])),
        )

    @property
    def ece(self) -> float:
        """Expected calibration error (10 bins) of the calibrated confidence, held out."""
        return self.measured.ece()

    @property
    def strategy_ece(self) -> float:
        """The same for the strategy's own confidence (its share of votes), held out."""
        return self._held("strategy").ece()

    def reliability(self, bins: int = BINS, *, of: str = "calibrated") -> pd.DataFrame:
        """Held-out reliability table: ``bin, low, high, mean_confidence, accuracy, rows``,
        one row per equal-width confidence bin (the data of a reliability diagram).
        ``of="strategy"``: the same for the strategy's own confidence, to compare."""
        return self._held(of).reliability(bins)

    def selective(self, *, of: str = "calibrated") -> pd.DataFrame:
        """Held-out selective accuracy curve: ``threshold, kept, rows, error`` per distinct
        confidence, highest first (keep rows at or above ``threshold``).
        ``of="strategy"``: the same for the strategy's own confidence, to compare."""
        return self._held(of).selective()

    @property
    def plot(self) -> Any:
        """The calibration's charts as matplotlib figures: ``cal.plot.reliability()`` and
        ``cal.plot.selective()`` (``nbtoolkit.report.calibration_figures.CalibrationPlots``);
        matplotlib is imported when a chart is drawn."""
        from . import views

        return views.get("calibration.plot")(self)

    def threshold_for(self, target_error: float) -> Threshold:
        """The threshold keeping the most rows with held-out error <= ``target_error``;
        ``str()`` of it is the sentence (``keep the 78% of rows with confidence >= 0.82 ...``)."""
        return self.measured.threshold(target_error)

    def _confidence_lines(self) -> list[str]:
        if self.held_out.empty:
            return []
        lines = [
            f"expected calibration error {self.ece:.3f} on {len(self.held_out)} held-out rows "
            f"(10 bins; the strategy's own confidence: {self.strategy_ece:.3f})",
            *(str(self.threshold_for(t)) for t in self.TARGETS),
        ]
        if self.paired is not None:
            lines.append(str(self.paired))
        return lines

    def _shown(self, table: pd.DataFrame) -> pd.DataFrame:
        from .formatting import format_cost  # small costs with significant digits; NaN: unknown

        shown = table.round(4)
        shown["cost_per_row"] = [format_cost(c) for c in table["cost_per_row"]]
        return shown

    def __repr__(self) -> str:
        lines = self._confidence_lines()
        confidence = (
            f"\n\n{self.CONFIDENCE_LABEL}:\n" + "\n".join(f"- {line}" for line in lines)
            if lines
            else ""
        )
        with pd.option_context("display.width", 120):
            return (
                f"Calibration: {self.message}\n\n{self.PER_MODEL_LABEL}:\n"
                f"{self._shown(self.per_model)}\n\n"
                f"{self.CANDIDATES_LABEL}:\n{self._shown(self.candidates)}{confidence}"
            )

    def _repr_html_(self) -> str:
        import html

        lines = self._confidence_lines()
        confidence = (
            f"<h4>{html.escape(self.CONFIDENCE_LABEL.capitalize())}</h4><ul>"
            + "".join(f"<li>{html.escape(line)}</li>" for line in lines)
            + "</ul>"
            + self.reliability().round(4).to_html(index=False)
            if lines
            else ""
        )
        return (
            f"<div><p><strong>{html.escape(self.message)}</strong></p>"
            f"<h4>{html.escape(self.PER_MODEL_LABEL.capitalize())}</h4>"
            f"{self._shown(self.per_model).to_html()}"
            f"<h4>{html.escape(self.CANDIDATES_LABEL.capitalize())}</h4>"
            f"{self._shown(self.candidates).to_html()}{confidence}</div>"
        )
