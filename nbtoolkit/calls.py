"""What the runner works on and hands back: a call, its outcome, progress counts, retries.

Plain data, shared by the runner, the strategies' orchestration and the result frames.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from .spec import Model


@dataclass
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


@dataclass
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
