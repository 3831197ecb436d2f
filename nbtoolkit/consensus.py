"""Running a strategy: which calls to make, in what stages, and the extra calls it asks for.

``execute`` makes the panel's calls (all at once, or a stage at a time for ``cascade``), marks
the calls a strategy never needed as ``Skipped``, then makes one follow-up call per row for
strategies that want one (``judge``, ``fuse``). ``decide`` turns each row's candidates into a
verdict. Both are pure orchestration over ``Runner``; neither knows a provider.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import extract as extract_mod
from . import providers
from .providers import sim
from .runner import (
    Call,
    Outcome,
    Outcomes,
    Runner,
    cancelled_outcome,
    is_cancelled,
    is_skipped,
    skipped,
)
from .spec import Model, as_model
from .strategies import Candidate, FollowUp, ModelInfo, RowContext, Verdict


@dataclass
class FollowUpCall:
    """A strategy's extra call for one row, and what became of it."""

    row: int
    followup: FollowUp
    call: Call
    outcome: Outcome | None = None


def panel_info(models: tuple[Model, ...]) -> list[ModelInfo]:
    return [
        ModelInfo(m.label, i, m.weight, providers.price_per_token(m)) for i, m in enumerate(models)
    ]


Extracted = tuple[Any, bool, "str | None"]


def extract_all(
    calls: list[Call],
    outcomes: Outcomes,
    extractor: Callable[[Any], Any],
    memo: list[Extracted | None] | None = None,
) -> list[Extracted | None]:
    """Each finished call's ``(answer, valid, error)``, by call index (None for a call not
    finished), read once: ``memo`` (a previous answer) is filled in, not read again."""
    memo = [None] * len(outcomes) if memo is None else memo
    for call in calls:
        if memo[call.index] is not None:
            continue
        reply = outcomes.reply(call.index)
        if reply is not None:
            memo[call.index] = read_reply(call.model.id, extractor, reply[0])
    return memo


def read_reply(model_id: str, extractor: Callable[[Any], Any], output: str | None) -> Extracted:
    """``(answer, valid, error)`` of one reply; a simulated reply to a prompt outside the
    bank is no answer, whatever the extractor would read out of it."""
    if model_id.startswith("sim/") and sim.outside_bank(output):
        return None, False, sim.OUTSIDE_BANK_REASON
    return extract_mod.apply(extractor, output)


def candidates_of(
    calls: list[Call], outcomes: Outcomes, extracted: list[Extracted | None]
) -> RowCandidates:
    """Each row's candidates from the calls made so far (skipped, cancelled and pending ones
    left out: none of them is an answer the panel gave, so none lowers a row's confidence)."""
    return RowCandidates(calls, outcomes, extracted)


class RowCandidates(Mapping[int, list[Candidate]]):
    """Each row's candidates, by row (rows without one are not in it), in the order of the
    calls; a row's list is made when it is read, from the outcomes as they are then.

    Made on demand, not all at once: a run's candidates, one per call, would live until
    every row is decided and so reach the garbage collector's oldest generation, which
    makes its full collections (over the whole process) come sooner.
    """

    def __init__(
        self, calls: list[Call], outcomes: Outcomes, extracted: list[Extracted | None]
    ) -> None:
        self._calls, self._outcomes, self._extracted = calls, outcomes, extracted
        # Each row's calls, as a span of ``order`` (positions in ``calls``, by row).
        order = list(range(len(calls)))
        if any(calls[i].row > calls[i + 1].row for i in range(len(calls) - 1)):
            order.sort(key=lambda i: calls[i].row)  # stable: a row's calls keep their order
        self._order = order
        self._spans: dict[int, tuple[int, int]] = {}
        start = 0
        for end in range(1, len(order) + 1):
            if end == len(order) or calls[order[end]].row != calls[order[start]].row:
                self._spans[calls[order[start]].row] = (start, end)
                start = end
        self._rows = list(dict.fromkeys(call.row for call in calls))  # first seen first

    def _make(self, row: int) -> list[Candidate]:
        span = self._spans.get(row)
        if span is None:
            return []
        made = []
        calls, outcomes, extracted = self._calls, self._outcomes, self._extracted
        for position in range(*span):
            call = calls[self._order[position]]
            reply = outcomes.reply(call.index)
            read = extracted[call.index]
            if reply is None or read is None:
                continue
            output, error = reply
            if is_skipped(error) or is_cancelled(error):
                continue
            answer, valid, _ = read
            model = call.model
            made.append(
                Candidate(
                    model=model.label,
                    sample=call.sample,
                    answer=answer,
                    valid=valid and output is not None,
                    weight=model.weight,
                    position=call.position,
                    output=output,
                )
            )
        return made

    def __getitem__(self, row: int) -> list[Candidate]:
        made = self._make(row)
        if not made:
            raise KeyError(row)
        return made

    def get(self, row: int, default: Any = None) -> Any:  # one pass, not two
        made = self._make(row)
        return made if made else default

    def __iter__(self) -> Iterator[int]:
        return (row for row in self._rows if self._make(row))

    def items(self) -> Iterator[tuple[int, list[Candidate]]]:  # type: ignore[override]
        for row in self._rows:
            made = self._make(row)
            if made:
                yield row, made

    def __len__(self) -> int:
        return sum(1 for _ in self)


