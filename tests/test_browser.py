"""The widget app in a real browser: JupyterLab + headless Debian Chromium, driven by Playwright.

One end-to-end test of what no kernel-level test can see: that ``nbtoolkit.ui()`` renders
through the ipywidgets JupyterLab extension, that clicking Run in the page reaches the
kernel, and that the result table comes back with one row per input row.

Everything runs on 127.0.0.1 in temporary folders: JupyterLab gets its own JUPYTER_CONFIG_DIR,
JUPYTER_DATA_DIR, JUPYTER_RUNTIME_DIR and IPYTHONDIR, and a kernelspec pointing at this very
interpreter (so the kernel imports the nbtoolkit under test); Chromium gets a throwaway
profile and HOME. The models are the offline ``sim/...`` ones; nothing leaves the machine.

The test skips when Chromium (Debian's ``chromium``), JupyterLab or Playwright is missing;
``.ci/run`` installs all three. Playwright's own browser download is never used.
A screenshot is written to ``test-artifacts/browser-widget.png`` at the repository root;
on failure the Lab server's log and a screenshot of the page are written there too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = Path(__file__).resolve().parent / "browser" / "widget_app.ipynb"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# The notebook's `questions`: the first four rows of the simulated models' question bank.
EXPECTED_IDS = [f"sim-{i:03d}" for i in range(1, 5)]
PROMPT = "{question}\nAnswer with a number."  # typed into the app's prompt editor

LAB_START_TIMEOUT = 45.0  # seconds; a cold first start of Lab can take 20-40 s
PAGE_TIMEOUT_MS = 45_000  # Lab's JavaScript, the kernel start and `import nbtoolkit`
RUN_TIMEOUT_MS = 30_000  # the click to the table: a run of the sim models


def _require_tools() -> None:
    missing = []
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"Chromium ({CHROMIUM}, Debian package 'chromium')")
    if importlib.util.find_spec("jupyterlab") is None:
        missing.append("jupyterlab")
    if importlib.util.find_spec("playwright") is None:
        missing.append("playwright (the Python package; its browser download is not used)")
    if missing:
        pytest.skip("browser test needs " + ", ".join(missing) + "; .ci/run installs them")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    url: str
    token: str
    notebook_dir: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def notebook_url(self, name: str) -> str:
        return f"{self.url}lab/tree/{name}?token={self.token}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def _isolated_jupyter_env(root: Path) -> dict[str, str]:
    """An environment whose Jupyter/IPython state lives under *root* only."""
    dirs = {
        "JUPYTER_CONFIG_DIR": root / "config",
        "JUPYTER_DATA_DIR": root / "data",
        "JUPYTER_RUNTIME_DIR": root / "runtime",
        "IPYTHONDIR": root / "ipython",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_PATH"}
    env.update({k: str(v) for k, v in dirs.items()})
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["PYTHONUNBUFFERED"] = "1"

    # The kernel is this interpreter, whatever "python3" means elsewhere on the machine:
    # JUPYTER_DATA_DIR comes first on the kernelspec search path.
    spec_dir = dirs["JUPYTER_DATA_DIR"] / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))

    # No "get Jupyter news?" toast over the page, no update checks (no network here).
    settings = dirs["JUPYTER_CONFIG_DIR"] / "lab" / "user-settings" / "@jupyterlab"
    notification = settings / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    return env


def _wait_until_up(lab: Lab, deadline: float) -> None:
    status = f"{lab.url}api/status?token={lab.token}"
    while True:
        if lab.proc.poll() is not None:
            raise AssertionError(
                f"JupyterLab exited with code {lab.proc.returncode}:\n{lab.log_tail()}"
            )
        try:
            with urllib.request.urlopen(status, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"JupyterLab did not answer in time:\n{lab.log_tail()}")
        time.sleep(0.25)


def _stop(lab: Lab) -> None:
    """Shut Lab down (kernels included), then make sure nothing it started survives."""
    children = []
    with contextlib.suppress(Exception):
        import psutil

        children = psutil.Process(lab.proc.pid).children(recursive=True)
    with contextlib.suppress(Exception):
        req = urllib.request.Request(
            f"{lab.url}api/shutdown?token={lab.token}", method="POST", data=b""
        )
        urllib.request.urlopen(req, timeout=5).close()
    try:
        lab.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(lab.proc.pid, signal.SIGTERM)
        try:
            lab.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(lab.proc.pid, signal.SIGKILL)
            lab.proc.wait(timeout=10)
    # Kernels run in their own session (jupyter_client's choice), so the process group
    # kill above does not reach them; kill any the shutdown left behind.
    for child in children:
        with contextlib.suppress(Exception):
            child.kill()


@pytest.fixture
def jupyter_lab(tmp_path: Path) -> Iterator[Lab]:
    _require_tools()
    notebook_dir = tmp_path / "notebooks"
    notebook_dir.mkdir()
    shutil.copyfile(NOTEBOOK, notebook_dir / "test.ipynb")
    env = _isolated_jupyter_env(tmp_path / "jupyter")
    port = _free_port()
    token = secrets.token_hex(16)
    log = tmp_path / "jupyterlab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={notebook_dir}",
        f"--IdentityProvider.token={token}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=",
        "--LabApp.extension_manager=readonly",
    ]
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            cmd,
            cwd=notebook_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    lab = Lab(f"http://127.0.0.1:{port}/", token, notebook_dir, log, proc)
    try:
        _wait_until_up(lab, time.monotonic() + LAB_START_TIMEOUT)
        yield lab
    finally:
        _stop(lab)


# JavaScript run in the page, through the app object that `expose_app_in_browser` puts on
# window (what JupyterLab's own Playwright framework, Galata, uses).
_KERNEL_IDLE = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""
_RUN_ALL = "() => window.jupyterapp.commands.execute('notebook:run-all-cells')"


@contextlib.contextmanager
def notebook_page(lab: Lab, notebook: str, tmp_path: Path, name: str) -> Iterator[Any]:
    """A headless Chromium page (throwaway HOME) on ``notebook`` in ``lab``, its kernel idle.

    A failed assertion or a browser error inside the block is raised again as one
    AssertionError that carries the notebook's outputs, the browser's console errors and the
    Lab log's tail; a screenshot (``<name>-failure.png``), the console and the whole Lab log
    go to ``test-artifacts/``.
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    for stale in (f"{name}-failure.png", f"{name}-console.log", "browser-jupyterlab.log"):
        (ARTIFACTS / stale).unlink(missing_ok=True)
    home = tmp_path / "browser-home"
    home.mkdir(exist_ok=True)
    console: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            env={**os.environ, "HOME": str(home)},
        )
        page = None
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console",
                lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(lab.notebook_url(notebook))
            page.wait_for_function(_KERNEL_IDLE, timeout=PAGE_TIMEOUT_MS, polling=250)
            yield page
        except (AssertionError, PlaywrightError) as exc:
            outputs = ""
            if page is not None:
                with contextlib.suppress(PlaywrightError):
                    page.screenshot(path=str(ARTIFACTS / f"{name}-failure.png"))
                with contextlib.suppress(PlaywrightError):
                    # What the notebook showed: tracebacks, or the app's own error message.
                    outputs = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
            (ARTIFACTS / "browser-jupyterlab.log").write_text(lab.log_tail(200_000))
            (ARTIFACTS / f"{name}-console.log").write_text("\n".join(console))
            raise AssertionError(
                f"{exc}\n--- notebook outputs ---\n{outputs[-4000:]}"
                "\n--- browser console errors ---\n" + "\n".join(console[-20:]) + "\n"
                f"--- JupyterLab log (tail; full logs and a screenshot in {ARTIFACTS}) ---\n"
                f"{lab.log_tail()}"
            ) from exc
        finally:
            browser.close()


