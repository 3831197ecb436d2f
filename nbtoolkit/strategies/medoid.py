"""``medoid``: for free text, the answer most like all the others.

Similarity is the word-sequence ratio (difflib) of two answers, lower-cased. The medoid is
the answer with the highest mean similarity to the other valid answers; ``confidence`` is
that mean similarity, ``agreement`` the share of answers at least ``close`` similar to it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from .base import Candidate, Verdict, answer_key, restrict


def similarity(a: str, b: str) -> float:
    """0..1: how alike two texts are, word by word; 1 for the same answer (``answer_key``)."""
    if answer_key(a) == answer_key(b):
        return 1.0
    wa, wb = str(a).lower().split(), str(b).lower().split()
    if not wa and not wb:
        return 1.0
    return difflib.SequenceMatcher(None, wa, wb, autojunk=False).ratio()


class Medoid:
    name = "medoid"

    def __init__(self, close: float = 0.6, models: Sequence[str] | None = None) -> None:
        self.close = close
        self.models = list(models) if models is not None else None

    def combine(self, candidates: list[Candidate]) -> Verdict:
        candidates = restrict(candidates, self.models)
        valid = [c for c in candidates if c.valid]
        if not valid:
            return Verdict(None, 0.0, 0.0, 0)
        if len(valid) == 1:
            return Verdict(valid[0].answer, 1.0 / len(candidates), 1.0, 1)
        texts = [str(c.answer) for c in valid]
        n = len(texts)
        sims = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                sims[i][j] = sims[j][i] = similarity(texts[i], texts[j])
        means = [sum(sims[i][j] for j in range(n) if j != i) / (n - 1) for i in range(n)]
        best = max(range(n), key=lambda i: (means[i], -valid[i].position))
        close = sum(1 for j in range(n) if sims[best][j] >= self.close) / n
        return Verdict(
            valid[best].answer,
            confidence=means[best] * n / len(candidates),
            agreement=close,
            n_valid=n,
        )

    def __repr__(self) -> str:
        return f"Medoid(close={self.close!r}, models={self.models!r})"
