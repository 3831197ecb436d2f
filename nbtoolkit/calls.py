"""What the runner works on and hands back: a call, its outcome, progress counts, retries.

Plain data, shared by the runner, the strategies' orchestration and the result frames, and
the ways one outcome is made from others (a cached entry, a shared or a repaired call).
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, overload

from .cache import Entry, KeyMaker, call_key
from .spec import Model


# Slots: a run keeps one Call and one Outcome per call, so their size is the run's memory.
@dataclass(slots=True)
class Call:
    """One request: a model, a rendered conversation, a sample index."""

    index: int
    row: int
    model: Model
    position: int  # the model's place in the models list
    sample: int
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    key: str = ""


@dataclass(slots=True)
class Outcome:
    """What became of one call."""

    output: str | None = None
    error: str | None = None
    latency_s: float = math.nan
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float = math.nan
    cached: bool = False
    attempts: int = 0
    answered_by: str | None = None  # a fallback model's id, when one answered instead
    fallback_error: str | None = None  # what the original model failed with
    shared_from: int | None = None  # the row whose identical call was sent for this one
    ttft_s: float = math.nan  # seconds to the first streamed text; NaN when not streamed


SKIPPED = "Skipped:"  # the error prefix of a call made on purpose never: not a failure


def skipped(reason: str) -> Outcome:
    """The outcome of a call that was not needed (a settled cascade, a spent budget)."""
    return Outcome(error=f"{SKIPPED} {reason}", cost_usd=0.0, attempts=0)


def is_skipped(error: Any) -> bool:
    return isinstance(error, str) and error.startswith(SKIPPED)


CANCELLED = "Cancelled"  # the error prefix of a call the user's cancel stopped: not a failure


def cancelled_outcome(attempts: int = 0) -> Outcome:
    """A call stopped by cancel: no reply, so nothing known was billed (like a failed call).

    ``attempts`` counts the requests it had already sent: a request cut off in flight counts.
    """
    return Outcome(error=f"{CANCELLED}: the run was stopped first", cost_usd=0.0, attempts=attempts)


def is_cancelled(error: Any) -> bool:
    return isinstance(error, str) and error.startswith(CANCELLED)


FALLBACK = "answered by fallback"  # the note on a row a fallback model answered: not a failure


@dataclass
class Progress:
    """Counts per model, handed to the progress callback after every finished call."""

    total: dict[str, int] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    # Neither is a failure: a call the strategy or budget did not need, one a cancel stopped.
    skipped: dict[str, int] = field(default_factory=dict)
    cancelled: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0  # the known part; ``unpriced`` calls are not in it
    unpriced: int = 0  # answered calls whose cost is unknown (NaN)
    finished: bool = False

    @property
    def completed(self) -> int:
        return sum(self.done.values()) + sum(self.failed.values())

    @property
    def ended(self) -> int:
        """Calls that are over: answered, failed, skipped or cancelled."""
        return self.completed + sum(self.skipped.values()) + sum(self.cancelled.values())

    @property
    def all(self) -> int:
        return sum(self.total.values())


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a server's ``Retry-After`` is honoured."""

    retries: int = 2
    base_s: float = 0.5
    max_s: float = 30.0
    max_retry_after_s: float = 120.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_s)
        return rng.uniform(0, min(self.max_s, self.base_s * 2 ** (attempt - 1)))


def key_of(call: Call, keys: KeyMaker | None = None) -> str:
    """The call's cache key: its own, or computed from its inputs (an offline call has none
    of its own); with the run's ``keys`` (``Plan.keys``), each shared part is encoded once."""
    if call.key:
        return call.key
    make = keys.key if keys is not None else call_key
    return make(call.model.id, call.messages, call.params, call.sample, call.model.label)


def share_identical(
    calls: Sequence[Call], positions: list[int], keys: KeyMaker | None = None
) -> tuple[list[int], dict[int, list[int]]]:
    """Identical calls (same model, messages, parameters and sample: duplicate rows) are sent
    once; of ``calls[i] for i in positions``, returns the positions to send and, by a sent
    call's position, the positions of the calls that share it."""
    leaders: list[int] = []
    first: dict[str, int] = {}
    followers: dict[int, list[int]] = {}
    for i in positions:
        key = key_of(calls[i], keys)
        leader = first.get(key)
        if leader is None:
            first[key] = i
            leaders.append(i)
        else:
            followers.setdefault(leader, []).append(i)
    return leaders, followers


def shared_outcome(outcome: Outcome, leader: Call) -> Outcome:
    """A duplicate call's outcome: the reply of the call sent for it, neither sent nor billed
    again (its tokens are the reply's, its cost and attempts 0)."""
    return replace(
        outcome,
        cost_usd=0.0 if not math.isnan(outcome.cost_usd) else math.nan,
        attempts=0,
        shared_from=leader.row,
    )


