"""The Stop button of a streaming cell, clicked in JupyterLab (headless Chromium, Playwright).

A kernel reads widget messages only between cells; the cell's wait pumps them
(``jupyter_ui_poll``), so a click mid-run reaches the kernel and stops the run, which ends
with the rows finished so far. The JupyterLab set-up is ``test_browser``'s; the screenshot
goes to ``test-artifacts/browser-stop.png`` beside the other browser artifacts.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

from .test_browser import (
    ARTIFACTS,
    Lab,
    jupyter_lab,  # noqa: F401  # the fixture, shared
    notebook_page,
)

# Not awaited: run-all's promise resolves only once every cell has run.
START_ALL = "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# Slowed down so that swift-mini (~6 s) ends well before oracle-large (~25 s): the click
# comes between the two.
CELLS = [
    "import os\n"
    'os.environ["NBTOOLKIT_SIM_TIME_SCALE"] = "10"\n'
    'os.environ["NBTOOLKIT_CACHE_DIR"] = os.path.abspath("nbtoolkit-cache")\n'
    "%load_ext nbtoolkit",
    "%%orchestrate -m oracle -m swift --extract number\nWhat is 2+2?",
    "ended = _orch.outputs.set_index('model')\n"
    "print('stopped:', _orch.cancelled, "
    "'| answered:', sorted(ended[ended['output'].notna()].index), "
    "'| cancelled:', sorted(ended[ended['error'].fillna('').str.startswith('Cancelled')].index))",
]


def test_stop_keeps_the_finished_rows(jupyter_lab: Lab, tmp_path: Path) -> None:  # noqa: F811
    """Clicked mid-run, the cell ends with the finished rows, as an interrupt would."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nbformat.write(nb, jupyter_lab.notebook_dir / "stop.ipynb")
    shot = ARTIFACTS / "browser-stop.png"
    shot.unlink(missing_ok=True)
    with notebook_page(jupyter_lab, "stop.ipynb", tmp_path, "browser-stop") as page:
        page.evaluate(START_ALL)

        # The panes stream; swift-mini finishes first (its pane then shows tokens/s).
        swift = page.locator(".nbt-pane[data-model='sim/swift-mini']", has_text="tokens/s")
        swift.wait_for()
        oracle = page.locator(".nbt-pane[data-model='sim/oracle-large']")
        assert "tokens/s" not in oracle.inner_text()  # still streaming
        stop = page.locator(".nbtoolkit-stop")
        clicked = time.monotonic()
        stop.click()

        summary = page.locator(".jp-OutputArea-output", has_text="stopped:")
        summary.wait_for()
        took = time.monotonic() - clicked
        text = summary.inner_text()
        assert "stopped: True" in text
        assert "answered: ['sim/swift-mini']" in text
        assert "cancelled: ['sim/oracle-large']" in text
        # The result table is under the panes, and the button is gone.
        assert page.locator(".jp-OutputArea-output .nbtoolkit-stop").count() == 0
        page.screenshot(path=str(shot))
        print(f"from the click to the next cell's output: {took:.2f} s")
    assert shot.is_file()
