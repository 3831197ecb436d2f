"""A confidence that is a probability: the chance a row's consensus answer is right.

A strategy's own ``confidence`` is a share of votes; a share of 0.9 need not be right 9
times in 10. ``ConfidenceModel`` maps five features every strategy's verdict has to a
probability, learned from rows with known answers (``calibrate`` fits it by
cross-validation and scores it only on rows it was not fitted on):

- ``weighted_share``: the winning answer's share of the asked models, each weighted by its
  fitted accuracy (a model unknown to the fit weighs 0);
- ``margin``: that share minus the runner-up answer's;
- ``n_valid``: how many answers passed extraction;
- ``best_agrees``: 1 if the model with the best fitted accuracy gave the winning answer;
- ``n_distinct``: how many different answers there were.

The map is a logistic regression on the standardised features (Platt scaling with several
inputs: J. Platt, "Probabilistic Outputs for Support Vector Machines", 1999; compared with
isotonic regression by Niculescu-Mizil & Caruana, "Predicting Good Probabilities with
Supervised Learning", ICML 2005). Why logistic and why here: it takes several features at
once (isotonic regression needs a single score to be monotone in), it cannot overfit a few
hundred rows the way isotonic steps do, and five weights fitted by Newton's method are a
dozen lines of NumPy, deterministic and with no new dependency (scikit-learn would add
~60 MB with SciPy for the same fit). Two guards from Platt's paper keep it sane on small or
perfect data: targets smoothed to (N+ + 1)/(N+ + 2) and 1/(N- + 2) instead of 1 and 0, and an
L2 penalty on the slopes (scikit-learn's default strength, C=1), so a panel that was always
right still gets a finite fit and a few dozen rows do not overfit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .strategies.base import Candidate, Verdict, answer_key

FEATURES = ("weighted_share", "margin", "n_valid", "best_agrees", "n_distinct")
METHOD = "logistic regression (Platt scaling) on 5 features"
# A probability of exactly 0 or 1 is never earned from finitely many labelled rows.
_FLOOR, _CEILING = 1e-4, 1 - 1e-4
# The L2 strength of scikit-learn's LogisticRegression default (C=1) on standardised features:
# negligible on a thousand rows, and on forty it keeps one wrong row from flipping the signs.
_L2 = 1.0


def features(
    candidates: Sequence[Candidate], answer: Any, accuracy: Mapping[str, float], best: str
) -> list[float]:
    """The five ``FEATURES`` of one row: its candidates (those asked) and the answer chosen."""
    valid = [c for c in candidates if c.valid]
    support: dict[str, float] = {}
    for c in valid:
        key = answer_key(c.answer)
        support[key] = support.get(key, 0.0) + accuracy.get(c.model, 0.0)
    everyone = sum(accuracy.get(c.model, 0.0) for c in candidates) or 1.0
    winner = answer_key(answer) if answer is not None else None
    mine = support.get(winner, 0.0) if winner is not None else 0.0
    runner_up = max((v for k, v in support.items() if k != winner), default=0.0)
    best_agrees = any(
        c.model == best and c.valid and answer_key(c.answer) == winner for c in candidates
    )
    return [
        mine / everyone,
        (mine - runner_up) / everyone,
        float(len(valid)),
        float(best_agrees),
        float(len(support)),
    ]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def fit_logistic(
    x: np.ndarray, right: np.ndarray, iterations: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(weights, mean, scale)`` of a logistic regression of ``right`` (0/1) on ``x``
    (rows x features), by Newton's method on Platt's smoothed targets (module doc).
    ``weights[0]`` is the intercept. No rows: a model that says 0.5."""
    x = np.asarray(x, dtype="float64").reshape(len(right), -1) if len(right) else x
    width = x.shape[1] if x.ndim == 2 else len(FEATURES)
    if len(right) == 0:
        return np.zeros(width + 1), np.zeros(width), np.ones(width)
    y = np.asarray(right, dtype="float64")
    positives, negatives = float(y.sum()), float(len(y) - y.sum())
    target = np.where(y > 0.5, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0  # a constant feature standardises to 0 and its weight stays 0
    z = np.c_[np.ones(len(x)), (x - mean) / scale]
    penalty = np.diag(np.r_[1e-9, np.full(width, _L2)])  # the intercept (almost) free
    w = np.zeros(width + 1)
    for _ in range(iterations):
        p = _sigmoid(z @ w)
        gradient = z.T @ (p - target) + penalty @ w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.abs(step).max()) < 1e-10:
            break
    return w, mean, scale


@dataclass(frozen=True)
class ConfidenceModel:
    """A fitted map from a verdict's ``FEATURES`` to the probability it is right.

    ``accuracy``: the per-model accuracies the features weigh by; ``best``: the most accurate
    model's label; ``weights``/``mean``/``scale``: the logistic regression (intercept first);
    ``rows``: the row numbers it was fitted on (a held-out row is never among them).
    """

    accuracy: dict[str, float]
    best: str
    weights: tuple[float, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    rows: tuple[int, ...]

    @classmethod
    def fit(
        cls,
        x: Sequence[Sequence[float]],
        right: Sequence[bool],
        *,
        accuracy: Mapping[str, float],
        best: str,
        rows: Sequence[int],
    ) -> ConfidenceModel:
        """Fit on feature rows ``x`` (see ``features``) and whether each row was right."""
        array = np.asarray(x, dtype="float64").reshape(len(right), len(FEATURES))
        w, mean, scale = fit_logistic(array, np.asarray(right, dtype="float64"))
        return cls(
            dict(accuracy), best, tuple(map(float, w)), tuple(mean), tuple(scale), tuple(rows)
        )

    def probability_of(self, x: Sequence[float]) -> float:
        """The probability for one row's features."""
        w = np.asarray(self.weights)
        z = w[0] + float(((np.asarray(x) - np.asarray(self.mean)) / np.asarray(self.scale)) @ w[1:])
        return float(
            min(_CEILING, max(_FLOOR, 1.0 / (1.0 + math.exp(-max(-500.0, min(500.0, z))))))
        )

    def probability(self, candidates: Sequence[Candidate], answer: Any) -> float:
        """The probability that ``answer`` is right, from the row's candidates; 0 for no answer."""
        if answer is None or not any(c.valid for c in candidates):
            return 0.0
        return self.probability_of(features(candidates, answer, self.accuracy, self.best))

    def apply(self, verdict: Verdict, candidates: Sequence[Candidate]) -> Verdict:
        """``verdict`` with its confidence replaced by the probability, marked calibrated."""
        return replace(
            verdict, confidence=self.probability(candidates, verdict.answer), calibrated=True
        )
