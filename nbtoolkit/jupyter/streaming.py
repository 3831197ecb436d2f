"""Replies streaming in a cell: one pane per model, side by side, and a Stop button.

The core (``nbtoolkit.streaming``) hands each call's ``CallStream`` to ``on_stream`` on the
run's loop thread; here that only stores it. The drawing happens in ``pump()``, which the
cell's own thread calls while it waits for the run (``loop.while_waiting``): an IPython
display handle (``display(..., display_id=True)``, then ``update(...)``) is updated from the
thread that runs the cell, so the output lands in this cell, never in another one (an
``ipywidgets.Output`` used from a worker thread routes it wrongly: ipywidgets #2358, #3993).
Updates are throttled to ``UPDATES_PER_S``; the last one, when the run ends, always goes out.

The Stop button works while the cell runs, although a kernel reads widget messages only
between cells; a click cancels the run, which ends with the rows finished so far, as
interrupting the kernel does. Two ways, for the kernels there are:

- ipykernel 6: ``pump()`` reads the waiting widget messages (``jupyter_ui_poll``, which calls
  the kernel's ``do_one_iteration`` and replays the cells queued meanwhile afterwards);
- ipykernel 7.4+: no ``do_one_iteration`` any more, but every shell message first passes its
  shell-channel thread, which asks the message's comm where to route it
  (``Comm._reply_subshell_for``). The button's comm answers as before and, on the way, sees
  its own click there, and stops the run from that thread (``runner.cancel`` is thread-safe).
  The click is still delivered to the cell's thread after the cell, where it changes nothing.

Only for a person watching an interactive kernel (``wanted``): a papermill or nbconvert run
streams nothing into the saved notebook, only the final table.
"""

from __future__ import annotations

import contextlib
import html
import math
import threading
import time
from typing import Any

from ..calls import is_cancelled
from ..formatting import format_cost, seconds
from ..progress import resolve_mode
from ..streaming import CallStream

__all__ = ["UPDATES_PER_S", "StopButton", "StreamPanes", "panes", "render_markdown", "wanted"]

#: At most this many redraws of the panes per second (each one is a message to the browser).
UPDATES_PER_S = 4.0


def wanted(shell: Any = None) -> bool:
    """Whether a person watches this kernel's output live (not papermill, nbconvert, a script)."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython is a dependency
            return False
        shell = get_ipython()
    return shell is not None and resolve_mode("auto", shell) == "widget"


def panes() -> StreamPanes | None:
    """The ``"stream.panes"`` view: panes shown in this cell, or None where nobody watches."""
    if not wanted():
        return None
    shown = StreamPanes()
    shown.show()
    return shown


def render_markdown(text: str) -> str:
    """A reply as HTML: its markdown rendered (raw HTML in it escaped, code blocks kept), or
    the plain text when no markdown renderer is installed."""
    try:
        import mistune
    except ImportError:  # pragma: no cover - nbconvert brings it
        return f"<pre class='nbt-plain'>{html.escape(text)}</pre>"
    return str(mistune.create_markdown(escape=True, plugins=["strikethrough", "table"])(text))


class StopButton:
    """A Stop button in the cell that stops the attached runner; ``pump()`` reads its clicks
    while the cell runs (``jupyter_ui_poll``), ``close()`` removes it."""

    def __init__(self) -> None:
        import ipywidgets as w

        self.runner: Any = None
        self.requested = False
        self.button = w.Button(description="Stop", icon="stop", tooltip="keeps the finished rows")
        self.button.add_class("nbtoolkit-stop")
        self.button.on_click(lambda _: self.stop())
        self._handle: Any = None
        self._events = contextlib.ExitStack()
        self._poll: Any = None
        self._shown_stopping = False
        self._watch_route(getattr(self.button, "comm", None))

    def _watch_route(self, comm: Any) -> None:
        """See the click where ipykernel 7.4+ routes it, on its shell-channel thread."""
        route = getattr(comm, "_reply_subshell_for", None)
        if route is None:
            return

        def routed(data: Any, default: Any) -> Any:
            if isinstance(data, dict) and data.get("content") == {"event": "click"}:
                self.requested = True
                if self.runner is not None:
                    self.runner.cancel()
            return route(data, default)

        comm._reply_subshell_for = routed

    def attach(self, runner: Any) -> None:
        self.runner = runner
        if self.requested:
            runner.cancel()

    def stop(self) -> None:
        """The click, on the cell's thread (or after the cell, when it changes nothing)."""
        self.requested = True
        if self.runner is not None and self._handle is not None:
            self.runner.cancel()
        self._show_stopping()

    def _show_stopping(self) -> None:
        if self.requested and not self._shown_stopping and self._handle is not None:
            self._shown_stopping = True
            self.button.disabled = True
            self.button.description = "Stopping…"

    def show(self) -> None:
        from IPython.display import display

        self._handle = display(self.button, display_id=True)

    def pump(self) -> None:
        """Read the widget messages waiting for the kernel (a click): from the cell's thread."""
        if self._poll is None:
            from jupyter_ui_poll import ui_events

            self._poll = self._events.enter_context(ui_events())
        self._poll(20)
        self._show_stopping()  # a click seen on the shell-channel thread

    def close(self) -> None:
        self._events.close()
        self._poll = None
        if self._handle is not None:
            self.button.close()
            self._handle.update({"text/plain": ""}, raw=True)
            self._handle = None