def from_entry(entry: Entry) -> Outcome:
    """A cached reply as an outcome (cached, no request sent)."""
    return Outcome(
        output=entry.output,
        latency_s=entry.latency_s if entry.latency_s is not None else math.nan,
        prompt_tokens=entry.prompt_tokens,
        completion_tokens=entry.completion_tokens,
        cost_usd=entry.cost_usd if entry.cost_usd is not None else math.nan,
        cached=True,
        attempts=0,
    )


def merged(first: Outcome, second: Outcome) -> Outcome:
    """A repaired call: the last reply, with every attempt's tokens, cost and time added up."""

    def add(a: int | None, b: int | None) -> int | None:
        return None if a is None and b is None else (a or 0) + (b or 0)

    return Outcome(
        output=second.output if second.output is not None else first.output,
        error=None if second.output is not None else second.error,
        latency_s=first.latency_s + second.latency_s,
        prompt_tokens=add(first.prompt_tokens, second.prompt_tokens),
        completion_tokens=add(first.completion_tokens, second.completion_tokens),
        cost_usd=first.cost_usd + second.cost_usd,
        cached=first.cached and second.cached,
        attempts=first.attempts + second.attempts,
        answered_by=first.answered_by,
        fallback_error=first.fallback_error,
        ttft_s=first.ttft_s,  # the first text the user saw came from the first reply
    )


def not_in_cache(unread: str | None = None) -> Outcome:
    if unread is not None:  # not "never recorded": the record could not be read at all
        return Outcome(error=f"NotInCache: cache='replay-only' and {unread}", attempts=0)
    return Outcome(
        error="NotInCache: cache='replay-only' and this call was never recorded; "
        "run once with cache='use' to record it",
        attempts=0,
    )


