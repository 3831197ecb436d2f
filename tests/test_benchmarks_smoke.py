"""The benchmarks still run: ``benchmarks/run.py --quick`` exits 0 and prints its whole table.

Never asserts on a speed: a slow machine passes. Only a crash or a missing row fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROWS = [
    "1a", "1b", "1c", "1d",
    "2a", "2b", "2c", "2d",
    "3a", "3b", "3c", "3d",
    "4a", "4b", "4c",
    "5",
    "6a", "6b", "6c", "6d", "6e", "6f",
    "7a", "7b", "7c", "7d",
]  # fmt: skip

pytestmark = pytest.mark.slow


def test_quick_benchmarks_print_every_row() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,  # a hang guard, not a speed check
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    assert re.search(r"^\s+figure\s+measured\s+target\s+ratio / verdict$", out, re.M), out
    for row in ROWS:
        assert re.search(rf"^{re.escape(row)}\s+\S", out, re.M), f"row {row} missing:\n{out}"
    assert "CRASHED" not in out
