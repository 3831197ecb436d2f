"""What the screen says agrees with the numbers beside it: unknown stays unknown, counts of
agreement leave out rows that cannot agree, labels say in-sample or held out, and each front
end gives advice in its own language. Offline: simulated models only."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit.calibration import calibrate
from nbtoolkit.providers import sim

PROMPT = "{question}\nReason briefly, then reply as JSON with an 'answer' field."
EXTRACT = ["json:answer", "number"]
SIX = [
    "sim/oracle-large",
    "sim/steady-medium",
    "sim/swift-mini",
    "sim/budget-a",
    "sim/budget-b",
    "sim/coin-flip",
]


def _bank(rows: int) -> pd.DataFrame:
    data = pd.DataFrame(sim.question_bank()[:rows])
    data["gold"] = data.pop("answer")
    return data


def _run(models: list[str], rows: int = 40, **kw: Any) -> Any:
    return nbt.orchestrate(
        PROMPT, models, data=_bank(rows), extract=EXTRACT, seed=0, audit=False, **kw
    )


@pytest.fixture(scope="module")
def six() -> Any:
    return _run(SIX)


def test_calibration_labels_in_sample_and_held_out_and_names_agree_with_calls(six: Any) -> None:
    cal = calibrate(six, gold="gold")
    text = repr(cal)
    assert "in-sample" in text and "held-out" in text
    # every share the message quotes is labelled held out
    assert len(re.findall(r"\d+% held out", cal.message)) == len(re.findall(r"\d+%", cal.message))
    assert "in-sample" in cal._repr_html_()
    # a candidate that names a count of models makes that many calls per row
    for name, rec in cal.candidates.iterrows():
        m = re.search(r"over (?:all|the) (\d+)", str(name))
        if m and "top" not in str(name):
            assert rec["calls_per_row"] == pytest.approx(int(m.group(1))), (name, rec)
    zero = [m for m, w in cal.weights.items() if w == 0]
    assert zero, "the bank's coin-flip model should get weight 0"
    assert f"weighted vote over the {len(SIX) - len(zero)} with weight > 0" in cal.candidates.index


def test_small_costs_are_written_with_significant_digits(six: Any) -> None:
    text = repr(calibrate(six, gold="gold"))
    assert "0.0000 " not in text and " 0.0000\n" not in text
    assert re.search(r"\$0\.0000\d", text), text
