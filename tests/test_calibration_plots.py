"""``cal.plot.reliability()`` and ``cal.plot.selective()``: matplotlib figures of a
calibration's held-out measures (issue 14), and the reliability diagram in the report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit.providers import sim
from nbtoolkit.report import sections as rs

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Case {case}.\n{question}\nReason briefly, then reply as JSON with an 'answer' field."
# No oracle: a panel that is often wrong, so confidence has something to sort.
PANEL = ["sim/steady-medium", "sim/swift-mini", "sim/budget-a", "sim/budget-b", "sim/coin-flip"]


def _data(cases: range) -> pd.DataFrame:
    bank = pd.DataFrame(sim.question_bank())
    bank["gold"] = bank.pop("answer")
    return pd.concat([bank.assign(case=k) for k in cases], ignore_index=True)


@pytest.fixture(scope="module")
def res() -> Any:
    os.environ["NBTOOLKIT_SIM_TIME_SCALE"] = "0"
    return nbt.orchestrate(
        PROMPT, PANEL, data=_data(range(5)), extract=["json:answer", "number"], seed=0, audit=False
    )


@pytest.fixture(scope="module")
def cal(res: Any) -> Any:
    return nbt.calibrate(res, gold="gold")


def texts(fig: Any) -> list[str]:
    found = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    return [t for t in found if t]


def line(ax: Any, starts: str) -> Any:
    (found,) = [ln for ln in ax.get_lines() if ln.get_label().startswith(starts)]
    return found


def test_the_reliability_diagram_draws_the_held_out_tables(cal: Any) -> None:
    from matplotlib.figure import Figure

    fig = cal.plot.reliability()
    assert isinstance(fig, Figure)
    top, bottom = fig.axes
    for label, table in (
        ("calibrated confidence", cal.reliability()),
        ("the strategy's own confidence", cal.reliability(of="strategy")),
    ):
        full = table[table["rows"] > 0]
        drawn = line(top, label)
        assert list(drawn.get_xdata()) == pytest.approx(full["mean_confidence"].tolist())
        assert list(drawn.get_ydata()) == pytest.approx(full["accuracy"].tolist())
        # the bin counts below: one bar per bin, as tall as its rows
        (bars,) = [c for c in bottom.containers if c.get_label() == label]
        assert [b.get_height() for b in bars] == table["rows"].tolist()
        assert sum(b.get_height() for b in bars) == len(cal.held_out)
    diagonal = line(top, "perfectly calibrated")
    assert list(diagonal.get_xdata()) == [0, 1] and list(diagonal.get_ydata()) == [0, 1]
    shown = texts(fig)
    assert f"calibrated confidence (ECE {cal.ece:.3f})" in shown
    assert f"the strategy's own confidence (ECE {cal.strategy_ece:.3f})" in shown
    assert f"Reliability of the confidence, held out ({len(cal.held_out)} rows, 10 bins)" in shown
    assert bottom.get_xlabel() == "confidence" and bottom.get_ylabel() == "rows"
    # a new figure each call, and the bins can be chosen
    assert len(cal.plot.reliability(bins=5).axes[1].containers[0]) == 5


def test_the_selective_curve_marks_the_threshold_for_the_target(cal: Any) -> None:
    fig = cal.plot.selective(target_error=0.05)
    ax = fig.axes[0]
    curve = cal.selective()
    drawn = line(ax, "calibrated confidence")
    assert list(drawn.get_xdata()) == pytest.approx(curve["kept"].tolist())
    assert list(drawn.get_ydata()) == pytest.approx(curve["error"].tolist())
    chosen = cal.threshold_for(0.05)
    shown = " ".join(texts(fig))
    assert chosen.sentence[1:] in shown
    if chosen.rows:
        mark = line(ax, f"confidence >= {chosen.threshold:.3g}")
        assert list(mark.get_xdata()) == [pytest.approx(chosen.kept)]
    assert "error of the kept rows" in shown


def test_the_plots_load_matplotlib_only_when_drawn_and_never_pyplot() -> None:
    code = (
        "import sys, os\n"
        "os.environ['NBTOOLKIT_SIM_TIME_SCALE'] = '0'\n"
        "import pandas as pd, nbtoolkit as nbt\n"
        "from nbtoolkit.providers import sim\n"
        "data = pd.DataFrame(sim.question_bank()).rename(columns={'answer': 'gold'})\n"
        "res = nbt.orchestrate('{question}', ['sim/swift-mini', 'sim/budget-a', 'sim/budget-b'],"
        " data=data, extract='number', audit=False)\n"
        "cal = nbt.calibrate(res, gold='gold')\n"
        "charts = cal.plot\n"
        "seen = ['matplotlib' in sys.modules]\n"
        "charts.reliability()\n"
        "seen += ['matplotlib' in sys.modules, 'matplotlib.pyplot' in sys.modules]\n"
        "print(seen)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[False, True, False]"


def test_the_report_shows_the_reliability_diagram_as_inline_svg(res: Any, cal: Any) -> None:
    page = rs.Report(res, gold="gold").calibration()._repr_html_()
    drawings = re.findall(r"<svg\b.*?</svg>", page, re.S)
    assert len(drawings) == 1 and 'class="nbtoolkit-figure"' in drawings[0]
    assert "Reliability of the confidence, held out" in drawings[0]
    assert f"expected calibration error {cal.ece:.3f}" in page
    assert str(cal.threshold_for(0.05)) in page.replace("&gt;", ">")
