"""The house rules that keep the core light and clean, checked for real."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**__import__("os").environ, "NBTOOLKIT_SIM_TIME_SCALE": "0"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_core_never_imports_jupyter_or_papermill() -> None:
    out = run_python(
        "import sys, nbtoolkit as nbt\n"
        "from nbtoolkit import api, cache, runner, results, extract, templating, strategies, providers\n"
        "nbt.orchestrate('What is 2+2?', ['sim/swift-mini'], audit=False)\n"
        "print(sorted(m for m in ('IPython', 'ipywidgets', 'papermill', 'ipykernel') if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_import_nbtoolkit_is_cheap() -> None:
    out = run_python(
        "import sys, nbtoolkit\n"
        "print(sorted(m for m in ('litellm', 'pandas', 'pydantic') if m in sys.modules))"
    )
    assert out.strip() == "[]"


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_ruff_lint_and_format() -> None:
    for args in (["check", "nbtoolkit", "tests"], ["format", "--check", "nbtoolkit", "tests"]):
        done = subprocess.run(["ruff", *args], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_mypy_public_api() -> None:
    # A cold mypy cache takes about a minute on an idle machine and many on a loaded one:
    # the bound is a hang guard, not a speed target.
    pytest.importorskip("mypy")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "nbtoolkit"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1700,
    )
    assert done.returncode == 0, done.stdout


def test_exported_functions_are_never_shadowed_by_their_modules() -> None:
    out = run_python(
        "import importlib, nbtoolkit as nbt\n"
        "for name in ('api', 'pipelines', 'calibration', 'estimates', 'jupyter.widgets', 'results', 'comparison', 'saving'):\n"
        "    importlib.import_module('nbtoolkit.' + name)\n"
        "print(all(callable(getattr(nbt, n)) for n in nbt.__all__ if n != '__version__'))"
    )
    assert out.strip() == "True"


# litellm 1.82.7 and 1.82.8 were published by an attacker (March 2026, litellm issues
# #24512/#24518): neither may be installed, and the requirement must exclude both.
COMPROMISED_LITELLM = {"1.82.7", "1.82.8"}


def test_the_installed_litellm_is_not_a_compromised_release() -> None:
    from importlib.metadata import requires, version

    assert version("litellm") not in COMPROMISED_LITELLM
    (requirement,) = [r for r in requires("nbtoolkit") or [] if r.startswith("litellm")]
    for bad in COMPROMISED_LITELLM:
        assert f"!={bad}" in requirement.replace(" ", ""), requirement


def test_the_library_never_imports_litellm_proxy() -> None:
    package = Path(__file__).resolve().parents[1] / "nbtoolkit"
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "litellm.proxy" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
