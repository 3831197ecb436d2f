"""The event loop that runs nbtoolkit's async core for synchronous callers.

A Jupyter kernel already runs an event loop, so ``asyncio.run`` cannot be used inside a
cell. One loop of our own, on a daemon thread, works the same in a script and in a kernel,
and patches nothing. It lives for the process, which lets litellm reuse its HTTP
connections (they are tied to the loop that opened them).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def get_loop() -> asyncio.AbstractEventLoop:
    """The shared loop, started on first use."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP.is_closed():
            loop = asyncio.new_event_loop()
            loop.set_default_executor(_ClosingExecutor(thread_name_prefix="nbtoolkit-executor"))
            thread = threading.Thread(target=loop.run_forever, name="nbtoolkit-loop", daemon=True)
            thread.start()
            _LOOP = loop
            atexit.register(_close_loop, loop, thread)
        return _LOOP


def _close_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """At exit, end what still runs on our loop (litellm's logging worker) and close it,
    so the interpreter does not print "Task was destroyed but it is pending!"."""

    async def cancel_all() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    if loop.is_closed() or not loop.is_running():
        return
    # At exit, a loop that will not stop must not keep the process alive.
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=2)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=2)
    if not loop.is_running():
        loop.close()


class _CancelAwareFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """Remembers a cancel() that came while its function was already running."""

    cancel_requested = False

    def cancel(self) -> bool:
        self.cancel_requested = True
        return super().cancel()


class _ClosingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor, closing coroutines that nobody will await.

    litellm's ``acompletion`` builds its request in ``run_in_executor``, and that function
    returns a coroutine (the provider's own ``acompletion``). When the call is cancelled while
    the function runs (Cancel, Ctrl-C), asyncio drops the returned coroutine and Python prints
    "coroutine ... was never awaited" in the user's cell. Closing it here ends it cleanly.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        inner = super().submit(fn, *args, **kwargs)
        outer = _CancelAwareFuture()

        def copy(done: concurrent.futures.Future[Any]) -> None:
            if done.cancelled():
                outer.cancel()
            elif done.exception() is not None:
                outer.set_exception(done.exception())
            else:
                outer.set_result(done.result())
                _close_if_dropped(outer)

        def forward_cancel(_: Any) -> None:
            if outer.cancel_requested:
                inner.cancel()

        inner.add_done_callback(copy)
        outer.add_done_callback(forward_cancel)
        return outer


def _close_if_dropped(future: _CancelAwareFuture) -> None:
    result = future.result()
    if not asyncio.iscoroutine(result):
        return
    loop = _LOOP
    if loop is None or loop.is_closed():
        return

    def check(rounds: int) -> None:
        # asyncio hands the result over (or drops it, when the waiter was cancelled) a loop
        # turn or two after the function returns; a cancel arrives by then.
        if future.cancel_requested:
            with contextlib.suppress(Exception):
                result.close()
        elif rounds:
            loop.call_soon(check, rounds - 1)

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(check, 3)


def run_sync(coro: Coroutine[Any, Any, T], on_interrupt: Callable[[], bool] | None = None) -> T:
    """Run ``coro`` on the shared loop and wait for its result.

    On Ctrl-C (or a kernel interrupt), ``on_interrupt()`` may stop the work gracefully and
    return True: then the coroutine's own (partial) result is still awaited and returned.
    Otherwise the coroutine is cancelled, and this returns only once it has ended, so no
    work it started goes on after the caller has moved on.
    """
    loop = get_loop()
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    tasks: list[asyncio.Task[T]] = []

    def copy(task: asyncio.Task[T]) -> None:
        if task.cancelled():
            future.cancel()
        elif task.exception() is not None:
            future.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            future.set_result(task.result())

    def start() -> None:
        task = loop.create_task(coro)
        task.add_done_callback(copy)
        tasks.append(task)

    loop.call_soon_threadsafe(start)
    try:
        return _wait(future)
    except KeyboardInterrupt:
        if on_interrupt is not None and on_interrupt():
            return _wait(future)
        # Queued after start(), so the task exists when this runs.
        loop.call_soon_threadsafe(lambda: tasks[0].cancel())
        with contextlib.suppress(concurrent.futures.CancelledError, Exception):
            _wait(future)
        raise


def _wait(future: concurrent.futures.Future[T]) -> T:
    # The OS may hand SIGINT to any thread (a kernel has several); a wait without a timeout
    # would then never wake to raise KeyboardInterrupt. Short slices let it through.
    while True:
        try:
            return future.result(timeout=0.1)
        except concurrent.futures.TimeoutError:
            continue