async def execute(
    calls: list[Call],
    models: tuple[Model, ...],
    strategy: Any,
    extractor: Callable[[Any], Any],
    runner: Runner,
) -> Outcomes:
    """Make the panel's calls the strategy needs; one outcome per call, skipped ones marked."""
    outcomes = Outcomes(len(calls))
    used = getattr(strategy, "models", None)
    labels = [m.label for m in models]
    stages: list[list[str]]
    if callable(getattr(strategy, "stages", None)):
        stages = strategy.stages(panel_info(models))
    else:
        stages = [[label for label in labels if used is None or label in used]]
    in_stages = {label for stage in stages for label in stage}
    settled: set[int] = set()
    settle = getattr(strategy, "settled", None)
    memo: list[Extracted | None] = [None] * len(calls)  # a stage re-reads only what it added
    for stage in stages:
        batch = [c for c in calls if c.model.label in stage and c.row not in settled]
        if not batch:
            continue
        made = await runner.run(batch)
        if len(batch) == len(calls) and all(c.index == i for i, c in enumerate(batch)):
            outcomes = made  # every call, in order: no copy
        else:
            for position, call in enumerate(batch):
                outcomes[call.index] = made[position]
        del made
        if runner.cancelled:
            break
        if callable(settle):
            rows = candidates_of(calls, outcomes, extract_all(calls, outcomes, extractor, memo))
            settled |= {row for row, cands in rows.items() if settle(cands)}
    for call in calls:
        if outcomes.done(call.index):
            continue
        if runner.cancelled:
            outcomes[call.index] = cancelled_outcome()
        elif call.model.label not in in_stages:
            outcomes[call.index] = skipped(f"{call.model.label} is not among the strategy's models")
        else:
            outcomes[call.index] = skipped(
                f"{getattr(strategy, 'name', 'the strategy')} had settled this row already"
            )
    return outcomes


def row_context(row: int, prompt: str, seed: int | None) -> RowContext:
    # A per-row seed that does not depend on hash randomisation or call timing.
    return RowContext(row, prompt, zlib.crc32(f"{seed}:{row}".encode()))


async def follow_up(
    rows: Mapping[int, list[Candidate]],
    prompts: dict[int, str],
    strategy: Any,
    run_params: dict[str, Any],
    seed: int | None,
    runner: Runner,
) -> dict[int, FollowUpCall]:
    """The extra call per row a judge or aggregator strategy asks for, made concurrently."""
    if not callable(getattr(strategy, "followup", None)) or runner.cancelled:
        return {}
    wanted: dict[int, FollowUpCall] = {}
    for row, cands in rows.items():
        fu = strategy.followup(row_context(row, prompts[row], seed), cands)
        if fu is None:
            continue
        model = as_model(fu.model)
        params = {**run_params, **model.litellm_kwargs()}
        if providers.is_offline(model.id):
            params["nbt_sample"] = 0
        wanted[row] = FollowUpCall(
            row, fu, Call(len(wanted), row, model, -1, 0, fu.messages, params)
        )
    if wanted:
        followups = list(wanted.values())
        # A judge's reply is not in the panel's answer format: the run's repair must not touch it.
        made = await runner.run([f.call for f in followups], repair=False)
        for fc, outcome in zip(followups, made, strict=True):
            fc.outcome = outcome
    return wanted


def decide(
    strategy: Any,
    row: int,
    prompt: str,
    seed: int | None,
    candidates: list[Candidate],
    followup: FollowUpCall | None,
) -> Verdict:
    """One row's verdict, from the candidates and the strategy's follow-up call if any."""
    conclude = getattr(strategy, "conclude", None)
    if callable(conclude) and followup is not None:
        outcome = followup.outcome or cancelled_outcome()
        return conclude(  # type: ignore[no-any-return]
            row_context(row, prompt, seed),
            candidates,
            outcome.output,
            outcome.error,
            followup.followup.context,
        )
    if callable(conclude):
        return conclude(row_context(row, prompt, seed), candidates, None, None, None)  # type: ignore[no-any-return]
    return strategy.combine(candidates)  # type: ignore[no-any-return]


def cost_sum(costs: list[float]) -> float:
    """The sum, or NaN when any part is unknown."""
    return math.nan if any(math.isnan(c) for c in costs) else float(sum(costs))
