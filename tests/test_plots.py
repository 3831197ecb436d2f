"""``res.plot.<name>()``: matplotlib figures of a run, and the same figures in reports."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit.errors import ConfigError
from nbtoolkit.providers import sim
from nbtoolkit.report import figures
from nbtoolkit.report import sections as rs
from nbtoolkit.strategies import answer_key

ROOT = Path(__file__).resolve().parents[1]
PANEL = ["sim/swift-mini", "sim/budget-a", "sim/oracle-large"]
PROMPT = "{question}\nReason briefly, then reply as JSON with an 'answer' field."


@pytest.fixture(scope="module")
def res() -> Any:
    os.environ["NBTOOLKIT_SIM_TIME_SCALE"] = "0"
    data = pd.DataFrame(sim.question_bank()[:10]).rename(columns={"answer": "gold"})
    return nbt.orchestrate(
        PROMPT, PANEL, data=data, extract=["json:answer", "number"], seed=0, audit=False
    )


def texts(fig: Any) -> list[str]:
    """Every piece of text drawn on the figure: titles, labels, ticks, cell values."""
    found = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    return [t for t in found if t]


def widths(fig: Any) -> dict[str, float]:
    """Each bar's length by its label (horizontal bars: first item on top)."""
    ax = fig.axes[0]
    labels = {
        round(y): t.get_text() for y, t in zip(ax.get_yticks(), ax.get_yticklabels(), strict=True)
    }
    return {labels[round(p.get_y() + p.get_height() / 2)]: p.get_width() for p in ax.patches}


def made(res: Any) -> pd.DataFrame:
    return res.outputs[~res.skipped_mask() & ~res.cancelled_mask()]


# ------------------------------------------------------------------------ content


def test_each_chart_is_a_matplotlib_figure(res: Any) -> None:
    from matplotlib.figure import Figure

    for fig in (
        res.plot.agreement(),
        res.plot.cost_accuracy(),
        res.plot.cost_accuracy(gold="gold"),
        res.plot.accuracy(gold="gold"),
        res.plot.valid(),
        res.plot.cost(),
        res.plot.latency(),
        res.plot.strategies(gold="gold"),
    ):
        assert isinstance(fig, Figure) and fig.axes
    # a new figure each call: restyling one does not touch the next
    first = res.plot.cost()
    first.axes[0].set_title("mine")
    assert "mine" not in texts(res.plot.cost())


def test_the_heatmap_shows_the_agreement_matrix(res: Any) -> None:
    matrix = res.agreement_matrix()
    fig = res.plot.agreement()
    drawn = fig.axes[0].collections[0].get_array()
    n = len(matrix)
    values = drawn.filled(math.nan).reshape(n, n)
    pd.testing.assert_frame_equal(
        pd.DataFrame(values, index=matrix.index, columns=matrix.columns), matrix
    )
    shown = texts(fig)
    for a in PANEL:
        for b in PANEL:
            if a != b:
                assert f"{matrix.loc[a, b]:.0%}" in shown


def test_pairs_that_never_both_answered_are_n_a_not_0(res: Any) -> None:
    fig = figures.heatmap(["a", "b"], [[1.0, math.nan], [math.nan, 1.0]], title="t")
    assert texts(fig).count("n/a") == 2 and "0%" not in texts(fig)
    cells = fig.axes[0].collections[0].get_array()
    assert cells.mask.tolist() == [[False, True], [True, False]]  # grey, not the colour of 0


def test_the_bars_are_the_per_model_numbers(res: Any) -> None:
    calls = made(res)
    gold = {
        r: answer_key(g) for r, g in zip(res.consensus["row"], res.consensus["gold"], strict=True)
    }
    right = {
        m: sum(answer_key(res.answers.at[r, m]) == g for r, g in gold.items()) / len(gold)
        for m in PANEL
    }
    assert widths(res.plot.accuracy(gold="gold")) == pytest.approx(right)
    valid = calls.groupby("model")["valid"].mean().to_dict()
    assert widths(res.plot.valid()) == pytest.approx(valid)
    cost = res.plot.cost()
    assert widths(cost) == pytest.approx(calls.groupby("model")["cost_usd"].sum().to_dict())
    assert cost.axes[0].get_xlabel() == "cost (USD)"
    latency = res.plot.latency()
    assert widths(latency) == pytest.approx(calls.groupby("model")["latency_s"].median().to_dict())
    assert latency.axes[0].get_xlabel() == "latency (s)"


def test_gold_may_be_a_column_a_series_or_a_list(res: Any) -> None:
    by_name = widths(res.plot.accuracy(gold="gold"))
    series = res.consensus.set_index("row")["gold"]
    assert widths(res.plot.accuracy(gold=series)) == by_name
    assert widths(res.plot.accuracy(gold=list(series))) == by_name