class Outcomes(Sequence[Outcome]):
    """The outcomes of a list of calls, stored column by column: a few dozen bytes a call
    instead of an object a call, so a run's memory grows with the rows it keeps.

    ``outcomes[i]`` is an ``Outcome`` made on demand (changing it changes nothing stored:
    store it again); ``get(i)`` is None while call ``i`` has none yet.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._state = bytearray(size)  # 0: none yet; 1: in the columns; 2: kept whole
        self._output: list[str | None] = [None] * size
        self._error: list[str | None] = [None] * size
        self._latency = array("d", bytes(8 * size))
        self._cost = array("d", bytes(8 * size))
        self._ttft = array("d", bytes(8 * size))
        self._prompt_tokens = array("q", bytes(8 * size))  # -1: unknown
        self._completion_tokens = array("q", bytes(8 * size))
        self._attempts = array("q", bytes(8 * size))
        self._cached = bytearray(size)
        # The few with a fallback or a shared reply: (answered_by, fallback_error, shared_from).
        self._notes: dict[int, Notes] = {}
        self._whole: dict[int, Outcome] = {}  # token counts the columns cannot hold as they are

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Outcome]:
        for i in range(self._size):
            yield self[i]

    def done(self, i: int) -> bool:
        return bool(self._state[i])

    def count_cached(self) -> int:
        """How many outcomes came from the cache, read from the columns (no Outcome made)."""
        columnar = sum(1 for i, s in enumerate(self._state) if s == 1 and self._cached[i])
        return columnar + sum(1 for o in self._whole.values() if o.cached)

    def count_shared(self) -> int:
        """How many outcomes are another call's shared reply (duplicate rows)."""
        columnar = sum(
            1 for i, n in self._notes.items() if self._state[i] == 1 and n[2] is not None
        )
        return columnar + sum(1 for o in self._whole.values() if o.shared_from is not None)

    def columns(self) -> dict[str, Any] | None:
        """The stored columns as they are (``output``, ``error``: lists; ``latency_s``,
        ``cost_usd``, ``ttft_s``: float64 arrays; ``prompt_tokens``, ``completion_tokens``:
        int64 arrays, -1 for unknown; ``attempts``: int64; ``cached``: bytes; ``notes``: by
        index, ``(answered_by, fallback_error, shared_from)``), when every call has an
        outcome held in them; None otherwise (then read ``outcomes[i]``)."""
        if self._whole or 0 in self._state:
            return None
        return {
            "output": self._output,
            "error": self._error,
            "latency_s": self._latency,
            "cost_usd": self._cost,
            "ttft_s": self._ttft,
            "prompt_tokens": self._prompt_tokens,
            "completion_tokens": self._completion_tokens,
            "attempts": self._attempts,
            "cached": self._cached,
            "notes": self._notes,
        }

    def reply(self, i: int) -> tuple[str | None, str | None] | None:
        """Call ``i``'s ``(output, error)``, None when it has none yet: what reading the
        answers needs, without making an ``Outcome``."""
        state = self._state[i]
        if state == 1:
            return self._output[i], self._error[i]
        if state == 2:
            whole = self._whole[i]
            return whole.output, whole.error
        return None

    def get(self, i: int) -> Outcome | None:
        """Call ``i``'s outcome, None when it has none yet."""
        state = self._state[i]
        if state == 0:
            return None
        if state == 2:
            return self._whole[i]
        prompt, completion = self._prompt_tokens[i], self._completion_tokens[i]
        notes = self._notes.get(i)
        return Outcome(
            output=self._output[i],
            error=self._error[i],
            latency_s=self._latency[i],
            prompt_tokens=None if prompt < 0 else prompt,
            completion_tokens=None if completion < 0 else completion,
            cost_usd=self._cost[i],
            cached=bool(self._cached[i]),
            attempts=self._attempts[i],
            answered_by=notes[0] if notes else None,
            fallback_error=notes[1] if notes else None,
            shared_from=notes[2] if notes else None,
            ttft_s=self._ttft[i],
        )

    @overload
    def __getitem__(self, i: int) -> Outcome: ...

    @overload
    def __getitem__(self, i: slice) -> list[Outcome]: ...

    def __getitem__(self, i: int | slice) -> Outcome | list[Outcome]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._size))]
        if i < 0:
            i += self._size
        outcome = self.get(i)
        if outcome is None:
            raise LookupError(f"call {i} has no outcome yet")
        return outcome

    def __setitem__(self, i: int, outcome: Outcome) -> None:
        if not _columnar(outcome):
            self._state[i] = 2
            self._whole[i] = outcome
            return
        self._whole.pop(i, None)
        self._state[i] = 1
        self._output[i], self._error[i] = outcome.output, outcome.error
        self._latency[i], self._cost[i] = outcome.latency_s, outcome.cost_usd
        self._ttft[i] = outcome.ttft_s
        self._prompt_tokens[i] = -1 if outcome.prompt_tokens is None else outcome.prompt_tokens
        self._completion_tokens[i] = (
            -1 if outcome.completion_tokens is None else outcome.completion_tokens
        )
        self._attempts[i], self._cached[i] = outcome.attempts, outcome.cached
        notes = notes_of(outcome)
        if notes is not None:
            self._notes[i] = notes
        else:
            self._notes.pop(i, None)

    def put_entry(self, i: int, entry: Entry) -> None:
        """Store a cached reply for call ``i``: the same as ``self[i] = from_entry(entry)``,
        straight into the columns (a cached re-run stores one per call)."""
        latency, cost = entry.latency_s, entry.cost_usd
        prompt, completion = entry.prompt_tokens, entry.completion_tokens
        if not (
            (latency is None or type(latency) is float)
            and (cost is None or type(cost) is float)
            and (prompt is None or (type(prompt) is int and 0 <= prompt < 2**63))
            and (completion is None or (type(completion) is int and 0 <= completion < 2**63))
        ):
            self[i] = from_entry(entry)  # a value the columns cannot hold as it is
            return
        if self._state[i] == 2:
            del self._whole[i]
        self._state[i] = 1
        self._output[i], self._error[i] = entry.output, None
        self._latency[i] = math.nan if latency is None else latency
        self._cost[i] = math.nan if cost is None else cost
        self._ttft[i] = math.nan
        self._prompt_tokens[i] = -1 if prompt is None else prompt
        self._completion_tokens[i] = -1 if completion is None else completion
        self._attempts[i], self._cached[i] = 0, 1
        if self._notes:
            self._notes.pop(i, None)


Notes = tuple[str | None, str | None, int | None]


def notes_of(outcome: Outcome) -> Notes | None:
    """The few fields most outcomes lack, ``(answered_by, fallback_error, shared_from)``;
    None when it has none of them."""
    if outcome.answered_by or outcome.fallback_error or outcome.shared_from is not None:
        return outcome.answered_by, outcome.fallback_error, outcome.shared_from
    return None


def _columnar(outcome: Outcome) -> bool:
    """Whether the columns hold this outcome as it is (token counts are whole numbers)."""
    for tokens in (outcome.prompt_tokens, outcome.completion_tokens):
        if tokens is not None and not (type(tokens) is int and 0 <= tokens < 2**63):
            return False
    return (
        isinstance(outcome.latency_s, float)
        and isinstance(outcome.cost_usd, float)
        and isinstance(outcome.ttft_s, float)
        and type(outcome.attempts) is int
    )