class _Pane:
    """What one model's pane shows: its latest call, and counts over its calls."""

    __slots__ = ("cost", "done", "failed", "latest", "priced", "total")

    def __init__(self) -> None:
        self.latest: CallStream | None = None
        self.done = self.failed = self.total = 0
        self.cost = 0.0
        self.priced = True


class StreamPanes:
    """One pane per model, side by side, each filling as its reply arrives, with its time to
    first token, pieces per second and cost so far; over many rows, each model's latest
    row and a counter. ``on_stream`` stores (any thread); ``pump``/``close`` draw (the cell's)."""

    def __init__(self, *, stop: bool = True) -> None:
        self._lock = threading.Lock()
        self._panes: dict[str, _Pane] = {}
        self._dirty = False
        self._drawn_at = 0.0
        self._handle: Any = None
        self.stop = StopButton() if stop else None
        self.closed = False
        self.updates = 0
        self.runner: Any = None

    # -- the core's hooks (the loop thread)
    def attach(self, runner: Any) -> None:
        """``on_start``: the runner its Stop button stops, and whose counts the panes show."""
        self.runner = runner
        if self.stop is not None:
            self.stop.attach(runner)

    def on_stream(self, stream: CallStream) -> None:
        label = stream.call.model.label
        with self._lock:
            pane = self._panes.setdefault(label, _Pane())
            pane.latest = stream
            outcome = stream.outcome
            if outcome is not None:
                pane.done += 1
                pane.failed += outcome.output is None
                if not outcome.cached and math.isnan(outcome.cost_usd):
                    pane.priced = False
                elif not outcome.cached:
                    pane.cost += outcome.cost_usd
            self._dirty = True

    # -- drawing (the cell's thread)
    def show(self) -> None:
        from IPython.display import display

        self._handle = display(self._bundle(), raw=True, display_id=True)
        if self.stop is not None:
            self.stop.show()

    def pump(self) -> None:
        """Redraw if something changed and the last redraw is old enough; read clicks."""
        if self.stop is not None:
            self.stop.pump()
        now = time.monotonic()
        if self._dirty and now - self._drawn_at >= 1.0 / UPDATES_PER_S:
            self._draw(now)

    def close(self) -> None:
        """The run is over: the last redraw (every reply whole), and the button goes."""
        if self.closed:
            return
        self.closed = True
        if self.stop is not None:
            self.stop.close()
        self._draw(time.monotonic())

    def _draw(self, now: float) -> None:
        self._dirty = False
        self._drawn_at = now
        if self._handle is not None:
            self._handle.update(self._bundle(), raw=True)
            self.updates += 1

    def _totals(self) -> dict[str, int]:
        """Calls per model, as the runner counts them (filled as its run starts)."""
        state = getattr(self.runner, "state", None)
        for _ in range(3):  # the loop thread may add a model while this reads
            try:
                return dict(state.total) if state is not None else {}
            except RuntimeError:
                continue
        return {}

    def _bundle(self) -> dict[str, str]:
        totals = self._totals()
        with self._lock:
            for label, total in totals.items():
                self._panes.setdefault(label, _Pane()).total = total
            shown = [(label, *_pane_view(pane)) for label, pane in self._panes.items()]
        if not shown:
            return {"text/plain": "streaming…", "text/html": "<div class='nbt-stream'>…</div>"}
        cells = "".join(
            f"<div class='nbt-pane' data-model='{html.escape(label)}' style='flex:1 1 0;"
            "min-width:16em;border:1px solid #ddd;border-radius:4px;padding:6px;overflow:auto;"
            "max-height:28em'>"
            f"<div style='font-weight:bold'>{html.escape(label)}</div>"
            f"<div style='font-size:smaller;color:#666'>{html.escape(status)}</div>"
            f"<div class='nbt-reply'>{render_markdown(text) if text else ''}</div></div>"
            for label, status, text in shown
        )
        plain = "\n\n".join(f"== {label} ({status})\n{text}" for label, status, text in shown)
        return {
            "text/plain": plain,
            "text/html": f"<div class='nbt-stream' style='display:flex;gap:8px'>{cells}</div>",
        }


