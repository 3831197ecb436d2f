"""``vote`` and ``weighted``: the answer with the most (weighted) support.

``vote``: ties go to the answer given first in the order of the ``models`` list (put the
model you trust most first); a tie is deterministic and independent of call timing.
``agreement`` is the winner's share of the valid answers; ``confidence`` is its share of all
the answers asked for, so a panel where half the models failed is less sure.

Structured answers (pydantic instances or dicts) are voted field by field; ``Verdict.fields``
holds each field's agreement.

``weighted``: each model's answer counts with its weight (``Model(weight=...)``, or
``weights={"label": w}``, e.g. from ``calibrate``). Ties go to the answer whose strongest
supporter weighs most, then to the smallest answer, so reordering the models never changes
the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..answers import shown
from .base import Candidate, Verdict, answer_key, as_fields, restrict, tally


def _field_vote(valid: list[Candidate], n_asked: int) -> Verdict:
    """Majority per field, each field tie-broken by model order."""
    rows = [(c, as_fields(c.answer) or {}) for c in valid]
    names: list[str] = []
    for _, fields in rows:
        names += [f for f in fields if f not in names]
    merged: dict[str, Any] = {}
    agreement: dict[str, float] = {}
    for name in names:
        counts: dict[str, int] = {}
        first: dict[str, tuple[int, int]] = {}
        values: dict[str, Any] = {}
        for c, fields in rows:
            if name not in fields:
                continue
            key = answer_key(fields[name])
            counts[key] = counts.get(key, 0) + 1
            first.setdefault(key, (c.position, c.sample))
            values.setdefault(key, shown(fields[name]))
        winner = min(counts, key=lambda k: (-counts[k], first[k]))
        merged[name] = values[winner]
        agreement[name] = counts[winner] / len(valid)
    # Keep the answer's own type when one model's answer equals the merged fields.
    answer: Any = merged
    merged_key = answer_key(merged)
    for c, fields in rows:
        if answer_key(fields) == merged_key:
            answer = c.answer
            break
    mean = sum(agreement.values()) / len(agreement) if agreement else 0.0
    whole = sum(1 for _, f in rows if answer_key(f) == merged_key)
    return Verdict(
        answer,
        confidence=mean * len(valid) / n_asked,
        agreement=whole / len(valid),
        n_valid=len(valid),
        fields=agreement,
    )


class Vote:
    """Majority vote; ties to the earlier model in the ``models`` list."""

    name = "vote"

    def __init__(self, models: Sequence[str] | None = None) -> None:
        self.models = list(models) if models is not None else None

    def combine(self, candidates: list[Candidate]) -> Verdict:
        candidates = restrict(candidates, self.models)
        valid = [c for c in candidates if c.valid]
        if not valid:
            return Verdict(None, 0.0, 0.0, 0)
        if all(as_fields(c.answer) is not None for c in valid):
            return _field_vote(valid, len(candidates))
        totals, answers, first = tally(valid, {c.model: 1.0 for c in valid})
        winner = min(totals, key=lambda k: (-totals[k], first[k]))
        top = totals[winner]
        return Verdict(
            answers[winner],
            confidence=top / len(candidates),
            agreement=top / len(valid),
            n_valid=len(valid),
        )

    def __repr__(self) -> str:
        return f"Vote(models={self.models!r})" if self.models else "Vote()"


class Weighted:
    """Weighted vote: ``weights`` by model label, else each ``Model(weight=...)``."""

    name = "weighted"

    def __init__(
        self, weights: dict[str, float] | None = None, models: Sequence[str] | None = None
    ) -> None:
        self.weights = dict(weights) if weights is not None else None
        self.models = list(models) if models is not None else None
        if self.models is None and self.weights is not None:
            self.models = [m for m, w in self.weights.items() if w > 0]

    def combine(self, candidates: list[Candidate]) -> Verdict:
        candidates = restrict(candidates, self.models)
        valid = [c for c in candidates if c.valid]
        if not valid:
            return Verdict(None, 0.0, 0.0, 0)

        def weight(c: Candidate) -> float:
            return c.weight if self.weights is None else self.weights.get(c.model, 0.0)

        totals: dict[str, float] = {}
        strongest: dict[str, float] = {}
        answers: dict[str, Any] = {}
        for c in valid:
            key = answer_key(c.answer)
            totals[key] = totals.get(key, 0.0) + weight(c)
            strongest[key] = max(strongest.get(key, 0.0), weight(c))
            answers.setdefault(key, shown(c.answer))
        winner = min(totals, key=lambda k: (-totals[k], -strongest[k], k))
        all_weight = sum(weight(c) for c in candidates) or 1.0
        valid_weight = sum(weight(c) for c in valid) or 1.0
        return Verdict(
            answers[winner],
            confidence=totals[winner] / all_weight,
            agreement=totals[winner] / valid_weight,
            n_valid=len(valid),
        )

    def __repr__(self) -> str:
        return f"Weighted(weights={self.weights!r})"


class FirstValid:
    """A fallback chain: the first answer, in model order, that passed extraction."""

    name = "first_valid"

    def __init__(self, models: Sequence[str] | None = None) -> None:
        self.models = list(models) if models is not None else None

    def combine(self, candidates: list[Candidate]) -> Verdict:
        candidates = restrict(candidates, self.models)
        valid = sorted((c for c in candidates if c.valid), key=lambda c: (c.position, c.sample))
        if not valid:
            return Verdict(None, 0.0, 0.0, 0)
        chosen = answer_key(valid[0].answer)
        agree = sum(answer_key(c.answer) == chosen for c in valid) / len(valid)
        return Verdict(
            shown(valid[0].answer), confidence=agree, agreement=agree, n_valid=len(valid)
        )

    def __repr__(self) -> str:
        return f"FirstValid(models={self.models!r})" if self.models else "FirstValid()"
