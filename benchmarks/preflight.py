"""How long a missing key costs on the command line, next to ``import litellm``.

    python benchmarks/preflight.py

``nbtoolkit report compare_models`` with two real models and no key set: the CLI must name
both missing variables and exit 2 before any kernel starts. Timed around the whole command
(a fresh interpreter each time, median of 5), beside ``import litellm`` in a fresh
interpreter (the cost a pre-flight that imported litellm would pay). Target: < 1 s.
Nothing is sent anywhere; a benchmark, never a test: it does not fail for being slow.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")


def _timed(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - start, done.returncode, done.stderr.strip()


def main() -> int:
    env = {k: v for k, v in os.environ.items() if k not in KEYS}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    report = [
        sys.executable,
        "-m",
        "nbtoolkit.cli",
        "report",
        "compare_models",
        "-p",
        "models",
        "[gpt-4o-mini, claude-3-5-haiku-20241022]",
        "-o",
        "out/report.ipynb",
    ]
    with tempfile.TemporaryDirectory() as cwd:
        checks, imports = [], []
        for _ in range(5):  # interleaved, so both see the same machine
            seconds, code, said = _timed(report, env, cwd)
            checks.append(seconds)
            imports.append(_timed([sys.executable, "-c", "import litellm"], env, cwd)[0])
        written = os.listdir(cwd)
    check, load = statistics.median(checks), statistics.median(imports)
    print(f"missing keys, nbtoolkit report: {check:.2f} s (exit {code}; target < 1 s)")
    print(f"import litellm:                 {load:.2f} s (reference)")
    print(f"ratio:                          {check / load:.2f} of an import of litellm")
    print(f"files written: {written or 'none'}")
    print(f"the line: {said}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
