"""The progress bars of a run in Jupyter: one per model, and the money spent so far.

The core (``nbtoolkit.progress``) chooses the reporter and words the lines; this module only
draws them with ipywidgets. See ``nbtoolkit.progress`` for when a run gets bars.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..progress import MAX_UPDATES_PER_S, bar_text, status_line

__all__ = ["WidgetProgress"]


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

    def note(self, text: str) -> None:
        """Say what happens before the first call (``providers.LOADING_NOTE``); the first
        update replaces it."""
        self.cost.value = f"{text}…"

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
