"""The event loop that runs nbtoolkit's async core for synchronous callers.

A Jupyter kernel already runs an event loop, so ``asyncio.run`` cannot be used inside a
cell. One loop of our own, on a daemon thread, works the same in a script and in a kernel,
and patches nothing. It lives for the process, which lets litellm reuse its HTTP
connections (they are tied to the loop that opened them).
"""

from __future__ import annotations

import asyncio
import atexit
import collections.abc
import concurrent.futures
import contextlib
import inspect
import threading
import types
import warnings
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from . import timing

T = TypeVar("T")

_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()
# Called on the waiting thread while run_sync waits (see ``while_waiting``).
_WAITING: list[Callable[[], None]] = []
# Awaited on the shared loop at exit, before its tasks are cancelled (see ``at_close``).
_CLOSERS: list[Callable[[], Coroutine[Any, Any, Any]]] = []


def is_shared(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is the shared loop (it lives for the process)."""
    return loop is _LOOP and not loop.is_closed()


def at_close(closer: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    """Await ``closer()`` on the shared loop at exit (once, however often it is asked):
    what is kept open on it between runs (HTTP sessions) is closed, not abandoned."""
    if closer not in _CLOSERS:
        _CLOSERS.append(closer)


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

    done = threading.Event()

    async def cancel_all() -> None:
        for closer in list(_CLOSERS):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closer(), timeout=1)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        done.set()

    late: list[bool] = []

    def start() -> None:
        # Made on the loop's own thread, and only while exit still waits for it: a loop busy
        # past that (an interrupted first run importing litellm) would stop before running
        # it, leaving "coroutine ... was never awaited" on the way out.
        if not late:
            loop.create_task(cancel_all())

    if loop.is_closed() or not loop.is_running():
        return
    # What is abandoned at exit is abandoned on purpose: no "Task was destroyed but it is
    # pending!" for it.
    loop.set_exception_handler(lambda _loop, _context: None)
    # At exit, a loop that will not stop must not keep the process alive.
    with contextlib.suppress(Exception):
        loop.call_soon_threadsafe(start)
        if not done.wait(timeout=2):
            late.append(True)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=2)
    if not loop.is_running():
        loop.close()


class _ClosingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor; a coroutine a function returns is closed if dropped.

    litellm's ``acompletion`` builds its request in ``run_in_executor``, and that function
    returns a coroutine (the provider's own ``acompletion``) for it to await next. When the
    call is cancelled around that moment (Cancel, Ctrl-C, a run that stops), the coroutine is
    dropped unawaited and Python prints "coroutine ... was never awaited" in the user's cell.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            result = fn(*args, **kwargs)
            return _Closing(result) if isinstance(result, types.CoroutineType) else result

        return super().submit(run)


class _Closing(collections.abc.Coroutine):  # type: ignore[type-arg]
    """A coroutine that, dropped before it ever ran, closes instead of warning."""

    def __init__(self, coro: types.CoroutineType[Any, Any, Any]) -> None:
        self._coro = coro

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        return self._coro.throw(*args)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Any:
        timing.run_marked(self._coro)  # the request starts now: its timeout clock too
        return self._coro.__await__()

    def __del__(self) -> None:
        if inspect.getcoroutinestate(self._coro) == inspect.CORO_CREATED:
            self._coro.close()


def install_executor(loop: asyncio.AbstractEventLoop) -> bool:
    """Give ``loop`` our default executor unless it has one of its own; True when ours is
    there (then a request's start is marked, see ``timing``)."""
    # asyncio has no public getter for the default executor.
    current = getattr(loop, "_default_executor", None)
    if current is None:
        loop.set_default_executor(_ClosingExecutor(thread_name_prefix="nbtoolkit-executor"))
        return True
    return isinstance(current, _ClosingExecutor)


@contextlib.contextmanager
def while_waiting(hook: Callable[[], None]) -> Iterator[None]:
    """Call ``hook()`` on the waiting thread, a few dozen times a second, while ``run_sync``
    waits inside this block: a display that must draw from the cell's own thread (a Jupyter
    cell's output), a pump of widget messages so that a button can be clicked mid-run.

    A hook that raises is not called again (a ``RuntimeWarning`` says so); the run goes on.
    """
    _WAITING.append(hook)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            _WAITING.remove(hook)


def run_sync(
    coro: Coroutine[Any, Any, T],
    on_interrupt: Callable[[], bool] | None = None,
    *,
    leave: Callable[[], bool] | None = None,
) -> T:
    """Run ``coro`` on the shared loop and wait for its result.

    On Ctrl-C (or a kernel interrupt), ``on_interrupt()`` may stop the work gracefully and
    return True: then the coroutine's own (partial) result is still awaited and returned.
    Otherwise the coroutine is cancelled, and this returns only once it has ended, so no
    work it started goes on after the caller has moved on; unless ``leave()`` says the
    coroutine is in synchronous work that starts nothing (which a cancellation cannot cut
    short): then ``KeyboardInterrupt`` is raised at once and the work ends on its own.
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
        if leave is not None and leave():
            raise
        with contextlib.suppress(concurrent.futures.CancelledError, Exception):
            _wait(future)
        raise


def _wait(future: concurrent.futures.Future[T]) -> T:
    # The OS may hand SIGINT to any thread (a kernel has several); a wait without a timeout
    # would then never wake to raise KeyboardInterrupt. Short slices let it through.
    hooks = list(_WAITING) if threading.current_thread() is threading.main_thread() else []
    while True:
        try:
            return future.result(timeout=0.05 if hooks else 0.1)
        except concurrent.futures.TimeoutError:
            pass
        for hook in list(hooks):
            try:
                hook()
            except Exception as exc:
                hooks.remove(hook)
                warnings.warn(
                    f"nbtoolkit: {getattr(hook, '__qualname__', hook)} failed while the run "
                    f"waited ({type(exc).__name__}: {exc}); the run goes on without it",
                    RuntimeWarning,
                    stacklevel=2,
                )
