"""orchestrate() end to end on offline models and litellm's mock_response: no network."""

from __future__ import annotations

import asyncio
import json
import math

import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit.errors import (
    ConfigError,
    ExtractorError,
    MissingAPIKeyError,
    ModelError,
    RunFailedError,
    StrategyError,
    TemplateError,
)
from nbtoolkit.providers import sim
from nbtoolkit.results import CONSENSUS_COLUMNS, OUTPUT_COLUMNS

from .conftest import CANARY_KEY

PANEL = ["sim/oracle-large", "sim/swift-mini", "sim/budget-a"]


@pytest.fixture
def questions() -> pd.DataFrame:
    return pd.DataFrame(sim.question_bank()[:6]).rename(columns={"answer": "gold"})


def test_one_row_per_row_model_sample_with_contract_columns(questions: pd.DataFrame) -> None:
    res = nbt.orchestrate(
        "{question}\nAnswer in JSON.",
        PANEL,
        data=questions,
        extract=["json:answer", "number"],
        samples=2,
    )
    assert list(res.outputs.columns) == OUTPUT_COLUMNS
    keys = res.outputs[["row", "model", "sample"]].apply(tuple, axis=1)
    assert len(keys) == 6 * 3 * 2 and keys.is_unique
    assert list(res.consensus.columns) == [
        "id",
        "question",
        "gold",
        *CONSENSUS_COLUMNS,
        "low_confidence",
        "note",
        "calibrated",
    ]
    assert res.consensus.index.equals(questions.index)
    assert res.consensus["strategy"].eq("vote").all()
    assert res.consensus["confidence"].between(0, 1).all()


def test_consensus_is_mostly_right_on_the_simulated_bank() -> None:
    bank = pd.DataFrame(sim.question_bank()).rename(columns={"answer": "gold"})
    res = nbt.orchestrate(
        "{question}",
        ["sim/oracle-large", "sim/steady-medium", "sim/swift-mini"],
        data=bank,
        extract=["json:answer", "number"],
        seed=7,
    )
    right = (res.consensus["answer"] == res.consensus["gold"].astype(str)).mean()
    assert right >= 0.85


def test_input_column_named_answer_is_kept_beside_the_consensus() -> None:
    data = pd.DataFrame({"q": ["What is 2+2?"], "answer": ["4"]})
    res = nbt.orchestrate("{q}", ["sim/swift-mini"], data=data)
    assert "answer_input" in res.consensus.columns and "answer" in res.consensus.columns


def test_same_seed_same_frames_and_simulated_label(questions: pd.DataFrame) -> None:
    kwargs = dict(data=questions, extract=["json:answer", "number"], seed=3, temperature=0)
    a = nbt.orchestrate("{question}", PANEL, **kwargs)
    b = nbt.orchestrate("{question}", PANEL, **kwargs)
    cols = ["row", "model", "sample", "output", "answer", "valid", "prompt_tokens", "cost_usd"]
    pd.testing.assert_frame_equal(a.outputs[cols], b.outputs[cols])
    assert a.simulated == PANEL
    assert "simulated" in repr(a) and "simulated" in a._repr_html_().lower()


def test_variables_fill_the_prompt_when_there_is_no_data() -> None:
    from nbtoolkit.providers import sim

    question = sim.question_bank()[0]["question"]
    res = nbt.orchestrate("{q}", ["sim/swift-mini"], variables={"q": question}, extract="number")
    assert len(res.outputs) == 1 and len(res.consensus) == 1
    assert res.outputs["valid"].iloc[0]  # the filled prompt is the bank question: answered


