"""Calibrated confidence (issue 14): ``calibrate`` fits a confidence model by cross-validation,
never scores it on rows it was fitted on, and its recommendation gives probabilities on new
rows. Offline: a synthetic panel of simulated models; the GSM8K figures are in
test_recorded_replay.py."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit import reliability
from nbtoolkit.calibration import calibrate, rescore
from nbtoolkit.providers import sim
from nbtoolkit.strategies import Calibrated, Judge, Vote

PROMPT = "Case {case}.\n{question}\nReason briefly, then reply as JSON with an 'answer' field."
EXTRACT = ["json:answer", "number"]
# No oracle: a panel that is often wrong, so confidence has something to sort.
PANEL = ["sim/steady-medium", "sim/swift-mini", "sim/budget-a", "sim/budget-b", "sim/coin-flip"]


def _data(cases: range) -> pd.DataFrame:
    # The sim bank has 40 questions; "Case k" makes each copy a fresh draw for every model.
    bank = pd.DataFrame(sim.question_bank())
    bank["gold"] = bank.pop("answer")
    return pd.concat([bank.assign(case=k) for k in cases], ignore_index=True)


def _run(cases: range, **kw: Any) -> Any:
    return nbt.orchestrate(
        PROMPT, PANEL, data=_data(cases), extract=EXTRACT, seed=0, audit=False, **kw
    )


@pytest.fixture(scope="module")
def panel() -> Any:
    return _run(range(8))  # 320 rows


@pytest.fixture(scope="module")
def cal(panel: Any) -> Any:
    return calibrate(panel, gold="gold")


# --- never scored on the rows it was fitted on ------------------------------------------------


def test_each_fold_model_is_fitted_without_its_test_rows(cal: Any) -> None:
    held = cal.held_out
    assert sorted(held.index) == list(range(320))  # every row scored once, held out
    assert len(cal.fold_models) == 5
    for k, model in enumerate(cal.fold_models):
        test = set(held.index[held["fold"] == k])
        assert test and not (set(model.rows) & test)
        assert set(model.rows) | test == set(range(320))  # the rest, all of it


def test_poisoned_labels_change_held_out_scores_only_through_the_rows_fitted_on(
    panel: Any, cal: Any
) -> None:
    fold0 = cal.held_out.index[cal.held_out["fold"] == 0]
    gold = panel.consensus["gold"].copy()
    gold.iloc[fold0] = -123456  # every fold-0 label now says "wrong"
    poisoned = calibrate(panel, gold=gold)
    assert repr(poisoned.recommendation) == repr(cal.recommendation)  # same family chosen
    before, after = cal.held_out, poisoned.held_out
    # Fold 0 is scored by a model fitted on folds 1-4, whose labels did not change.
    assert after.loc[fold0, "confidence"].tolist() == before.loc[fold0, "confidence"].tolist()
    assert not after.loc[fold0, "correct"].any()
    # Folds 1-4 were fitted on the poisoned fold: their scores move.
    rest = before.index.difference(fold0)
    moved = (after.loc[rest, "confidence"] - before.loc[rest, "confidence"]).abs()
    assert (moved > 1e-6).mean() > 0.5


# --- better calibrated than the vote share, and shown ------------------------------------------


def test_calibrated_confidence_beats_the_vote_share_held_out(cal: Any) -> None:
    assert cal.ece < 0.06 and cal.ece < cal.strategy_ece / 2, (cal.ece, cal.strategy_ece)
    table = cal.reliability()
    assert list(table.columns) == ["bin", "low", "high", "mean_confidence", "accuracy", "rows"]
    assert len(table) == 10 and table["rows"].sum() == 320
    _, top = cal.measured.error_at(0.8)
    _, everything = cal.measured.error_at(1.0)
    assert top <= 0.6 * everything, (top, everything)
    # held-out accuracy is the recommended candidate's, as the candidates table says
    best = cal.candidates["accuracy"].max()
    assert cal.held_out["correct"].mean() == pytest.approx(best)


def test_repr_shows_ece_threshold_in_words_and_paired_test(cal: Any) -> None:
    text = repr(cal)
    assert f"expected calibration error {cal.ece:.3f}" in text
    sentence = str(cal.threshold_for(0.05))
    assert sentence in text and html.escape(sentence) in cal._repr_html_()
    assert "exact McNemar p = " in text and "McNemar" in cal._repr_html_()
    t = cal.threshold_for(0.05)
    kept = cal.held_out["confidence"] >= t.threshold
    assert kept.mean() == pytest.approx(t.kept)
    assert 1 - cal.held_out.loc[kept, "correct"].mean() <= 0.05


# --- the recommendation carries it to new rows -------------------------------------------------


def test_recommendation_gives_calibrated_confidence_on_new_rows(cal: Any) -> None:
    rec = cal.recommendation
    assert isinstance(rec, Calibrated)
    new = _run(range(8, 10), strategy=rec)
    plain = _run(range(8, 10), strategy=rec.strategy)
    # same answers, same calls; only the confidence changes, and the frame says which it is
    assert new.consensus["answer"].tolist() == plain.consensus["answer"].tolist()
    assert new.outputs["error"].isna().tolist() == plain.outputs["error"].isna().tolist()
    assert new.consensus["calibrated"].all() and not plain.consensus["calibrated"].any()
    assert not np.allclose(new.consensus["confidence"], plain.consensus["confidence"])
    assert new.consensus["confidence"].between(0, 1).all()
    # rescore over the recorded answers gives the same calibrated confidence
    again = rescore(new, rec)
    assert again["calibrated"].all()
    assert np.allclose(again["confidence"].to_numpy(), new.consensus["confidence"].to_numpy())
    # and an uncalibrated strategy keeps today's meaning
    assert not rescore(new, Vote())["calibrated"].any()
    assert list(new.consensus.columns[-3:]) == ["low_confidence", "note", "calibrated"]


def test_auto_threshold_comes_from_the_calibration(cal: Any) -> None:
    res = _run(range(8, 10), strategy=cal.recommendation, confidence_threshold="auto:0.05")
    threshold = cal.threshold_for(0.05).threshold
    c = res.consensus
    assert (c["low_confidence"] == (c["confidence"] < threshold)).all()
    percent = _run(range(8, 9), strategy=cal.recommendation, confidence_threshold="auto:5%")
    assert (
        percent.consensus["low_confidence"] == (percent.consensus["confidence"] < threshold)
    ).all()


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("auto:0.05", "carries no calibration"),
        ("auto:x", "'auto:<target error>'"),
        ("auto:1.5", "'auto:<target error>'"),
        ("auto", "'auto:<target error>'"),
    ],
)
def test_auto_threshold_mistakes_are_one_line(value: str, words: str) -> None:
    with pytest.raises(nbt.ConfigError) as info:
        _run(range(1), strategy="vote", confidence_threshold=value)
    message = str(info.value)
    assert words in message and "\n" not in message and repr(value) in message, message


def test_a_judge_cannot_be_wrapped(cal: Any) -> None:
    with pytest.raises(nbt.StrategyError, match="panel's answers alone"):
        Calibrated(Judge(model="sim/oracle-large"), cal.confidence_model)


# --- the measures, by hand -------------------------------------------------------------------


def test_ece_reliability_and_selective_curve_by_hand() -> None:
    confidence = [0.95, 0.95, 0.95, 0.95, 0.55, 0.55]
    correct = [1, 1, 1, 0, 1, 0]
    # bin 0.9-1.0: |0.95 - 0.75| x 4/6; bin 0.5-0.6: |0.55 - 0.5| x 2/6
    assert reliability.expected_calibration_error(confidence, correct) == pytest.approx(
        0.2 * 4 / 6 + 0.05 * 2 / 6
    )
    curve = reliability.selective_curve(confidence, correct)
    assert curve["threshold"].tolist() == [0.95, 0.55]  # ties are kept or dropped together
    assert curve["rows"].tolist() == [4, 6]
    assert curve["error"].tolist() == pytest.approx([0.25, 2 / 6])
    t = reliability.threshold_for(confidence, correct, 0.3)
    assert (t.threshold, t.rows) == (0.95, 4)
    assert str(t).startswith("keep the 67% of rows with confidence >= 0.95 to stay under 30% error")
    assert "check every row" in str(reliability.threshold_for(confidence, correct, 0.1))
    assert reliability.threshold_for(confidence, correct, 0.1).threshold == 1.0
    assert str(reliability.threshold_for(confidence, correct, 0.5)).startswith("keep all 6 rows")


def test_mcnemar_is_the_exact_binomial() -> None:
    a = [1] * 10 + [0] * 2 + [1] * 5
    b = [0] * 10 + [1] * 2 + [1] * 5
    test = reliability.mcnemar(a, b, "panel", "best model")
    assert (test.wins, test.losses, test.rows) == (10, 2, 17)
    assert test.p_value == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert "p = 0.039" in str(test)
    # thousands of discordant rows: exact integers, no underflow
    big = reliability.mcnemar([1] * 2000 + [0] * 1000, [0] * 2000 + [1] * 1000)
    assert 0 < big.p_value < 1e-50 or big.p_value == 0.0
    assert reliability.mcnemar([1, 0], [1, 0]).p_value == 1.0


def test_confidence_model_survives_a_perfect_or_empty_panel() -> None:
    from nbtoolkit.confidence import ConfidenceModel

    perfect = ConfidenceModel.fit(
        [[1.0, 1.0, 3.0, 1.0, 1.0]] * 20, [True] * 20, accuracy={}, best="a", rows=range(20)
    )
    p = perfect.probability_of([1.0, 1.0, 3.0, 1.0, 1.0])
    assert p == pytest.approx(21 / 22, abs=1e-3)  # Platt's smoothed target, not 1
    empty = ConfidenceModel.fit([], [], accuracy={}, best="a", rows=[])
    assert empty.probability_of([0.5, 0.0, 2.0, 0.0, 2.0]) == pytest.approx(0.5)
    assert not math.isnan(p)


def test_rescore_replays_a_cascade_over_a_cascade_run() -> None:
    from nbtoolkit.strategies import Cascade

    cascade = Cascade(order=PANEL, threshold=2)
    res = _run(range(1), strategy=cascade)
    assert res.skipped_mask().any()  # some models were never asked
    again = rescore(res, cascade)  # used to fail: the skipped models were not in its plan
    assert again["answer"].tolist() == res.consensus["answer"].tolist()
    assert again["confidence"].tolist() == pytest.approx(res.consensus["confidence"].tolist())


def test_the_strategys_own_confidence_is_there_to_compare(cal: Any) -> None:
    own = cal.reliability(of="strategy")
    assert own["rows"].sum() == 320 and not own.equals(cal.reliability())
    assert cal.selective(of="strategy")["threshold"].max() <= 1.0
    with pytest.raises(ValueError, match="'calibrated' or 'strategy'"):
        cal.selective(of="vote")


def test_calibrate_reads_each_distinct_answer_once(
    panel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """calibrate replays every candidate strategy fold by fold and keys the same answers
    hundreds of thousands of times; reading a number (regexes, Fractions) happens once per
    distinct text (on the GSM8K recordings it took 4-8 s, reading 500,000 numbers)."""
    from nbtoolkit import answers

    reads = 0
    real = answers.value_of

    def counted(m: Any) -> Any:
        nonlocal reads
        reads += 1
        return real(m)

    monkeypatch.setattr(answers, "value_of", counted)
    again = calibrate(panel, gold="gold")
    texts = {str(a) for a in panel.outputs["answer"]} | {str(g) for g in panel.consensus["gold"]}
    assert reads <= len(texts), (reads, len(texts))
    # and the same result as before
    assert repr(again.recommendation) == repr(calibrate(panel, gold="gold").recommendation)
