"""How far a confidence can be trusted: measured on rows with known answers, held out.

Pure functions over two aligned arrays, ``confidence`` (0..1 per row) and ``correct`` (was the
row's answer right), as ``calibrate`` collects them from rows its confidence model never saw:

- ``expected_calibration_error``: the gap between confidence and accuracy, averaged over 10
  equal-width bins weighted by their rows (Naeini, Cooper & Hauskrecht, AAAI 2015; the
  form used by Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).
- ``reliability_table``: the same bins, one row each (the data of a reliability diagram).
- ``selective_curve``, ``threshold_for`` and ``error_at``: keep the rows at or above a
  confidence, what share that keeps and how often the kept rows are wrong; the threshold for
  a target error; the error of the most confident share.
- ``mcnemar``: an exact paired test between two ways of answering the same rows.

``HeldOut`` bundles the arrays with those methods; ``Calibration`` and a calibrated strategy
carry one, so ``confidence_threshold="auto:0.05"`` can pick its threshold
(``resolve_threshold``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import ConfigError

BINS = 10


def _arrays(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(confidence, dtype="float64")
    y = np.asarray(correct, dtype="float64")
    if p.shape != y.shape:
        raise ValueError(f"{len(p)} confidences for {len(y)} outcomes")
    return p, y


def _bin_of(p: np.ndarray, bins: int) -> np.ndarray:
    # Equal-width bins, the last one closed: a confidence of exactly 1.0 is in the top bin.
    return np.minimum((p * bins).astype(int), bins - 1)


def reliability_table(confidence: Any, correct: Any, bins: int = BINS) -> pd.DataFrame:
    """One row per confidence bin (all ``bins`` of them, empty ones with 0 rows and NaN).

    Columns: ``bin`` (its label, e.g. ``"0.90-1.00"``), ``low`` and ``high`` (its edges),
    ``mean_confidence``, ``accuracy`` (share of its rows that were right) and ``rows``.
    """
    p, y = _arrays(confidence, correct)
    which = _bin_of(p, bins)
    records = []
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        records.append(
            {
                "bin": f"{b / bins:.2f}-{(b + 1) / bins:.2f}",
                "low": b / bins,
                "high": (b + 1) / bins,
                "mean_confidence": float(p[mask].mean()) if n else math.nan,
                "accuracy": float(y[mask].mean()) if n else math.nan,
                "rows": n,
            }
        )
    return pd.DataFrame.from_records(records)


def expected_calibration_error(confidence: Any, correct: Any, bins: int = BINS) -> float:
    """Sum over bins of (rows in bin / all rows) x |mean confidence - accuracy|; 0 is perfect.
    NaN when there are no rows."""
    table = reliability_table(confidence, correct, bins)
    total = int(table["rows"].sum())
    if total == 0:
        return math.nan
    full = table[table["rows"] > 0]
    gaps = (full["mean_confidence"] - full["accuracy"]).abs() * full["rows"]
    return float(gaps.sum() / total)


def selective_curve(confidence: Any, correct: Any) -> pd.DataFrame:
    """Keep the rows with confidence >= ``threshold``: one row per distinct confidence,
    highest first. Columns: ``threshold``, ``kept`` (share of all rows kept), ``rows`` (kept),
    ``error`` (share of the kept rows that were wrong)."""
    p, y = _arrays(confidence, correct)
    if len(p) == 0:
        return pd.DataFrame(columns=["threshold", "kept", "rows", "error"])
    order = np.argsort(-p, kind="stable")
    p, y = p[order], y[order]
    wrong = np.cumsum(1.0 - y)
    # Rows that tie on confidence are kept or dropped together: one point per distinct value.
    last = np.r_[np.nonzero(p[1:] != p[:-1])[0], len(p) - 1]
    kept = last + 1
    return pd.DataFrame(
        {
            "threshold": p[last],
            "kept": kept / len(p),
            "rows": kept,
            "error": wrong[last] / kept,
        }
    )


def _pct(share: float) -> str:
    value = 100 * share
    return f"{value:.0f}%" if value >= 10 or value == round(value) else f"{value:.2g}%"


@dataclass(frozen=True)
class Threshold:
    """The confidence to keep rows at, for a target error, as measured on held-out rows.

    ``threshold``: keep rows with confidence >= it (1.0 when no threshold reaches the target:
    check every row); ``kept``: share of rows kept; ``error``: the kept rows' error rate.
    """

    target_error: float
    threshold: float
    kept: float
    rows: int
    error: float
    total_rows: int

    @property
    def sentence(self) -> str:
        """``keep the 78% of rows with confidence >= 0.82 to stay under 5% error ...``"""
        target = _pct(self.target_error)
        if self.rows == 0:
            return (
                f"no confidence keeps the error under {target}: even the most confident rows "
                "are wrong more often than that; check every row"
            )
        if self.rows == self.total_rows:
            return (
                f"keep all {self.total_rows} rows: their error ({_pct(self.error)}, held out) "
                f"is already under {target}"
            )
        return (
            f"keep the {_pct(self.kept)} of rows with confidence >= {self.threshold:.3g} to "
            f"stay under {target} error ({_pct(self.error)} held out, {self.rows} of "
            f"{self.total_rows} rows); check the other {self.total_rows - self.rows}"
        )

    def __str__(self) -> str:
        return self.sentence


def threshold_for(confidence: Any, correct: Any, target_error: float) -> Threshold:
    """The lowest threshold whose kept rows are wrong at most ``target_error`` of the time
    (so the most rows kept), read off ``selective_curve``."""
    curve = selective_curve(confidence, correct)
    total = int(curve["rows"].max()) if len(curve) else 0
    ok = curve[curve["error"] <= target_error + 1e-12]
    if ok.empty:
        return Threshold(target_error, 1.0, 0.0, 0, math.nan, total)
    best = ok.iloc[-1]  # highest share kept: the curve is ordered by falling threshold
    return Threshold(
        target_error,
        float(best["threshold"]),
        float(best["kept"]),
        int(best["rows"]),
        float(best["error"]),
        total,
    )


def error_at(confidence: Any, correct: Any, kept: float) -> tuple[float, float]:
    """``(share kept, error)`` when keeping the most confident ``kept`` share of the rows
    (at least that share: rows tied on confidence are kept together). NaN with no rows."""
    curve = selective_curve(confidence, correct)
    enough = curve[curve["kept"] >= kept - 1e-12]
    if enough.empty:
        return math.nan, math.nan
    first = enough.iloc[0]
    return float(first["kept"]), float(first["error"])


@dataclass(frozen=True)
class PairedTest:
    """McNemar's test on paired right/wrong outcomes of two methods on the same rows.

    ``wins``: rows the first got right and the second wrong; ``losses``: the reverse.
    ``p_value``: exact two-sided binomial p (McNemar 1947, exact conditional form): the
    chance of a split at least this uneven if each discordant row were a fair coin.
    """

    first: str
    second: str
    rows: int
    wins: int
    losses: int
    p_value: float

    @property
    def sentence(self) -> str:
        if self.wins + self.losses == 0:
            return (
                f"{self.first} and {self.second} are right and wrong on the same rows "
                f"({self.rows} held out): no difference to test"
            )
        return (
            f"paired on {self.rows} held-out rows, {self.first} is right where {self.second} is "
            f"wrong on {self.wins}, the reverse on {self.losses}: exact McNemar p = "
            f"{self.p_value:.2g}"
        )

    def __str__(self) -> str:
        return self.sentence


def mcnemar(
    first_correct: Any, second_correct: Any, first: str = "first", second: str = "second"
) -> PairedTest:
    """Exact McNemar test (two-sided) of two methods' right/wrong on the same rows."""
    a, b = _arrays(first_correct, second_correct)
    wins = int(((a > 0.5) & (b < 0.5)).sum())
    losses = int(((a < 0.5) & (b > 0.5)).sum())
    n = wins + losses
    # Exact: integers throughout, so thousands of discordant rows neither underflow nor round.
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1))
    p_value = min(1.0, 2 * tail / 2**n) if n else 1.0
    return PairedTest(first, second, len(a), wins, losses, p_value)


