"""Test isolation: a private cache folder per test, simulated models without sleeps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k-recorded"
CANARY_KEY = "sk-canary-9f8e7d6c5b4a3f2e1d0c"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBTOOLKIT_CACHE_DIR", str(tmp_path / "nbtoolkit-cache"))
    monkeypatch.setenv("NBTOOLKIT_SIM_TIME_SCALE", "0")
    monkeypatch.delenv("NBTOOLKIT_RECORDINGS", raising=False)


@pytest.fixture
def gsm8k() -> Path:
    if not (SHARED_DATA / "recordings.jsonl.gz").exists():
        pytest.skip("../shared/data/gsm8k-recorded is not here")
    return SHARED_DATA


def loaded_shell(rows: int):  # type: ignore[no-untyped-def]
    """A test IPython shell with ``%load_ext nbtoolkit`` done the way a user does it, and a
    DataFrame ``questions`` of ``rows`` simulated-bank questions; cleaned up afterwards."""
    import pandas as pd
    from IPython.testing import globalipapp

    from nbtoolkit.providers import sim

    globalipapp.start_ipython()  # once per process; later calls return None
    shell = globalipapp.get_ipython()
    shell.config.pop("Orchestrate", None)  # %config writes to the shell's config too
    before = set(shell.user_ns)
    shell.run_line_magic("load_ext", "nbtoolkit")
    shell.user_ns["questions"] = pd.DataFrame(sim.question_bank()[:rows])
    yield shell
    shell.run_line_magic("unload_ext", "nbtoolkit")
    shell.config.pop("Orchestrate", None)
    for name in set(shell.user_ns) - before:
        del shell.user_ns[name]


def execute_notebook(path: Path, workdir: Path):  # type: ignore[no-untyped-def]
    """Run a notebook end to end in a real kernel; returns the executed notebook.

    The kernel inherits this process's environment: the test's private cache folder and
    NBTOOLKIT_SIM_TIME_SCALE=0, so simulated models do not sleep.
    """
    import importlib.util

    import nbformat

    if importlib.util.find_spec("ipykernel") is None:
        pytest.skip("ipykernel is not installed: pip install -e '.[test]'")
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    ).execute()
    return nb
