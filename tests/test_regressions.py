"""Bugs found in review, each pinned by the behaviour a user would have seen."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit.cache import cache_dir
from nbtoolkit.strategies.cascade import Cascade
from nbtoolkit.strategies.judge import Judge
from nbtoolkit.testing import FakeOpenAIServer

from .conftest import CANARY_KEY


@pytest.fixture(autouse=True)
def _keys(monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_KEY", CANARY_KEY)


def local(server, model="local", **kw) -> nbt.Model:
    return nbt.Model(f"openai/{model}", api_base=server.base_url, api_key_env="LOCAL_KEY", **kw)


def test_a_fallback_never_goes_to_the_primarys_host() -> None:
    with (
        FakeOpenAIServer(reply="x", faults=lambda i, req: "500") as primary,
        FakeOpenAIServer(reply="backup") as other,
    ):
        model = local(primary, "vendor", fallbacks=[local(other, "backup")])
        res = nbt.orchestrate("hi", [model], retries=0)
        assert [r["model"] for r in primary.requests] == ["vendor"]
        assert [r["model"] for r in other.requests] == ["backup"]
    assert res.outputs["output"].iloc[0] == "backup"


def test_a_repaired_answer_survives_re_runs_and_replay() -> None:
    def reply(req):
        return "no idea" if len(req["messages"]) == 1 else "42"

    with FakeOpenAIServer(reply=reply) as server:
        runs = [
            nbt.orchestrate("What is 6*7?", [local(server)], extract="number", repair=1, cache=mode)
            for mode in ("use", "use", "replay-only")
        ]
        assert server.request_count == 2
    for res in runs:
        assert res.outputs["answer"].iloc[0] == "42" and res.outputs["valid"].iloc[0]


def test_any_api_key_env_value_is_redacted(monkeypatch) -> None:
    secret = "prod-credential-9f8e7d6c5b4a"
    monkeypatch.setenv("LLM_PROD_CRED", secret)

    def leak(req):
        raise RuntimeError(f"Invalid credentials Bearer {secret}")

    with FakeOpenAIServer(reply=leak) as server:
        model = nbt.Model("openai/x", api_base=server.base_url, api_key_env="LLM_PROD_CRED")
        with pytest.raises(nbt.RunFailedError) as info:
            nbt.orchestrate("hi", [model], retries=0)
    assert secret not in str(info.value) and "***" in str(info.value)
    assert secret not in (cache_dir() / "audit.jsonl").read_text()


def test_header_values_stay_out_of_the_log_and_the_manifest() -> None:
    with FakeOpenAIServer(reply="ok") as server:
        model = local(server, extra_headers={"Authorization": "Bearer sk-live-HEADER-SECRET"})
        res = nbt.orchestrate("hi", [model])
    assert "HEADER-SECRET" not in json.dumps(res.meta)
    assert "HEADER-SECRET" not in (cache_dir() / "audit.jsonl").read_text()
    with pytest.raises(nbt.ModelError, match="api_key_env"):
        nbt.Model("gpt-4o", extra={"api_key": "sk-live-abcdef"})


def test_copies_of_one_model_under_other_names_are_cached_apart() -> None:
    counter = iter(range(100))
    with FakeOpenAIServer(reply=lambda req: str(next(counter))) as server:
        panel = [local(server, "x", name=f"copy{i}", temperature=1) for i in range(3)]
        first = nbt.orchestrate("hi", panel, extract="number")
        again = nbt.orchestrate("hi", panel, extract="number")
    assert sorted(first.outputs["answer"]) == ["0", "1", "2"]
    assert again.outputs["answer"].tolist() == first.outputs["answer"].tolist()
    assert again.consensus["agreement"].iloc[0] == pytest.approx(1 / 3)


def test_a_fallbacks_answer_is_repaired_by_the_fallback_and_replayed() -> None:
    def backup_reply(req):
        return "no idea" if len(req["messages"]) == 1 else "42"

    with (
        FakeOpenAIServer(reply="x", faults=lambda i, req: "500") as primary,
        FakeOpenAIServer(reply=backup_reply) as other,
    ):
        model = local(primary, "p", fallbacks=[local(other, "b")])
        res = nbt.orchestrate("6*7?", [model], extract="number", repair=1, retries=0)
        assert primary.request_count == 1 and other.request_count == 2
        replay = nbt.orchestrate(
            "6*7?", [model], extract="number", repair=1, retries=0, cache="replay-only"
        )
        assert primary.request_count == 1 and other.request_count == 2
    for r in (res, replay):
        row = r.outputs.iloc[0]
        assert row["answer"] == "42" and row["error"].startswith("answered by fallback openai/b")


def test_the_judge_is_not_repaired_with_the_panels_format() -> None:
    bank = pd.DataFrame({"q": ["Pick: (A) or (B)?"] * 3})
    with FakeOpenAIServer(reply='{"choice": 1, "rationale": "first"}') as judge_server:
        res = nbt.orchestrate(
            "{q}",
            ["sim/coin-flip", "sim/swift-mini", "sim/budget-a"],
            data=bank,
            extract="choice",
            repair=1,
            strategy=Judge(model=local(judge_server, "judge")),
        )
        assert judge_server.request_count == len(res.strategy_calls)
    assert res.consensus["note"].isna().all()


def test_the_manifest_digests_the_real_cache_keys() -> None:
    with FakeOpenAIServer(reply="ok") as server:
        a = nbt.orchestrate("one", [local(server)])
        b = nbt.orchestrate("two", [local(server)])
    empty = hashlib.sha256(b"").hexdigest()
    assert (
        a.meta["cache_keys_sha256"] != empty
        and a.meta["cache_keys_sha256"] != b.meta["cache_keys_sha256"]
    )


def test_a_cascade_counts_answers_not_weights() -> None:
    from nbtoolkit.providers import sim

    bank = pd.DataFrame(sim.question_bank()[:10])
    panel = [
        nbt.Model(m, weight=0.5)
        for m in ("sim/oracle-large", "sim/steady-medium", "sim/swift-mini")
    ]
    res = nbt.orchestrate(
        "{question}",
        panel,
        data=bank,
        extract=["json:answer", "number"],
        strategy=Cascade(order=[m.id for m in panel], threshold=2),
    )
    assert len(res.skipped) > 0


def test_calibrate_takes_gold_as_a_numpy_array() -> None:
    from nbtoolkit.providers import sim

    bank = pd.DataFrame(sim.question_bank()[:10]).rename(columns={"answer": "gold"})
    res = nbt.orchestrate(
        "{question}",
        ["sim/oracle-large", "sim/swift-mini"],
        data=bank,
        extract=["json:answer", "number"],
    )
    by_name = nbt.calibrate(res, gold="gold", folds=2)
    by_array = nbt.calibrate(res, gold=bank["gold"].to_numpy(), folds=2)
    pd.testing.assert_frame_equal(by_name.per_model, by_array.per_model)
    assert by_array.per_model["accuracy"].max() > 0.5


def test_a_missing_value_in_the_prompt_is_an_error_not_nan_text() -> None:
    data = pd.DataFrame({"name": ["Ada", np.nan], "age": [36, 40]})
    with pytest.raises(nbt.ConfigError, match=r"row 1: column 'name' is missing"):
        nbt.orchestrate("Is {name}, aged {age}, an adult?", ["sim/swift-mini"], data=data)


def test_a_zero_budget_skips_every_call_without_calling_it_a_failure() -> None:
    res = nbt.orchestrate("hi", ["sim/swift-mini", "sim/budget-a"], max_cost_usd=0)
    assert len(res.skipped) == 2 and res.totals()["failed"] == 0
    assert any("not made" in w for w in res.warnings)


def test_every_call_failed_names_a_real_error_not_a_skipped_row() -> None:
    from nbtoolkit.strategies.vote import Vote

    with (
        FakeOpenAIServer(reply="x", faults=lambda i, req: "503") as server,
        pytest.raises(nbt.RunFailedError) as info,
    ):
        nbt.orchestrate(
            "hi",
            ["sim/swift-mini", local(server)],
            retries=0,
            strategy=Vote(models=["openai/local"]),
        )
    assert "every call failed (1 of 1)" in str(info.value)
    assert "ServiceUnavailableError" in str(info.value) and "Skipped" not in str(info.value)
