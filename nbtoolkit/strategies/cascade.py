"""``cascade``: ask models one stage at a time, stop as soon as enough answers agree.

Models are tried in ``order`` (by default cheapest first, by litellm's price table; unknown
prices last). The first stage asks ``start`` models (default: as many as ``threshold``
needs); each later stage asks one more. A row is settled once one answer has ``threshold``
agreeing answers (a count, or with ``share=True`` a share of the weight asked so far).
Calls a settled row never needed are not made, not billed, and appear in ``outputs`` as
``Skipped`` rows.

>>> Cascade(order=["sim/swift-mini", "sim/steady-medium", "sim/oracle-large"], threshold=2)
Cascade(order=['sim/swift-mini', 'sim/steady-medium', 'sim/oracle-large'], threshold=2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import StrategyError
from .base import Candidate, ModelInfo, Verdict, restrict, tally
from .vote import Vote


class Cascade:
    name = "cascade"

    def __init__(
        self,
        order: Sequence[str] | None = None,
        threshold: float = 2,
        share: bool = False,
        start: int | None = None,
    ) -> None:
        if threshold <= 0 or (share and threshold > 1):
            raise StrategyError(
                f"cascade threshold={threshold}: a count >= 1, or a share in (0, 1] with share=True"
            )
        self.order = list(order) if order is not None else None
        self.models = self.order
        self.threshold = threshold
        self.share = share
        self.start = start

    def stages(self, panel: Sequence[ModelInfo]) -> list[list[str]]:
        labels = [m.label for m in panel]
        if self.order is not None:
            unknown = [m for m in self.order if m not in labels]
            if unknown:
                raise StrategyError(
                    f"cascade order names {unknown[0]!r}, which is not in models: {labels}"
                )
            order = list(self.order)
        else:
            order = [
                m.label
                for m in sorted(
                    panel,
                    key=lambda m: (
                        math.isnan(m.price_per_token),
                        0 if math.isnan(m.price_per_token) else m.price_per_token,
                        m.position,
                    ),
                )
            ]
        first = self.start or (1 if self.share else max(1, math.ceil(self.threshold)))
        first = min(first, len(order))
        return [order[:first]] + [[m] for m in order[first:]]

    def settled(self, candidates: list[Candidate]) -> bool:
        candidates = restrict(candidates, self.models)
        if self.share:
            totals, _, _ = tally(candidates)
            asked = sum(c.weight for c in candidates) or 1.0
            return bool(totals) and max(totals.values()) / asked >= self.threshold
        # A count threshold counts answers, whatever the models weigh.
        counts, _, _ = tally(candidates, {c.model: 1.0 for c in candidates})
        return bool(counts) and max(counts.values()) >= self.threshold

    def combine(self, candidates: list[Candidate]) -> Verdict:
        return Vote(self.models).combine(candidates)

    def __repr__(self) -> str:
        extra = ", share=True" if self.share else ""
        return f"Cascade(order={self.order!r}, threshold={self.threshold!r}{extra})"