def test_mock_response_goes_through_litellm_with_real_cost(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    models = [
        nbt.Model("gpt-4o-mini", extra={"mock_response": "The answer is (C)"}),
        nbt.Model("gpt-4o", extra={"mock_response": "Answer: B"}),
        nbt.Model("gpt-4.1-mini", name="third", extra={"mock_response": "(C)"}),
    ]
    res = nbt.orchestrate("Pick one: (A) x (B) y (C) z", models, extract="choice")
    assert res.outputs["answer"].tolist() == ["C", "B", "C"]
    assert res.consensus["answer"].iloc[0] == "C"
    assert res.consensus["agreement"].iloc[0] == pytest.approx(2 / 3)
    assert (res.outputs["cost_usd"] > 0).all()
    assert res.outputs["prompt_tokens"].notna().all()


def test_unknown_price_is_nan_never_zero(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    model = nbt.Model("openai/my-finetune-xyz", extra={"mock_response": "ok"})
    res = nbt.orchestrate("hi", [model])
    assert math.isnan(res.outputs["cost_usd"].iloc[0])
    assert math.isnan(res.consensus["cost_usd"].iloc[0])
    assert math.isnan(res.totals()["cost_usd"])


def test_missing_api_key_names_the_variable_before_any_call(monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="ANTHROPIC_API_KEY"):
        nbt.orchestrate("hi", ["sim/swift-mini", "claude-3-5-haiku-20241022"])
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="MY_KEY"):
        nbt.orchestrate("hi", [nbt.Model("gpt-4o-mini", api_key_env="MY_KEY")])


def test_every_missing_key_is_named_at_once(monkeypatch) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(MissingAPIKeyError) as missing:
        nbt.orchestrate("hi", ["sim/oracle-large", "gpt-4o-mini", "claude-haiku-4-5"])
    assert "OPENAI_API_KEY" in str(missing.value) and "ANTHROPIC_API_KEY" in str(missing.value)


def test_works_inside_a_running_event_loop() -> None:
    async def in_a_kernel() -> nbt.RunResult:
        return nbt.orchestrate("What is 2+2?", ["sim/swift-mini"])

    res = asyncio.run(in_a_kernel())
    assert len(res.outputs) == 1


def test_async_twin() -> None:
    res = asyncio.run(nbt.aorchestrate("What is 2+2?", PANEL))
    assert len(res.outputs) == 3


def test_every_call_failed_raises_with_the_frames(monkeypatch, tmp_path) -> None:
    rec = tmp_path / "r.jsonl"
    rec.write_text(json.dumps({"model": "m", "prompt": "other", "output": "x"}) + "\n")
    with pytest.raises(RunFailedError, match="every call failed") as info:
        nbt.orchestrate("hi", ["replay/m"], recordings=rec)
    result = info.value.result
    assert result is not None and "no recording of replay/m" in result.outputs["error"].iloc[0]


def test_one_model_failing_leaves_the_others(tmp_path) -> None:
    rec = tmp_path / "r.jsonl"
    rec.write_text(json.dumps({"model": "m", "prompt": "nothing like it", "output": "x"}) + "\n")
    from nbtoolkit.providers import sim

    question = str(sim.question_bank()[0]["question"])
    res = nbt.orchestrate(question, ["sim/swift-mini", "replay/m"], recordings=rec)
    by_model = res.outputs.set_index("model")
    assert pd.isna(by_model.loc["replay/m", "output"])
    assert (
        "replay/m" in by_model.loc["replay/m", "error"]
        and question[:20] in by_model.loc["replay/m", "error"]
    )
    assert by_model.loc["sim/swift-mini", "valid"]
    assert any("1 of 2 calls failed" in w for w in res.warnings)
    with pytest.raises(RunFailedError, match="strict=True"):
        nbt.orchestrate(question, ["sim/swift-mini", "replay/m"], recordings=rec, strict=True)


def test_replay_gets_tokens_and_price_from_litellm_when_known(tmp_path) -> None:
    rec = tmp_path / "r.jsonl"
    lines = [
        {"model": "gpt-4o-2024-08-06", "prompt": "Q", "output": "42"},
        {"model": "my-own-model", "prompt": "Q", "output": "41"},
        {
            "model": "priced",
            "prompt": "Q",
            "output": "40",
            "prompt_tokens": 5,
            "completion_tokens": 1,
            "cost_usd": 0.5,
        },
    ]
    rec.write_text("".join(json.dumps(x) + "\n" for x in lines))
    res = nbt.orchestrate(
        "Q", ["replay/gpt-4o-2024-08-06", "replay/my-own-model", "replay/priced"], recordings=rec
    )
    out = res.outputs.set_index("model")
    assert out.loc["replay/gpt-4o-2024-08-06", "cost_usd"] > 0
    assert out.loc["replay/gpt-4o-2024-08-06", "prompt_tokens"] > 0
    assert math.isnan(out.loc["replay/my-own-model", "cost_usd"])
    assert pd.isna(out.loc["replay/my-own-model", "prompt_tokens"])
    assert out.loc["replay/priced", "cost_usd"] == 0.5


def test_recordings_from_environment_variable(tmp_path, monkeypatch) -> None:
    rec = tmp_path / "r.jsonl.gz"
    import gzip

    with gzip.open(rec, "wt") as fh:
        fh.write(json.dumps({"model": "m", "prompt": "Q", "output": "yes"}) + "\n")
    monkeypatch.setenv("NBTOOLKIT_RECORDINGS", str(rec))
    assert nbt.orchestrate("Q", ["replay/m"]).outputs["output"].iloc[0] == "yes"


# --- bad input: one clear line, nothing written ------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        (dict(models=[]), ModelError, "models is empty"),
        (
            dict(models=["totally-unknown-model"]),
            ModelError,
            "unknown model 'totally-unknown-model'",
        ),
        (dict(models=["sim/no-such-profile"]), ModelError, "Known: sim/"),
        (dict(extract="numbr"), ExtractorError, "unknown extract='numbr'"),
        (dict(prompt="Hi {nobody}"), TemplateError, "{nobody}"),
        (dict(data=[{"q": 1}]), ConfigError, "must be a pandas DataFrame"),
        (dict(concurrency=0), ConfigError, "concurrency=0"),
        (dict(concurrency=-4), ConfigError, "concurrency=-4"),
        (dict(strategy="votee"), StrategyError, "unknown strategy 'votee'"),
        (dict(cache="sometimes"), ConfigError, "cache='sometimes'"),
        (dict(temprature=0), ModelError, "unknown keyword argument 'temprature'"),
        (dict(samples=0), ConfigError, "samples=0"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(kwargs, error, words, tmp_path) -> None:
    args = {"prompt": "Hi", "models": ["sim/swift-mini"], **kwargs}
    with pytest.raises(error) as info:
        nbt.orchestrate(args.pop("prompt"), args.pop("models"), **args)
    assert words in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "nbtoolkit-cache").exists()


@pytest.mark.parametrize(
    ("field", "raw", "words"),
    [
        ("prompt_tokens", "-5", "'prompt_tokens' is -5; it must be a finite number >= 0"),
        ("latency_s", "NaN", "'latency_s' is nan; it must be a finite number >= 0"),
        ("cost_usd", "Infinity", "'cost_usd' is inf"),
        ("completion_tokens", "2.5", "a token count is a whole number"),
    ],
)
def test_recordings_with_impossible_usage_are_refused(tmp_path, field, raw, words) -> None:
    """Each was accepted and replayed into totals (a negative cost, a NaN mean latency)."""
    rec = tmp_path / "bad.jsonl"
    rec.write_text(f'{{"model": "m", "prompt": "Q", "output": "4", "{field}": {raw}}}\n')
    with pytest.raises(nbt.RecordingsError, match=r"bad.jsonl:1: ") as info:
        nbt.orchestrate("Q", ["replay/m"], recordings=rec, audit=False)
    assert words in str(info.value)


def test_malformed_recordings_line_names_file_and_line(tmp_path) -> None:
    rec = tmp_path / "bad.jsonl"
    rec.write_text('{"model": "m", "prompt": "Q", "output": "a"}\n{"model": "m", "prompt": \n')
    with pytest.raises(nbt.RecordingsError, match=r"bad.jsonl:2: not valid JSON"):
        nbt.orchestrate("Q", ["replay/m"], recordings=rec)
    rec.write_text('{"model": "m", "prompt": "Q"}\n')
    with pytest.raises(nbt.RecordingsError, match=r"bad.jsonl:1: 'output' must be a string"):
        nbt.orchestrate("Q", ["replay/m"], recordings=rec)
    assert not (tmp_path / "nbtoolkit-cache").exists()


def test_replay_model_not_in_recordings_lists_what_is(tmp_path) -> None:
    rec = tmp_path / "r.jsonl"
    rec.write_text(json.dumps({"model": "alpha", "prompt": "Q", "output": "a"}) + "\n")
    with pytest.raises(ModelError, match="They hold: alpha"):
        nbt.orchestrate("Q", ["replay/beta"], recordings=rec)


def test_replay_miss_is_not_retried(tmp_path) -> None:
    rec = tmp_path / "r.jsonl"
    rec.write_text(json.dumps({"model": "m", "prompt": "other", "output": "x"}) + "\n")
    res = nbt.orchestrate("Q", ["sim/swift-mini", "replay/m"], recordings=rec)
    row = res.outputs.set_index("model").loc["replay/m"]
    assert row["attempts"] == 1
    assert row["error"].startswith(
        "CallError: no recording of replay/m for the prompt starting 'Q'"
    )
