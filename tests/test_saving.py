"""A run kept on disk and compared with another: res.save, nbt.load, nbt.compare, to_excel."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from pydantic import BaseModel

import nbtoolkit as nbt
from nbtoolkit.errors import ConfigError
from nbtoolkit.providers import sim

MODELS = ["sim/oracle-large", "sim/swift-mini", "sim/budget-a"]
BANK = pd.DataFrame(sim.question_bank()).head(6)
# A column named by an int: saved and loaded as the int, not the text "0".
QUESTIONS = (
    BANK[["question"]].assign(gold=BANK["answer"], **{"0": list("abcdef")}).rename(columns={"0": 0})
)


def run(models: list[str] = MODELS, **options: object) -> nbt.RunResult:
    return nbt.orchestrate(
        "{question}\nAnswer with a number.",
        models,
        data=QUESTIONS,
        extract="number",
        audit=False,
        cache="off",
        progress="none",
        **options,  # type: ignore[arg-type]
    )


def assert_same(a: nbt.RunResult, b: nbt.RunResult) -> None:
    for name in ("outputs", "consensus", "strategy_calls", "field_agreement"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert a.meta == b.meta
    for attr in ("run_id", "models", "strategy", "prompt", "wall_s", "cancelled", "simulated"):
        assert getattr(a, attr) == getattr(b, attr)
    assert a.warnings == b.warnings
    assert a.input_columns == b.input_columns


def test_save_and_load_give_back_an_equal_result(tmp_path: Path) -> None:
    res = run(samples=2)
    folder = res.save(tmp_path / "run.nbt")
    back = nbt.load(folder)
    assert_same(res, back)
    # What a user does with a result works on the loaded one: totals, reprs, rescore.
    assert back.totals() == res.totals()
    assert repr(back) == repr(res)
    pd.testing.assert_frame_equal(nbt.rescore(back, "weighted"), nbt.rescore(res, "weighted"))
    cal = nbt.calibrate(back, gold="gold")
    assert cal.recommendation is not None


def test_a_saved_run_opens_in_plain_pandas(tmp_path: Path) -> None:
    res = run()
    res.save(tmp_path / "run.nbt")
    outputs = pd.read_json(tmp_path / "run.nbt" / "outputs.jsonl", lines=True)
    assert len(outputs) == len(res.outputs)
    assert list(outputs.columns) == list(res.outputs.columns)  # named, not 0, 1, 2...
    assert outputs["model"].tolist() == res.outputs["model"].tolist()
    consensus = pd.read_json(tmp_path / "run.nbt" / "consensus.jsonl", lines=True)
    assert list(consensus.columns) == [str(c) for c in res.consensus.columns]
    record = json.loads((tmp_path / "run.nbt" / "result.json").read_text())
    assert record["models"] == MODELS and record["format"].startswith("nbtoolkit-run/")


class Answer(BaseModel):
    answer: int


def test_structured_answers_and_failures_round_trip(tmp_path: Path) -> None:
    res = nbt.orchestrate(
        "{question}",
        ["sim/oracle-large", "sim/coin-flip"],
        data=QUESTIONS,
        schema=Answer,
        audit=False,
        cache="off",
        progress="none",
    )
    back = nbt.load(res.save(tmp_path / "s.nbt"))
    assert_same(res, back)
    assert isinstance(back.outputs["answer"][0], Answer)


def test_save_refuses_to_overwrite_and_load_names_what_is_wrong(tmp_path: Path) -> None:
    res = run()
    res.save(tmp_path / "run.nbt")
    with pytest.raises(ConfigError, match="overwrite=True"):
        res.save(tmp_path / "run.nbt")
    res.save(tmp_path / "run.nbt", overwrite=True)
    with pytest.raises(ConfigError, match="not a saved run"):
        nbt.load(tmp_path)
    (tmp_path / "run.nbt" / "consensus.jsonl").unlink()
    with pytest.raises(ConfigError, match="consensus.jsonl is missing"):
        nbt.load(tmp_path / "run.nbt")


def test_compare_two_runs_that_differ_in_one_model() -> None:
    before = run(MODELS)
    after = run([MODELS[0], MODELS[1], "sim/coin-flip"])
    diff = nbt.compare(before, after)
    assert diff.models_added == ["sim/coin-flip"] and diff.models_removed == ["sim/budget-a"]
    assert list(diff.frame.columns[:4]) == ["row", "answer_before", "answer_after", "changed"]
    assert len(diff.frame) == len(QUESTIONS)
    # changed is by value, row by row, exactly where the consensus answers differ
    expected = [
        str(x) != str(y)
        for x, y in zip(before.consensus["answer"], after.consensus["answer"], strict=True)
    ]
    assert diff.frame["changed"].tolist() == expected
    assert set(diff.model_changes) == {MODELS[0], MODELS[1]}
    assert "+sim/coin-flip" in repr(diff) and "nbtoolkit-compare" in diff._repr_html_()
    same = nbt.compare(before, before)
    assert not same.frame["changed"].any() and "answers changed on 0 of 6" in repr(same)


def test_compare_refuses_runs_of_different_rows() -> None:
    short = nbt.orchestrate("What is 2+2?", MODELS, extract="number", audit=False, progress="none")
    with pytest.raises(ConfigError, match="same rows"):
        nbt.compare(run(), short)


def test_to_excel_writes_the_frames(tmp_path: Path) -> None:
    pytest.importorskip("openpyxl")
    res = run()
    res.to_excel(tmp_path / "run.xlsx")
    sheets = pd.read_excel(tmp_path / "run.xlsx", sheet_name=None)
    assert set(sheets) == {"consensus", "outputs", "per_model", "run"}
    assert len(sheets["outputs"]) == len(res.outputs)
    assert sheets["run"]["run"][0].startswith("RunResult:")
    assert not math.isnan(float(sheets["consensus"]["confidence"][0]))
