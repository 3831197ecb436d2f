"""The tutorial notebooks run offline, end to end, in a real kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from .conftest import execute_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TUTORIALS = [
    "strategies_compared.ipynb",
    "pipelines.ipynb",
    "voting_as_a_teacher.ipynb",
    "own_server.ipynb",
]


@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorials_are_stored_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert 'os.environ["NBTOOLKIT_SIM_TIME_SCALE"] = "0"' in code[0].source
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.slow
@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_runs_end_to_end(name: str, tmp_path: Path) -> None:
    nb = execute_notebook(NOTEBOOKS / name, tmp_path)
    shown = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source[:60]
        for out in cell.outputs:
            shown.append(out.get("text", "") + str(out.get("data", {}).get("text/html", "")))
    text = "".join(shown)
    if name == "strategies_compared.ipynb":
        assert "cascade, cheapest first" in text and "Accuracy, cost and latency" in text
        assert "held-out calibration error" in text and "McNemar" in text
    if name == "pipelines.ipynb":
        assert "Pipeline workflow" in text and "<svg" in text
    if name == "own_server.ipynb":
        assert "The answer is 42." in text and "openai/my-local-model" in text
    if name == "voting_as_a_teacher.ipynb":
        assert "made independent" in text and "<svg" in text
