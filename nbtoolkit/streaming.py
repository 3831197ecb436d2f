"""Replies as they arrive: one ``CallStream`` per call, handed to a run's ``on_stream``.

With ``stream=True`` every call is made in streaming mode (the simulated models at their
profile's speed, server-sent events on the lean HTTP transport, litellm's ``stream=True``):
the runner feeds each piece of text into the call's ``CallStream`` and calls ``on_stream``
with it after each piece and once more when the call has its outcome. ``on_stream`` runs on
the run's event-loop thread: it must be quick (store, do not draw); a display draws from
its own thread (see ``nbtoolkit.jupyter.streaming``).

``start(stream)`` picks what a run does with them: nothing shown (``False``; or ``True``
where nobody watches: a script, papermill, nbconvert), a function of your own, or the panes
of the Jupyter glue (``True`` in an interactive kernel), reached through ``views``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from . import views
from .calls import Call, Outcome
from .errors import ConfigError, clip, redact

__all__ = ["CallStream", "StreamCallback", "cut_short", "start"]

StreamCallback = Callable[["CallStream"], None]


class CallStream:
    """One call's reply so far. ``text`` is what arrived in the current attempt (a retry
    starts it again); ``outcome`` is set, and ``done`` True, once the call has ended."""

    __slots__ = ("_parts", "attempt", "call", "chunks", "first_at", "outcome", "started_at")

    def __init__(self, call: Call) -> None:
        self.call = call
        self._parts: list[str] = []
        self.attempt = 0
        self.chunks = 0
        self.started_at = time.perf_counter()
        self.first_at: float | None = None
        self.outcome: Outcome | None = None

    # -- fed by the runner (on the loop thread)
    def begin(self) -> None:
        """A new attempt: what an earlier one sent is dropped (the retry replaces it)."""
        self._parts = []
        self.attempt += 1
        self.chunks = 0
        self.started_at = time.perf_counter()
        self.first_at = None

    def add(self, piece: str) -> None:
        if not piece:
            return
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self._parts.append(piece)
        self.chunks += 1

    def end(self, outcome: Outcome) -> None:
        self.outcome = outcome

    # -- read by displays
    @property
    def done(self) -> bool:
        return self.outcome is not None

    @property
    def text(self) -> str:
        """The reply so far, redacted; while it streams, without its last unfinished word
        (a key cut in two would not be recognised yet). Once done: the final reply."""
        if self.outcome is not None and self.outcome.output is not None:
            return self.outcome.output
        raw = "".join(self._parts)
        if self.outcome is None:
            cut = max(raw.rfind(" "), raw.rfind("\n"))
            raw = raw[: cut + 1] if cut >= 0 else ""
        return redact(raw)

    @property
    def raw_length(self) -> int:
        return sum(len(p) for p in self._parts)

    @property
    def ttft_s(self) -> float:
        """Seconds to the first text: the outcome's once done, else as measured; NaN before."""
        if self.outcome is not None:
            return self.outcome.ttft_s
        return math.nan if self.first_at is None else self.first_at - self.started_at

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started_at

    @property
    def pieces_per_s(self) -> float:
        """Pieces of text received per second since the first one (about tokens per second:
        servers send a token or a few per piece); NaN before the second one."""
        if self.first_at is None or self.chunks < 2:
            return math.nan
        spent = time.perf_counter() - self.first_at
        return (self.chunks - 1) / spent if spent > 0 else math.nan

    def partial(self) -> str:
        """What arrived before the attempt failed, for its error row (redacted, clipped)."""
        return clip("".join(self._parts), 2000, "…")


def cut_short(error: str, stream: CallStream | None) -> str:
    """A failed attempt's error, with the part of the reply that had arrived (if any)."""
    if stream is None or not stream.raw_length:
        return error
    return f"{error} (the reply was cut off after {stream.raw_length} characters: {stream.partial()!r})"


def start(stream: Any) -> tuple[StreamCallback | None, Any]:
    """``(on_stream for the runner, display or None)`` for ``orchestrate(stream=...)``.

    ``False``/None: no streaming. A function: called with each ``CallStream`` (on the loop
    thread). ``True``: streamed; shown as panes when a person watches an interactive kernel
    (the glue's ``"stream.panes"`` view decides, and returns None otherwise)."""
    if stream is None or stream is False:
        return None, None
    if callable(stream):
        return stream, None
    if stream is not True:
        raise ConfigError(
            f"stream={stream!r}: use True (panes in Jupyter), False, or a function of a "
            "nbtoolkit.streaming.CallStream"
        )
    try:
        factory = views.get("stream.panes")
    except ConfigError:
        factory = None
    panes = factory() if factory is not None else None
    if panes is None:
        return _ignore, None
    return panes.on_stream, panes


def _ignore(stream: CallStream) -> None:
    """Streamed for its time to first token, shown to nobody."""
