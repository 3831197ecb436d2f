"""The notebooks in ``notebooks/`` run end to end, offline, in a real kernel."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

from .conftest import execute_notebook
from .kernels import execute, running_kernel

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["quickstart.ipynb", "batch_consensus.ipynb"]
WIDGET = "application/vnd.jupyter.widget-view+json"


def code_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_stored_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_end_to_end(name: str, tmp_path: Path) -> None:
    nb = execute_notebook(NOTEBOOKS / name, tmp_path)

    runs = [c for c in code_cells(nb) if c.source.startswith("%%orchestrate")]
    assert runs
    for cell in code_cells(nb):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if "raises-exception" in cell.metadata.get("tags", []):
            # A mistake is one UsageError line on stderr, no traceback.
            text = "".join(o.get("text", "") for o in cell.outputs)
            assert text.startswith("UsageError: %%orchestrate:") and text.count("\n") == 1
        else:
            assert not errors, (cell.source[:60], errors)
    for cell in runs:
        if "raises-exception" in cell.metadata.get("tags", []):
            continue
        results = [o for o in cell.outputs if o.output_type == "execute_result"]
        assert len(results) == 1, cell.source[:60]
        markup = results[0].data["text/html"]
        assert "nbtoolkit-consensus" in markup and "simulated" in markup
        # Headless (nbclient): the progress is plain text, never a widget.
        assert not any(WIDGET in o.get("data", {}) for o in cell.outputs)


@pytest.mark.slow
def test_an_interactive_kernel_shows_progress_bars_then_removes_them() -> None:
    """With a person's frontend (allow_stdin=True) the run shows widget bars, live."""
    with running_kernel() as kc:
        _, reply = execute(kc, "%load_ext nbtoolkit")
        assert reply["content"]["status"] == "ok"
        seen, reply = execute(kc, "%%orchestrate --no-stream -m oracle -m swift\nWhat is 2+2?")
        assert reply["content"]["status"] == "ok"
        kinds = [m["msg_type"] for m in seen]
        shown = [m for m in seen if m["msg_type"] == "display_data"]
        assert WIDGET in shown[0]["content"]["data"]
        display_id = shown[0]["content"]["transient"]["display_id"]
        updates = [m for m in seen if m["msg_type"] == "update_display_data"]
        assert updates[-1]["content"]["transient"]["display_id"] == display_id
        assert WIDGET not in updates[-1]["content"]["data"]  # the bars are gone afterwards
        states = [
            m["content"]["data"].get("state", {}) for m in seen if m["msg_type"] == "comm_msg"
        ]
        assert any(
            re.match(r"done, \d+ calls, \$[\d.]+ spent$", str(s.get("value", ""))) for s in states
        )
        assert kinds.index("update_display_data") < kinds.index("execute_result")