def test_the_scatter_puts_each_model_at_its_cost_and_accuracy(res: Any) -> None:
    fig = res.plot.cost_accuracy(gold="gold")
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("cost per row (USD)")
    points = [tuple(p) for c in ax.collections for p in c.get_offsets()]
    rows = len(res.consensus)
    calls = made(res)
    accuracy = widths(res.plot.accuracy(gold="gold"))
    for m in PANEL:
        cost = calls.loc[calls["model"] == m, "cost_usd"].sum() / rows
        assert any(p == pytest.approx((cost, accuracy[m])) for p in points), m
    assert len(points) == len(PANEL) + 1  # and the consensus


def test_an_unknown_cost_is_left_out_not_drawn_as_0(res: Any) -> None:
    unpriced = res.outputs.copy()
    unpriced.loc[unpriced["model"] == "sim/budget-a", "cost_usd"] = math.nan
    run = type(res)(**{**vars(res), "outputs": unpriced})
    cost = run.plot.cost()
    assert set(widths(cost)) == {"sim/swift-mini", "sim/oracle-large"}  # no bar, not a 0 bar
    assert any(t.strip() == "unknown" for t in texts(cost))
    scatter = run.plot.cost_accuracy(gold="gold")
    xs = [p[0] for c in scatter.axes[0].collections for p in c.get_offsets()]
    assert len(xs) == len(PANEL) - 1 and 0.0 not in xs  # budget-a and the consensus: unknown
    assert any("unknown, not shown: sim/budget-a" in t for t in texts(scatter))


def test_a_chart_that_needs_gold_says_so_in_one_line(res: Any) -> None:
    with pytest.raises(ConfigError, match=r"res.plot.accuracy\(\) needs gold="):
        res.plot.accuracy(gold=None)
    with pytest.raises(ConfigError, match="'answer_key' is not a column") as err:
        res.plot.cost_accuracy(gold="answer_key")
    assert "\n" not in str(err.value) and "question" in str(err.value)
    with pytest.raises(ConfigError, match="has 2 answer"):
        res.plot.strategies(gold=["1", "2"])


# ----------------------------------------------------------------------- imports


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "NBTOOLKIT_SIM_TIME_SCALE": "0"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_matplotlib_loads_only_when_a_chart_is_drawn() -> None:
    out = run_python(
        "import sys\n"
        "import nbtoolkit as nbt\n"
        "seen = ['matplotlib' in sys.modules]\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "shell.run_line_magic('load_ext', 'nbtoolkit')\n"
        "seen.append('matplotlib' in sys.modules)\n"
        "res = nbt.orchestrate('What is 2+2?', ['sim/swift-mini', 'sim/budget-a'], audit=False)\n"
        "charts = res.plot\n"
        "seen.append('matplotlib' in sys.modules)\n"
        "charts.agreement()\n"
        "seen.append('matplotlib' in sys.modules)\n"
        "seen.append('matplotlib.pyplot' in sys.modules)\n"
        "print(seen)"
    )
    # import, %load_ext, a run and the accessor: none; a chart: matplotlib, never pyplot
    assert out == "[False, False, False, True, False]"


# ------------------------------------------------------------------------ reports


def report_html(res: Any) -> str:
    r = rs.Report(res, gold="gold")
    return "".join(
        s._repr_html_() for s in (r.workflow(), r.optimisation(), r.key_questions(), r.strategies())
    )


def test_a_report_embeds_the_figures_as_inline_svg_with_nothing_to_fetch(res: Any) -> None:
    page = report_html(res)
    drawings = re.findall(r"<svg\b.*?</svg>", page, re.S)
    charts = [d for d in drawings if 'class="nbtoolkit-figure"' in d]
    assert len(charts) == 4  # latency, cost/accuracy, agreement, strategies
    assert len(drawings) == 5  # and the workflow diagram
    for drawing in drawings:
        # xmlns names a namespace, it is never fetched; anything else with a URL would be
        without_namespaces = re.sub(r'\sxmlns(:\w+)?="[^"]*"', "", drawing)
        assert not re.search(r"https?:", without_namespaces), without_namespaces[:300]
        assert "<image" not in drawing and "<?xml" not in drawing and "<!DOCTYPE" not in drawing
    assert "latency (s)" in page and "cost per row (USD)" in page


def test_the_same_run_gives_the_same_figure_bytes(res: Any) -> None:
    assert figures.svg(res.plot.agreement()) == figures.svg(res.plot.agreement())
    assert report_html(res) == report_html(res)


def test_a_chart_shows_itself_in_a_notebook_without_pyplot(res: Any) -> None:
    from IPython.core.formatters import DisplayFormatter

    bundle, _ = DisplayFormatter().format(res.plot.latency())
    assert bundle["image/png"][:4] == b"\x89PNG"