def test_widget_app_runs_in_jupyterlab(jupyter_lab: Lab, tmp_path: Path) -> None:
    shot = ARTIFACTS / "browser-widget.png"
    shot.unlink(missing_ok=True)
    with notebook_page(jupyter_lab, "test.ipynb", tmp_path, "browser-widget") as page:
        page.evaluate(_RUN_ALL)

        # The kernel is the interpreter running this test (and so sees this nbtoolkit).
        prefix = page.locator(".jp-OutputArea-output", has_text="kernel-prefix:")
        prefix.wait_for()
        assert prefix.inner_text().split("kernel-prefix:", 1)[1].strip() == sys.prefix

        # The app renders through the ipywidgets Lab extension, not as a text repr.
        app = page.locator(".jp-OutputArea-output .nbtoolkit-app")
        app.wait_for()
        # Typed in the page: the run only works if the browser's edit reached the kernel.
        app.locator("textarea").fill(PROMPT)
        run = app.locator(".nbtoolkit-run")
        assert run.inner_text().strip() == "Run"
        run.click()

        # One row per input row, in order (its cells hold per-model tables of their own).
        rows = app.locator("table.nbtoolkit-consensus > tbody > tr")
        rows.first.wait_for(timeout=RUN_TIMEOUT_MS)
        assert rows.count() == len(EXPECTED_IDS)
        for row, qid in zip(rows.all(), EXPECTED_IDS, strict=True):
            assert qid in row.inner_text()

        rows.last.scroll_into_view_if_needed()
        page.screenshot(path=str(shot))
    assert shot.is_file()


def test_the_app_keeps_the_click_order_of_the_models(jupyter_lab: Lab, tmp_path: Path) -> None:
    """Two alias buttons clicked in reverse alphabetical order: the cell the app shows (made
    in the kernel from what reached it) names them in the order they were clicked."""
    with notebook_page(jupyter_lab, "test.ipynb", tmp_path, "browser-click-order") as page:
        page.evaluate(_RUN_ALL)
        app = page.locator(".jp-OutputArea-output .nbtoolkit-app")
        app.wait_for()
        cell = app.locator(".nbtoolkit-cell")
        for alias in ("swift", "oracle"):  # not alphabetical: a vote's tie goes first
            app.locator(".nbtoolkit-pick", has_text=alias).click()
            page.wait_for_function(
                "([el, alias]) => el.innerText.includes('-m ' + alias + ' ')",
                arg=[cell.element_handle(), alias],
                timeout=RUN_TIMEOUT_MS,
            )
        first_line = cell.inner_text().strip().splitlines()[0]
        assert first_line.startswith("%%orchestrate -m swift -m oracle "), first_line
