"""The shapes strategies share: a candidate answer in, a verdict out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Candidate:
    """One model's answer to one input row."""

    model: str
    sample: int
    answer: Any
    valid: bool
    weight: float = 1.0
    position: int = 0  # the model's place in the models list: the tie-breaker


@dataclass(frozen=True)
class Verdict:
    """What a strategy concluded for one input row."""

    answer: Any
    confidence: float  # 0..1: how sure the panel is
    agreement: float  # 0..1: share of the valid answers that agree with ``answer``
    n_valid: int


@runtime_checkable
class Strategy(Protocol):
    name: str

    def combine(self, candidates: list[Candidate]) -> Verdict: ...


def answer_key(answer: Any) -> str:
    """A hashable, comparable form of an answer (a pydantic instance or dict compares by content)."""
    if isinstance(answer, str):
        return answer
    dump = getattr(answer, "model_dump", None)
    if callable(dump):
        answer = dump(mode="json")
    try:
        return json.dumps(answer, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(answer)
