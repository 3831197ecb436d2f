"""``vote``: the answer most models gave.

Ties go to the answer given first in the order of the ``models`` list (so put the model you
trust most first); this makes a tie deterministic and independent of call timing.
``agreement`` is the winner's share of the valid answers; ``confidence`` is its share of all
the answers asked for, so a panel where half the models failed is less sure.
"""

from __future__ import annotations

from . import register
from .base import Candidate, Verdict, answer_key


@register("vote")
class Vote:
    name = "vote"

    def combine(self, candidates: list[Candidate]) -> Verdict:
        valid = [c for c in candidates if c.valid]
        if not valid:
            return Verdict(None, 0.0, 0.0, 0)
        counts: dict[str, int] = {}
        first_seen: dict[str, tuple[int, int]] = {}
        answers: dict[str, object] = {}
        for c in valid:
            key = answer_key(c.answer)
            counts[key] = counts.get(key, 0) + 1
            first_seen.setdefault(key, (c.position, c.sample))
            answers.setdefault(key, c.answer)
        winner = min(counts, key=lambda k: (-counts[k], first_seen[k]))
        top = counts[winner]
        return Verdict(
            answers[winner],
            confidence=top / len(candidates),
            agreement=top / len(valid),
            n_valid=len(valid),
        )
