"""The shapes strategies share: candidate answers in, a verdict out.

A strategy needs only ``name`` and ``combine(candidates) -> Verdict``. Optional hooks let it
do more, and the engine checks for them:

- ``models``: a subset of the panel's labels to use (the rest are not called).
- ``stages(panel) -> list[list[str]]`` and ``settled(candidates) -> bool``: ask the models a
  stage at a time and stop a row once it is settled (``cascade``).
- ``followup(row, candidates) -> FollowUp | None`` and ``conclude(row, candidates, reply)``:
  one more call per row, to a judge or an aggregator (``judge``, ``fuse``).

``Calibrated(strategy, model)`` wraps one of the first kind so its ``confidence`` is a
probability learned by ``calibrate`` (``Verdict.calibrated`` says which a verdict has).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .. import answers


@dataclass(frozen=True, slots=True)  # one per call of a run: its size is the run's memory
class Candidate:
    """One model's answer to one input row."""

    model: str
    sample: int
    answer: Any
    valid: bool
    weight: float = 1.0
    position: int = 0  # the model's place in the models list: the tie-breaker
    output: str | None = None  # the raw reply, for strategies that read it (medoid, judge)


@dataclass(frozen=True)
class Verdict:
    """What a strategy concluded for one input row."""

    answer: Any
    confidence: float  # 0..1: how sure the panel is
    agreement: float  # 0..1: share of the valid answers that agree with ``answer``
    n_valid: int
    note: str | None = None  # e.g. "judge failed (...): fell back to vote"
    fields: dict[str, float] = field(default_factory=dict)  # agreement per field (structured)
    # True when ``confidence`` is a probability fitted by ``calibrate`` (``Calibrated``),
    # False when it is the strategy's own measure (a share of votes, a similarity).
    calibrated: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """What a strategy may know about a panel model when planning."""

    label: str
    position: int
    weight: float
    price_per_token: float  # NaN when unknown


@dataclass(frozen=True)
class FollowUp:
    """One extra call a strategy wants for a row: to whom, and what to send."""

    model: Any  # a nbtoolkit.Model or a litellm id
    messages: list[dict[str, Any]]
    context: Any = None  # handed back to ``conclude`` (e.g. the anonymised order)


@dataclass(frozen=True)
class RowContext:
    """The row a strategy is deciding: its number, its rendered prompt, a seed of its own."""

    row: int
    prompt: str
    seed: int


@runtime_checkable
class Strategy(Protocol):
    name: str

    def combine(self, candidates: list[Candidate]) -> Verdict: ...


def answer_key(answer: Any) -> str:
    """The form two answers share exactly when they are the same answer.

    Equal by value for numbers (``"1/2"``, ``"0.5"``, ``"\\frac{1}{2}"``), case, space and
    punctuation normalised for text, by content for dicts and pydantic instances: the one
    notion every strategy uses (``nbtoolkit.answers``).
    """
    return answers.answer_key(answer)


def as_fields(answer: Any) -> dict[str, Any] | None:
    """The fields of a structured answer (pydantic instance or dict), else None."""
    dump = getattr(answer, "model_dump", None)
    if callable(dump):
        result = dump(mode="json")
        return result if isinstance(result, dict) else None
    return answer if isinstance(answer, dict) else None


def tally(
    candidates: Sequence[Candidate], weights: dict[str, float] | None = None
) -> tuple[dict[str, float], dict[str, Any], dict[str, tuple[int, int]]]:
    """Total weight per answer key, the answer shown for each key (a number in canonical form,
    else the first given), and where each key was first seen."""
    totals: dict[str, float] = {}
    shown: dict[str, Any] = {}
    first: dict[str, tuple[int, int]] = {}
    for c in candidates:
        if not c.valid:
            continue
        key = answer_key(c.answer)
        w = c.weight if weights is None else weights.get(c.model, 0.0)
        totals[key] = totals.get(key, 0.0) + w
        if key not in first or (c.position, c.sample) < first[key]:
            first[key] = (c.position, c.sample)
            shown[key] = answers.shown(c.answer)
    return totals, shown, first


def restrict(candidates: list[Candidate], models: Sequence[str] | None) -> list[Candidate]:
    """Only the candidates of ``models`` (all when None)."""
    if models is None:
        return candidates
    wanted = set(models)
    return [c for c in candidates if c.model in wanted]
