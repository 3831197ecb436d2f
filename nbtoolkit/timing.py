"""A call's timeout measures its request, not the time its reply waits for a busy loop.

With many calls at once, the event loop and litellm's thread pool are busy with the client's
own work (litellm spends 5-17 ms of CPU per call). A timer started when a call is queued, or
one that fires while a reply that has arrived waits its turn, fails healthy calls as
timeouts; the runner then sends them again and pays twice. So a call's clock:

- starts when its request starts (litellm's provider coroutine is first awaited, marked by
  ``loop._Closing``), not while it waits for a thread to build it; and
- does not count the time the loop was too busy to run anything, measured by a ticker
  (``LoopLag``) as the lateness of a short sleep.

litellm is given a looser timeout as a safety net (``safety_timeout``).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Called (in the call's context) when the call's request starts; set by ``timed``.
request_started: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "nbtoolkit_request_started", default=None
)


def safety_timeout(timeout: float) -> float:
    """litellm's own timeout: a net for a stuck connection if the loop never gets to ours."""
    return timeout * 5 + 30


class LoopLag:
    """Seconds the loop was too busy to run a ready callback, summed since ``start()``."""

    TICK = 0.02

    def __init__(self) -> None:
        self.busy = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._tick())
        return self._task

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.TICK
            await asyncio.sleep(self.TICK)
            self.busy += max(0.0, loop.time() - due)


class RequestTimeout(asyncio.TimeoutError):
    """A request that took longer than ``timeout`` seconds (of time the loop was free)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"no reply within {timeout:g} s")
        self.timeout = timeout


async def timed(
    coro: Awaitable[T], timeout: float | None, lag: LoopLag, *, marked: bool = True
) -> T:
    """Await ``coro``; raise ``asyncio.TimeoutError`` once its request has taken ``timeout``
    seconds of time the loop was free (``marked=False``: the clock starts now)."""
    if timeout is None:
        return await coro
    loop = asyncio.get_running_loop()
    begun: list[tuple[float, float]] = [] if marked else [(loop.time(), lag.busy)]

    def started() -> None:
        if not begun:
            begun.append((loop.time(), lag.busy))

    token = request_started.set(started)
    try:
        task: asyncio.Future[T] = asyncio.ensure_future(coro)
    finally:
        request_started.reset(token)
    try:
        while True:
            if begun:
                at, busy_at = begun[0]
                used = (loop.time() - at) - (lag.busy - busy_at)
                wait = timeout - used
                if wait <= 0:
                    # The reply may have come in while the loop was busy: look once more.
                    await asyncio.sleep(0)
                    if task.done():
                        return task.result()
                    raise RequestTimeout(timeout)
            else:
                wait = LoopLag.TICK * 5  # not sent yet: look again soon
            await asyncio.wait([task], timeout=max(wait, 0.001))
            if task.done():
                return task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def mark_started() -> None:
    """The request of the call being timed starts now (its timeout clock starts)."""
    hook = request_started.get()
    if hook is not None:
        hook()


def run_marked(coro: Any) -> Any:
    """Mark the request as started; called by the loop's coroutine wrapper when awaited."""
    mark_started()
    return coro
