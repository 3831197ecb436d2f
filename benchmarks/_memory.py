"""Peak memory of one large offline run, measured in a fresh process (figure 5).

Prints one JSON line: ``baseline_mb`` (peak RSS once nbtoolkit and pandas are imported and
one warm-up run was made; an offline run never imports litellm), ``peak_mb`` (peak RSS after
the big run), the rows produced, the run's wall time, and the size of the outputs frame
itself. Each row's prompt is its own (the bank question and the row's id), so every one of
the calls is made: none is a duplicate answered by sharing another's reply.

    python benchmarks/_memory.py --rows 40000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

MODELS = [
    "sim/swift-mini",
    "sim/steady-medium",
    "sim/oracle-large",
    "sim/budget-a",
    "sim/budget-b",
]


def peak_rss_mb() -> float:
    # VmHWM is this process's own high-water mark. ru_maxrss is not: on Linux it can carry
    # the parent's peak across fork and exec, so a child of a big benchmark process read
    # "+0 MB" for a run that took 245 MB.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, required=True)
    options = parser.parse_args()
    os.environ["NBTOOLKIT_SIM_TIME_SCALE"] = "0"
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    import pandas as pd

    import nbtoolkit as nbt
    from nbtoolkit.providers import sim

    def run(data: pd.DataFrame) -> nbt.RunResult:
        return nbt.orchestrate(
            "{question}\n(item {id})",
            MODELS,
            data=data,
            extract="number",
            cache="off",
            audit=False,
            concurrency=64,
        )

    bank = [q["question"] for q in sim.question_bank()]
    run(pd.DataFrame({"question": bank[:1], "id": [0]}))  # the first run's imports and set-up
    baseline = peak_rss_mb()

    data = pd.DataFrame(
        {"question": [bank[i % len(bank)] for i in range(options.rows)], "id": range(options.rows)}
    )
    start = time.perf_counter()
    res = run(data)
    wall = time.perf_counter() - start
    peak = peak_rss_mb()
    print(
        json.dumps(
            {
                "baseline_mb": baseline,
                "peak_mb": peak,
                "rows": len(res.outputs),
                "failed": int(res.outputs["output"].isna().sum()),
                "shared": int(res.meta["shared_calls"]),
                "litellm": "litellm" in sys.modules,
                "wall_s": wall,
                "outputs_mb": res.outputs.memory_usage(deep=True).sum() / 2**20,
            }
        )
    )


if __name__ == "__main__":
    main()