@dataclass(frozen=True)
class HeldOut:
    """Held-out ``confidence`` and ``correct`` per row, and what they say (see module doc)."""

    confidence: tuple[float, ...]
    correct: tuple[bool, ...]

    def ece(self, bins: int = BINS) -> float:
        return expected_calibration_error(self.confidence, self.correct, bins)

    def reliability(self, bins: int = BINS) -> pd.DataFrame:
        return reliability_table(self.confidence, self.correct, bins)

    def selective(self) -> pd.DataFrame:
        return selective_curve(self.confidence, self.correct)

    def threshold(self, target_error: float) -> Threshold:
        return threshold_for(self.confidence, self.correct, target_error)

    def error_at(self, kept: float) -> tuple[float, float]:
        return error_at(self.confidence, self.correct, kept)


_AUTO = re.compile(r"auto:\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(%?)")


def resolve_threshold(value: Any, strategy: Any) -> float:
    """``confidence_threshold`` as a number: a number as is; ``"auto:0.05"`` (or ``"auto:5%"``)
    the threshold that keeps the held-out error under 0.05, from the calibration the strategy
    carries (``calibrate(...).recommendation``). Raises ``ConfigError`` otherwise."""
    if not isinstance(value, str):
        return float(value)
    match = _AUTO.fullmatch(value.strip())
    target = float(match.group(1)) / (100 if match.group(2) else 1) if match else math.nan
    if not 0 < target < 1:
        raise ConfigError(
            f"confidence_threshold={value!r} is not a number from 0 to 1 nor "
            "'auto:<target error>' with a target between 0 and 1, such as 'auto:0.05'"
        )
    held_out = getattr(strategy, "calibration", None)
    if not isinstance(held_out, HeldOut):
        name = getattr(strategy, "name", type(strategy).__name__)
        raise ConfigError(
            f"confidence_threshold={value!r} needs a calibrated strategy, and {name!r} carries "
            "no calibration: pass strategy=cal.recommendation from cal = nbt.calibrate(res, "
            "gold=...), or give a number"
        )
    return held_out.threshold(target).threshold
