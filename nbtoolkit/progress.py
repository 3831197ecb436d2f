"""Live progress of a run: a text line, or bars per model in Jupyter (``nbtoolkit.jupyter.progress``).

The core calls a progress callback with a ``runner.Progress`` after every finished call, from
the worker thread that runs the event loop, and ``on_start(runner)`` once the calls are
planned. A reporter here is both: ``reporter(state)`` and ``reporter.attach(runner)``.

Which reporter a run gets (``resolve_mode``):

- ``widget``: one bar per model (done / failed / total) and the money spent so far; for a
  kernel whose frontend is a person (JupyterLab, Notebook, VS Code). In a cell, the way to
  stop is interrupting the kernel (the finished rows are kept): a button could not work
  there, as the kernel reads a click only once the cell has finished. The app
  (``nbtoolkit.ui()``) runs off the main thread, so its Cancel button works.
- ``text``: ``TerminalProgress``, a line rewritten in place on a terminal, or one final
  line when the output is not a terminal. Headless runs (papermill, nbconvert, nbclient: they
  execute with ``allow_stdin=False``) get this: widget output does not survive them.
- ``none``: nothing.

``NBTOOLKIT_PROGRESS=widget|text|none`` overrides the guess.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from . import views
from .formatting import format_cost

__all__ = [
    "MODES",
    "NullProgress",
    "TerminalProgress",
    "TextProgress",
    "resolve_mode",
    "start",
    "status_line",
]

MODES = ("auto", "widget", "text", "none")

#: At most this many widget updates per second: each one is a message to the browser.
MAX_UPDATES_PER_S = 10.0


def resolve_mode(mode: str = "auto", shell: Any = None) -> str:
    """The reporter to use: ``mode`` itself unless it is ``auto``, else a guess from the kernel."""
    if mode != "auto":
        return mode
    forced = os.environ.get("NBTOOLKIT_PROGRESS", "").strip().lower()
    if forced in MODES and forced != "auto":
        return forced
    if os.environ.get("PAPERMILL_EXECUTION"):
        return "text"
    kernel = getattr(shell, "kernel", None)
    if kernel is None:  # plain Python or terminal IPython
        return "text"
    # nbclient (papermill, nbconvert) executes with allow_stdin=False; people's frontends
    # allow input(). Widgets would be lost in a headless run's saved notebook anyway.
    if not getattr(kernel, "_allow_stdin", False):
        return "text"
    if importlib.util.find_spec("ipywidgets") is None:  # pragma: no cover - a dependency
        return "text"
    return "widget"


class NullProgress:
    """Reports nothing."""

    def __call__(self, state: Any) -> None:
        pass

    def attach(self, runner: Any) -> None:
        pass

    def note(self, text: str) -> None:
        """What happens before the first call (``providers.LOADING_NOTE``)."""

    def show(self) -> None:
        pass

    def close(self) -> None:
        pass


class TextProgress(NullProgress):
    """``TerminalProgress``: in place on a terminal, one final line otherwise."""

    def __init__(self, stream: Any = None) -> None:
        self.terminal = TerminalProgress(stream)

    def __call__(self, state: Any) -> None:
        self.terminal(state)

    def note(self, text: str) -> None:
        self.terminal.note(text)


class TerminalProgress:
    """One line on stderr, rewritten in place: done/total per model and the money spent."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = -1
        self.width = 0

    def note(self, text: str) -> None:
        """``text`` in place of the counts until the first call ends (on a terminal only: a
        log gets the final line alone)."""
        if self.live:
            self._write(f"  {text}…", "")

    def __call__(self, state: Any) -> None:
        done = state.completed
        if not self.live and not state.finished:
            return
        if done == self.last and not state.finished:
            return
        self.last = done
        self._write("  " + status_line(state), "\n" if state.finished else "")

    def _write(self, line: str, end: str) -> None:
        # Padded to the line it overwrites, so none of a longer one is left behind.
        padded = line.ljust(self.width)
        self.width = len(line)
        self.stream.write("\r" + padded + end)
        self.stream.flush()


def bar_text(state: Any, label: str) -> str:
    """``3/8 (1 failed, 4 cancelled)``: answered + failed of the calls asked for one model.

    Skipped and cancelled calls were not made: they are named, never counted as failures.
    """
    done, failed = state.done.get(label, 0), state.failed.get(label, 0)
    total = state.total.get(label, 0)
    skipped = state.skipped.get(label, 0)
    cancelled = state.cancelled.get(label, 0)
    notes = [
        f"{n} {word}"
        for n, word in ((failed, "failed"), (skipped, "skipped"), (cancelled, "cancelled"))
        if n
    ]
    made = total - skipped - cancelled if state.finished else total
    return f"{done + failed}/{made}" + (f" ({', '.join(notes)})" if notes else "")


def money_spent(state: Any) -> str:
    """The money spent so far: ``$0.0031``, ``at least $0.0031`` or ``unknown``."""
    unpriced = state.unpriced
    if not unpriced:
        return format_cost(state.cost_usd)
    if state.cost_usd:
        return f"at least {format_cost(state.cost_usd)} (cost unknown for {unpriced} call(s))"
    return "unknown (no price known)"


def status_line(state: Any, *, cancelled: bool = False) -> str:
    """``12/40 calls, 1 failed, $0.0031 spent``; after the run, ``done`` or ``cancelled``."""
    failed = sum(state.failed.values())
    skipped = sum(state.skipped.values())
    stopped = sum(state.cancelled.values())
    if state.finished:
        status = "cancelled" if cancelled or stopped else "done"
        status += f", {state.completed} calls"
    else:
        status = f"{state.completed}/{state.all} calls"
    parts = [status]
    parts += [
        f"{n} {word}"
        for n, word in ((failed, "failed"), (skipped, "skipped"), (stopped, "cancelled"))
        if n
    ]
    return ", ".join(parts) + f", {money_spent(state)} spent"


_STOP_HINT = "to stop: interrupt the kernel (&#9632;); the finished rows are kept"


def start(mode: str, shell: Any = None) -> Any:
    """A reporter for ``mode`` (see ``resolve_mode``), already shown in the cell if it is a widget."""
    mode = resolve_mode(mode, shell)
    if mode == "widget":
        # The bars are glue (nbtoolkit.jupyter.progress), handed over through views.
        reporter = views.get("progress.widget")(hint=_STOP_HINT)
        reporter.show()
        return reporter
    if mode == "text":
        # In a kernel (a headless run) the line goes with the cell's output, not to stderr.
        return TextProgress(sys.stdout if getattr(shell, "kernel", None) is not None else None)
    return NullProgress()
