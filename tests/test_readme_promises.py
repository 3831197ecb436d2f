"""What the README promises a newcomer: every tutorial is listed, and the fast subset of the
tests it names is a marker the slow tests carry. (The README's Jupyter example is run, cell
by cell, in tests/test_magics.py.)"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_tutorial_list_names_every_notebook() -> None:
    listing = README.split("Tutorials in `notebooks/`", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"`(\w+)`", listing))
    notebooks = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert {"quickstart", "batch_consensus"} <= notebooks
    assert notebooks <= listed, notebooks - listed


def test_the_fast_subset_the_readme_names_is_a_marker_the_slow_tests_carry() -> None:
    command = re.search(r'python -m pytest -m "not (\w+)"', README)
    assert command, "the README says how to run the fast subset"
    marker = command.group(1)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    markers = pyproject.split("markers = [", 1)[1].split("]", 1)[0]
    assert f'"{marker}: ' in markers  # registered (--strict-markers)
    # The real kernels, the browser and the benchmarks are the slow ones.
    for name in ("test_browser.py", "test_tutorials.py", "test_benchmarks_smoke.py"):
        assert f"pytest.mark.{marker}" in (ROOT / "tests" / name).read_text(encoding="utf-8")
    assert re.search(r"about \d+ minutes?", README.split("## In Jupyter", 1)[0])
