"""Reports and calibrated confidence (issue 14): the Key questions say which rows to trust at a
target error, and a calibrated run keeps its strategy through its record (save/load, report,
re-run)."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit.calibration import rescore
from nbtoolkit.providers import sim
from nbtoolkit.report import sections as rs
from nbtoolkit.strategies import Calibrated, Vote

PROMPT = "Case {case}.\n{question}\nReason briefly, then reply as JSON with an 'answer' field."
EXTRACT = ["json:answer", "number"]
PANEL = ["sim/steady-medium", "sim/swift-mini", "sim/budget-a", "sim/budget-b", "sim/coin-flip"]


def _data(cases: range) -> pd.DataFrame:
    bank = pd.DataFrame(sim.question_bank())
    bank["gold"] = bank.pop("answer")
    return pd.concat([bank.assign(case=k) for k in cases], ignore_index=True)


def _run(cases: range, *, gold: bool = True, **kw: Any) -> Any:
    data = _data(cases) if gold else _data(cases).drop(columns="gold")
    return nbt.orchestrate(PROMPT, PANEL, data=data, extract=EXTRACT, seed=0, audit=False, **kw)


@pytest.fixture(scope="module")
def labelled() -> Any:
    os.environ["NBTOOLKIT_SIM_TIME_SCALE"] = "0"
    return _run(range(5))  # 200 rows with gold


@pytest.fixture(scope="module")
def cal(labelled: Any) -> Any:
    return nbt.calibrate(labelled, gold="gold")


@pytest.fixture(scope="module")
def calibrated_run(cal: Any) -> Any:
    # New rows, no gold: what a reviewer gets in production.
    return _run(range(5, 8), gold=False, strategy=cal.recommendation)


def text(section: Any) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", section._repr_html_()))


def rows_after(page: str, marker: str) -> list[int]:
    """The row numbers of the first table after ``marker``."""
    part = page[page.index(marker) :]
    body = part[part.index("<tbody>") : part.index("</tbody>")]
    return [int(r) for r in re.findall(r"<tr><td class='num'>(\d+)</td>", body)]


# --- Key questions: which rows to trust --------------------------------------------------------


def test_key_questions_name_the_rows_to_check_from_the_held_out_calibration(
    labelled: Any, cal: Any
) -> None:
    report = rs.Report(labelled, gold="gold", target_error=0.01)
    t = cal.threshold_for(0.01)
    assert 0 < t.rows < t.total_rows  # a threshold that keeps some rows and not others
    page = report.key_questions()._repr_html_()
    assert "Which rows can be trusted at 1% error?" in html.unescape(page)
    assert t.sentence in html.unescape(page)
    below = cal.held_out[cal.held_out["confidence"] < t.threshold]
    assert len(below) == t.total_rows - t.rows
    shown = rows_after(page, "The rows to check")
    # the least confident first, as many as the section shows
    expected = list(below.sort_values("confidence", kind="stable").index)[:25]
    assert shown == expected
    # the calibration section made the same calibration: computed once, shared
    assert report.calibrated() is report.calibrated()


def test_key_questions_of_a_calibrated_run_without_gold(cal: Any, calibrated_run: Any) -> None:
    t = cal.threshold_for(0.01)
    c = calibrated_run.consensus
    low = c[c["confidence"] < t.threshold]
    assert 0 < len(low) < len(c)
    words = " ".join(text(rs.Report(calibrated_run, target_error=0.01).key_questions()).split())
    assert (
        f"Here, {len(low)} of {len(c)} row(s) have confidence below {t.threshold:.3g}: "
        f"review them; on the other {len(c) - len(low)} expect about {t.error:.1%} to be wrong"
    ) in words
    assert t.sentence in words
    # and the assumptions no longer call the confidence a share of agreement
    assert "Confidence is a probability fitted by calibrate" in words
    assert "Confidence measures how much the panel agrees" not in words


def test_a_plain_run_without_gold_has_no_trust_paragraph() -> None:
    res = _run(range(1), gold=False)
    words = text(rs.Report(res).key_questions())
    assert "Which rows can be trusted" not in words
    assert "Confidence measures how much the panel agrees" in words


# --- the calibrated strategy survives the record ------------------------------------------------


def test_a_calibrated_run_keeps_its_strategy_through_save_and_load(
    cal: Any, calibrated_run: Any, tmp_path: Path
) -> None:
    from nbtoolkit.strategies.records import of_run

    loaded = nbt.load(calibrated_run.save(tmp_path / "run.nbt"))
    used = of_run(loaded)
    assert isinstance(used, Calibrated) and repr(used) == repr(cal.recommendation)
    assert used.calibration == cal.recommendation.calibration
    # rescoring the loaded run gives its calibrated confidence, not the vote share
    again = rescore(loaded, used)
    assert again["calibrated"].all()
    assert again["confidence"].tolist() == loaded.consensus["confidence"].tolist()
    # a re-run with the rebuilt strategy gives the same numbers, the auto threshold too
    first = _run(
        range(5, 8), gold=False, strategy=cal.recommendation, confidence_threshold="auto:0.05"
    )
    rerun = _run(range(5, 8), gold=False, strategy=used, confidence_threshold="auto:0.05")
    pd.testing.assert_frame_equal(first.consensus, rerun.consensus)
    # and the report built from the loaded run says which confidence it has
    summary = text(rs.Report(loaded).executive_summary())
    assert "Its confidence is a probability fitted by calibrate" in summary
    assert f"{cal.recommendation.calibration.ece():.3f}" in summary


def test_what_if_replays_use_the_recorded_weights(cal: Any) -> None:
    from nbtoolkit.report.replay import restricted
    from nbtoolkit.strategies import Weighted

    # weights far from Model(weight=1.0): the coin flip outvotes the rest
    weights = {m: (10.0 if m == "sim/coin-flip" else 1.0) for m in PANEL}
    weighted = Calibrated(Weighted(weights=weights), cal.confidence_model, cal.measured)
    res = _run(range(5, 8), gold=False, strategy=weighted)
    assert res.strategy == "weighted"
    consensus = res.consensus["answer"].tolist()
    # the plain vote would answer some rows differently: the weights matter here
    assert rescore(res, Vote())["answer"].tolist() != consensus
    # the report's what-if replays (drop a model) start from the run's own strategy
    assert rescore(res, restricted(res, res.models))["answer"].tolist() == consensus


def test_the_report_appendix_shows_the_record_in_one_line(calibrated_run: Any) -> None:
    page = text(rs.Report(calibrated_run).appendix())
    assert "strategy_record" in page and f"calibrated {calibrated_run.strategy}(" in page
    assert "held-out rows" in page and "confidence_model" not in page


def test_a_strategy_that_cannot_be_recorded_says_none() -> None:
    from nbtoolkit.strategies.records import of_run

    class Loudest:
        name = "loudest"

        def __init__(self, secret_state: object = None) -> None:
            self._state = secret_state

        def combine(self, candidates: Any) -> Any:
            return Vote().combine(candidates)

    res = nbt.orchestrate("What is 2+2?", ["sim/swift-mini"], strategy=Loudest(), audit=False)
    assert res.meta["strategy_record"] is None and of_run(res) is None


def test_every_built_in_strategy_is_rebuilt_from_its_record() -> None:
    import json

    from nbtoolkit.strategies import Cascade, FirstValid, Medoid, Weighted
    from nbtoolkit.strategies.records import from_record, to_record

    for strategy in (
        Vote(),
        Vote(models=["a", "b"]),
        Weighted(weights={"a": 2.0, "b": 0.0}),
        Cascade(order=["b", "a"], threshold=0.6, share=True),
        FirstValid(models=["b"]),
        Medoid(close=0.4),
    ):
        record = to_record(strategy)
        assert record is not None, strategy
        rebuilt = from_record(json.loads(json.dumps(record)))  # as a saved run reads it back
        assert type(rebuilt) is type(strategy) and vars(rebuilt) == vars(strategy)


def test_the_report_states_the_threshold_the_run_flagged_rows_by(cal: Any, tmp_path: Path) -> None:
    res = _run(
        range(5, 6), gold=False, strategy=cal.recommendation, confidence_threshold="auto:0.01"
    )
    threshold = cal.threshold_for(0.01).threshold
    assert (res.consensus["low_confidence"] == (res.consensus["confidence"] < threshold)).all()
    loaded = nbt.load(res.save(tmp_path / "run.nbt"))
    words = " ".join(text(rs.Report(loaded).validation()).split())
    assert f"rows whose consensus confidence is below {threshold:g} are flagged" in words
    # a template gives its own, as before
    words = " ".join(text(rs.Report(loaded, confidence_threshold=0.3).validation()).split())
    assert "below 0.3 are flagged" in words


def test_a_target_error_outside_0_to_1_is_one_line(
    labelled: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(nbt.ConfigError, match=r"^target_error=5 is not an error rate between"):
        rs.Report(labelled, gold="gold", target_error=5)
    from nbtoolkit.cli import main

    out = tmp_path / "x.ipynb"
    code = main(["report", "batch_eval", "-p", "target_error", "5", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "parameter 'target_error': 5.0 is not an error rate between 0 and 1" in err
    assert not out.exists()