def _pane_view(pane: _Pane) -> tuple[str, str]:
    """(status line, text) of a pane: ``row 3 · 2/5 done · ttft 0.41 s · 38 pieces/s · $0.0012``."""
    stream = pane.latest
    parts: list[str] = []
    if pane.total > 1:
        parts.append(
            f"{pane.done}/{pane.total} done" + (f", {pane.failed} failed" if pane.failed else "")
        )
    if stream is None:
        return " · ".join([*parts, "waiting"]), ""
    if pane.total > 1:
        parts.insert(0, f"row {stream.call.row}")
    outcome = stream.outcome
    if outcome is None:
        parts.append("streaming…" if stream.chunks else "waiting for the first token…")
        if stream.attempt > 1:
            parts.append(f"attempt {stream.attempt}")
    elif outcome.cached:
        parts.append("cached")
    elif outcome.output is None:
        parts.append(outcome.error.split(":", 1)[0] if outcome.error else "failed")
    ttft = stream.ttft_s
    if not math.isnan(ttft):
        parts.append(f"ttft {seconds(ttft)}")
    rate = stream.pieces_per_s
    if outcome is not None and outcome.completion_tokens and outcome.latency_s > 0:
        streaming_s = outcome.latency_s - (0.0 if math.isnan(outcome.ttft_s) else outcome.ttft_s)
        if not outcome.cached and streaming_s > 0:
            rate = outcome.completion_tokens / streaming_s
            parts.append(f"{rate:.0f} tokens/s")
    elif not math.isnan(rate):
        parts.append(f"{rate:.0f} pieces/s")
    cost = format_cost(pane.cost) if pane.priced else "cost unknown"
    parts.append(cost if outcome is not None or pane.done else f"{cost} so far")
    text = stream.text
    if outcome is not None and outcome.output is None and outcome.error:
        # What had arrived stays in view; a failure says why under it, a Stop needs no words.
        if not text:
            text = outcome.error
        elif not is_cancelled(outcome.error):
            text = f"{text}\n\n{outcome.error}"
    return " · ".join(parts), text
