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
