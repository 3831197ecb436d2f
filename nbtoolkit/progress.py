"""Live progress of a run: bars per model in Jupyter, a text line elsewhere.

The core calls a progress callback with a ``runner.Progress`` after every finished call, from
the worker thread that runs the event loop, and ``on_start(runner)`` once the calls are
planned. A reporter here is both: ``reporter(state)`` and ``reporter.attach(runner)``.

Which reporter a run gets (``resolve_mode``):

- ``widget``: one bar per model (done / failed / total) and the money spent so far; for a
  kernel whose frontend is a person (JupyterLab, Notebook, VS Code). In a cell, the way to
  stop is interrupting the kernel (the finished rows are kept): a button could not work
  there, as the kernel reads a click only once the cell has finished. The app
  (``nbtoolkit.ui()``) runs off the main thread, so its Cancel button works.
- ``text``: ``cli.TerminalProgress``, a line rewritten in place on a terminal, or one final
  line when the output is not a terminal. Headless runs (papermill, nbconvert, nbclient: they
  execute with ``allow_stdin=False``) get this: widget output does not survive them.
- ``none``: nothing.

``NBTOOLKIT_PROGRESS=widget|text|none`` overrides the guess.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

__all__ = ["MODES", "NullProgress", "TextProgress", "WidgetProgress", "resolve_mode", "start"]

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
    try:
        import ipywidgets  # noqa: F401
    except ImportError:  # pragma: no cover - a dependency
        return "text"
    return "widget"


class NullProgress:
    """Reports nothing."""

    def __call__(self, state: Any) -> None:
        pass

    def attach(self, runner: Any) -> None:
        pass

    def show(self) -> None:
        pass

    def close(self) -> None:
        pass


class TextProgress(NullProgress):
    """``cli.TerminalProgress``: in place on a terminal, one final line otherwise."""

    def __init__(self, stream: Any = None) -> None:
        from .cli import TerminalProgress

        self.terminal = TerminalProgress(stream)

    def __call__(self, state: Any) -> None:
        self.terminal(state)


class WidgetProgress:
    """One progress bar per model and the cost spent so far; ``cancel()`` stops the run.

    Updates come from the run's worker thread and are throttled to ``MAX_UPDATES_PER_S``;
    the last one (``state.finished``) always goes through. The widget has no button of its
    own: in a cell, a click would reach the kernel only after the run (see the module's
    docstring); the app wires its own Cancel button to ``cancel()``.
    """

    def __init__(self, *, hint: str = "") -> None:
        import ipywidgets as w

        self._w = w
        self.runner: Any = None
        self.cancel_requested = False
        self.closed = False
        self._last = 0.0
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[Any, Any]] = {}
        self.bars = w.VBox()
        self.cost = w.Label("starting…")
        footer: list[Any] = [self.cost]
        if hint:
            footer.append(w.HTML(f"<small>{hint}</small>"))
        self.widget = w.VBox([self.bars, w.HBox(footer)])
        self.widget.add_class("nbtoolkit-progress")
        self._handle: Any = None

    # -- the core's hooks
    def attach(self, runner: Any) -> None:
        """``on_start``: keep the runner, so Cancel can stop it."""
        self.runner = runner
        if self.cancel_requested:
            runner.cancel()

    def __call__(self, state: Any) -> None:
        now = time.monotonic()
        if not state.finished and now - self._last < 1.0 / MAX_UPDATES_PER_S:
            return
        self._last = now
        if self.cancel_requested and self.runner is not None and not state.finished:
            self.runner.cancel()  # a click that came before the runner was listening
        with self._lock:
            self._update(state)

    # -- actions
    def cancel(self) -> None:
        """Stop the run (from any thread); the finished rows are kept."""
        if self.closed:
            return
        self.cancel_requested = True
        self.cost.value = "cancelling…"
        if self.runner is not None:
            self.runner.cancel()

    def show(self) -> None:
        """Display the bars in the current cell's output."""
        from IPython.display import display

        self._handle = display(self.widget, display_id=True)

    def close(self) -> None:
        """Remove the widget from the output: the result shown next says it all."""
        self.closed = True
        if self._handle is not None:
            self.widget.close()
            self._handle.update({"text/plain": ""}, raw=True)
            self._handle = None

    # -- drawing
    def _update(self, state: Any) -> None:
        w = self._w
        for label, total in state.total.items():
            if label not in self._rows:
                bar = w.IntProgress(min=0, max=max(total, 1), layout=w.Layout(width="16em"))
                text = w.Label()
                name = w.Label(label, layout=w.Layout(width="16em"))
                self._rows[label] = (bar, text)
                self.bars.children = (*self.bars.children, w.HBox([name, bar, text]))
            bar, text = self._rows[label]
            done, failed = state.done.get(label, 0), state.failed.get(label, 0)
            if state.finished:  # a full bar: the calls not made (skipped, cancelled) are no gap
                total -= state.skipped.get(label, 0) + state.cancelled.get(label, 0)
            bar.max = max(total, 1)
            bar.value = min(done + failed, bar.max)
            if failed and not done:
                bar.bar_style = "danger"
            elif failed:
                bar.bar_style = "warning"
            elif state.finished:
                bar.bar_style = "success"
            text.value = bar_text(state, label)
        self.cost.value = status_line(
            state, cancelled=self.cancel_requested or getattr(self.runner, "cancelled", False)
        )


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
    from .display import format_cost  # pandas is loaded by now: a run is going

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
        reporter = WidgetProgress(hint=_STOP_HINT)
        reporter.show()
        return reporter
    if mode == "text":
        # In a kernel (a headless run) the line goes with the cell's output, not to stderr.
        return TextProgress(sys.stdout if getattr(shell, "kernel", None) is not None else None)
    return NullProgress()
