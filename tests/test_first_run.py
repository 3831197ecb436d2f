"""The first run in a fresh process: the progress says litellm is loading, and an interrupt
while it loads gives control back at once, with no call made afterwards.

Each test runs a script in a fresh Python (litellm is imported once per process, so only a
new process shows the first run), talking to a local fake server; none reaches a model.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)
# A fresh interpreter importing litellm: seconds each.
fresh = pytest.mark.slow

# Makes `import litellm` wait (on the thread importing it) until the file RELEASE exists or
# 60 s pass, and says when it starts and whether it was released, so a test can act during
# the import and tell what happened before it finished.
SLOW_IMPORT = """
import os, sys, time
from pathlib import Path
RELEASE = Path(os.environ["RELEASE"])
state = {"import_finished": False}

class SlowLitellm:
    def find_spec(self, name, path=None, target=None):
        if name == "litellm":
            sys.meta_path.remove(self)
            print("IMPORT-START", flush=True)
            end = time.monotonic() + 60
            while not RELEASE.exists() and time.monotonic() < end:
                time.sleep(0.02)
            state["import_finished"] = True
        return None

sys.meta_path.insert(0, SlowLitellm())
"""


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "first_run.py"
    path.write_text(SLOW_IMPORT + textwrap.dedent(body), encoding="utf-8")
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RELEASE"] = str(tmp_path / "release")
    env["NBTOOLKIT_CACHE_DIR"] = str(tmp_path / "cache")
    env["NBTOOLKIT_SIM_TIME_SCALE"] = "0"
    return env


@fresh
def test_the_first_run_says_litellm_is_loading_and_offline_runs_never_load_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "release").touch()  # no wait: this test only listens
    script = _script(
        tmp_path,
        """
        import nbtoolkit as nbt
        from nbtoolkit.testing import FakeOpenAIServer

        class Listener:
            def __init__(self):
                self.notes, self.states = [], 0
            def __call__(self, state):
                self.states += 1
            def note(self, text):
                # Heard before the first call has finished: the display is not at 0/N in silence.
                self.notes.append((text, self.states))

        offline = Listener()
        nbt.orchestrate("What is 2+2?", ["sim/oracle-large"], progress=offline, audit=False)
        print("OFFLINE", offline.notes, "litellm" in sys.modules, flush=True)
        live = Listener()
        with FakeOpenAIServer() as server:
            model = nbt.Model("openai/local", api_base=server.base_url)
            nbt.orchestrate("What is 2+2?", [model], progress=live, audit=False)
            again = Listener()
            nbt.orchestrate("What is 3+3?", [model], progress=again, audit=False)
        print("LIVE", live.notes, flush=True)
        print("AGAIN", again.notes, flush=True)
        """,
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "OFFLINE [] False" in lines  # sim/ models never import litellm
    assert "LIVE [('loading litellm, first run only', 0)]" in lines
    assert "AGAIN []" in lines  # first run only


@fresh
def test_an_interrupt_while_litellm_loads_returns_at_once_and_no_call_is_made(
    tmp_path: Path,
) -> None:
    script = _script(
        tmp_path,
        """
        import signal
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import nbtoolkit as nbt
        from nbtoolkit.testing import FakeOpenAIServer

        with FakeOpenAIServer() as server:
            model = nbt.Model("openai/local", api_base=server.base_url)
            try:
                res = nbt.orchestrate("What is 2+2?", [model], progress="none", audit=False)
                print("RESULT", res.totals(), flush=True)
            except nbt.RunInterrupted as stop:  # what a loop of runs catches, too
                assert stop.result is None
                print("INTERRUPTED import_finished=%s" % state["import_finished"], flush=True)
            RELEASE.touch()
            # Queued on the same loop behind the interrupted run: it starts once that one
            # has ended, so the server's count then tells whether that one made a call.
            res = nbt.orchestrate("What is 3+3?", [model], progress="none", audit=False)
            print("NEXT", list(res.outputs["output"]), "requests", server.request_count, flush=True)
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.strip() == "IMPORT-START", first + proc.stderr.read()  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=100)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    lines = out.splitlines()
    # Control came back while litellm was still loading (before: only after it had loaded).
    assert "INTERRUPTED import_finished=False" in lines, out + err[-2000:]
    # The interrupted run made no call; the next one works as usual.
    assert "NEXT ['echo: What is 3+3?'] requests 1" in lines, out + err[-2000:]
    assert "never awaited" not in err and "Task was destroyed" not in err, err[-2000:]


def test_text_progress_says_litellm_is_loading_on_a_terminal() -> None:
    from nbtoolkit.calls import Progress
    from nbtoolkit.progress import TextProgress
    from nbtoolkit.providers import LOADING_NOTE

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    reporter = TextProgress(stream)
    reporter.note(LOADING_NOTE)
    state = Progress(total={"m": 1}, done={"m": 1}, failed={"m": 0}, finished=True)
    reporter(state)
    first, last = stream.getvalue().split("\r")[1:]
    assert first == "  loading litellm, first run only…"
    assert last.startswith("  done, 1 calls")
    assert len(last.rstrip("\n")) >= len(first)  # nothing of the note is left on the line


def test_the_progress_bars_say_litellm_is_loading() -> None:
    pytest.importorskip("ipywidgets")
    from nbtoolkit.jupyter.progress import WidgetProgress
    from nbtoolkit.providers import LOADING_NOTE

    bars = WidgetProgress()
    bars.note(LOADING_NOTE)
    assert bars.cost.value == "loading litellm, first run only…"
