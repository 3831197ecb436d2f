"""Strategies that change what is called: cascade, judge, fuse, budget, fallbacks, repair."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from pydantic import BaseModel

import nbtoolkit as nbt
from nbtoolkit.providers import sim
from nbtoolkit.strategies.cascade import Cascade
from nbtoolkit.strategies.judge import Fuse, Judge
from nbtoolkit.testing import FakeOpenAIServer

from .conftest import CANARY_KEY

PANEL = ["sim/oracle-large", "sim/steady-medium", "sim/swift-mini", "sim/budget-a"]


@pytest.fixture(autouse=True)
def _key(monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_KEY", CANARY_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)


@pytest.fixture
def bank() -> pd.DataFrame:
    return pd.DataFrame(sim.question_bank()[:12]).rename(columns={"answer": "gold"})


def local(server, name="local", **kw) -> nbt.Model:
    return nbt.Model(f"openai/{name}", api_base=server.base_url, api_key_env="LOCAL_KEY", **kw)


def test_cascade_skips_calls_it_does_not_need_and_does_not_bill_them(bank) -> None:
    order = ["sim/oracle-large", "sim/steady-medium", "sim/swift-mini", "sim/budget-a"]
    res = nbt.orchestrate(
        "{question}",
        PANEL,
        data=bank,
        extract=["json:answer", "number"],
        strategy=Cascade(order=order, threshold=2),
        seed=1,
    )
    assert len(res.outputs) == 12 * 4  # every (row, model) is still a row
    skipped = res.skipped
    assert (
        len(skipped) > 0 and (skipped["cost_usd"] == 0).all() and (skipped["attempts"] == 0).all()
    )
    assert skipped["error"].str.startswith("Skipped:").all()
    made = res.outputs.drop(skipped.index)
    assert set(made[made["row"] == 0]["model"]) >= {"sim/oracle-large", "sim/steady-medium"}
    assert res.totals()["calls"] == len(made)
    assert any("not made" in w for w in res.warnings)
    right = (res.consensus["answer"] == res.consensus["gold"].astype(str)).mean()
    assert right >= 0.8


def test_strategy_model_subset_is_not_called(bank) -> None:
    from nbtoolkit.strategies.vote import Vote

    assert len(nbt.orchestrate("{question}", PANEL, data=bank.head(2)).skipped) == 0
    res = nbt.orchestrate("{question}", PANEL, data=bank.head(2), strategy=Vote(models=PANEL[:2]))
    assert set(res.skipped["model"]) == set(PANEL[2:])


def test_judge_through_mock_response(bank) -> None:
    judge = nbt.Model(
        "gpt-4o-mini", extra={"mock_response": '{"choice": "none", "rationale": "all wrong"}'}
    )
    res = nbt.orchestrate(
        "{question}",
        ["sim/swift-mini", "sim/coin-flip", "sim/budget-a"],
        data=bank.head(6),
        extract=["json:answer", "number"],
        strategy=Judge(model=judge),
        seed=3,
    )
    judged = res.consensus["note"].eq("judge: no answer is right")
    assert judged.any()
    assert (
        res.consensus.loc[judged, "answer"].isna().all()
        and res.consensus.loc[judged, "low_confidence"].all()
    )
    assert len(res.strategy_calls) == judged.sum()
    assert res.strategy_calls["cost_usd"].gt(0).all()
    costs = res.outputs.groupby("row")["cost_usd"].sum()
    judged_rows = res.consensus.loc[judged, "row"]
    assert (
        res.consensus.loc[judged, "cost_usd"].to_numpy() > costs.loc[judged_rows].to_numpy()
    ).all()


def test_judge_through_the_local_server_picks_by_content(bank) -> None:
    def pick_right(req):
        text = req["messages"][-1]["content"]
        gold = re.search(r"GOLD=(\d+)", text).group(1)
        blocks = re.split(r"### Answer (\d+)\n", text)[1:]
        for number, body in zip(blocks[::2], blocks[1::2], strict=True):
            if re.search(rf'"answer": "{gold}"', body):
                return json.dumps({"choice": int(number), "rationale": "matches"})
        return '{"choice": "none", "rationale": "none match"}'

    with FakeOpenAIServer(reply=pick_right) as server:
        res = nbt.orchestrate(
            "{question} GOLD={gold}",
            ["sim/coin-flip", "sim/budget-a", "sim/swift-mini"],
            data=bank,
            extract=["json:answer", "number"],
            strategy=Judge(model=local(server, "judge")),
            seed=5,
        )
    judged = res.consensus[res.consensus["row"].isin(res.strategy_calls["row"])]
    assert len(judged) > 0
    picked = judged[judged["answer"].notna()]
    assert (picked["answer"] == picked["gold"].astype(str)).all()


def test_failed_judge_falls_back_to_the_vote_visibly(bank) -> None:
    with FakeOpenAIServer(reply="x", faults=lambda i, req: "500") as server:
        res = nbt.orchestrate(
            "{question}",
            ["sim/coin-flip", "sim/budget-a", "sim/swift-mini"],
            data=bank,
            extract=["json:answer", "number"],
            strategy=Judge(model=local(server, "judge")),
            retries=0,
            seed=5,
        )
    notes = res.consensus["note"].dropna()
    assert (
        len(notes) > 0
        and notes.str.contains("judge failed").all()
        and notes.str.contains("fell back to vote").all()
    )
    assert res.consensus.loc[notes.index, "answer"].notna().all()
    assert any("note" in w for w in res.warnings)


def test_fuse_writes_one_answer_read_with_the_runs_extractor(bank) -> None:
    with FakeOpenAIServer(reply='Having weighed them: {"answer": "$1,234.00"}') as server:
        res = nbt.orchestrate(
            "{question}",
            ["sim/swift-mini", "sim/budget-a"],
            data=bank.head(3),
            extract=["json:answer", "number"],
            strategy=Fuse(model=local(server, "agg")),
        )
        assert "### Response 1" in server.requests[0]["messages"][-1]["content"]
    assert (res.consensus["answer"] == "1234").all()
    assert (res.consensus["confidence"] == 0).all() and res.consensus["low_confidence"].all()


def test_budget_stops_new_calls_and_marks_rows(bank) -> None:
    # A call is made only while its worst case (prompt + max_tokens) still fits the budget.
    res = nbt.orchestrate(
        "{question}",
        ["sim/oracle-large"],
        data=bank,
        max_cost_usd=0.001,
        concurrency=1,
        max_tokens=40,
    )
    spent = res.outputs["cost_usd"].sum()
    made = res.outputs[res.outputs["output"].notna()]
    assert 0 < len(made) < len(bank)
    assert spent <= 0.001
    assert res.skipped["error"].str.contains("max_cost_usd").all()
    assert len(res.outputs) == len(bank)
    with pytest.raises(nbt.ConfigError, match="max_cost_usd=-1"):
        nbt.orchestrate("hi", ["sim/swift-mini"], max_cost_usd=-1)


def test_fallback_answers_in_place_and_is_recorded() -> None:
    with (
        FakeOpenAIServer(reply="primary", faults=lambda i, req: "500") as broken,
        FakeOpenAIServer(reply="backup") as ok,
    ):
        m = local(broken, "primary", fallbacks=[local(ok, "backup")])
        res = nbt.orchestrate("hi", [m], retries=1)
    row = res.outputs.iloc[0]
    assert row["output"] == "backup" and row["model"] == "openai/primary"
    assert row["error"].startswith("answered by fallback openai/backup after:")
    assert row["attempts"] == 3  # two tries of the primary, one of the fallback
    assert any("fallback" in w for w in res.warnings)


def test_exhausted_fallback_chain_is_an_error_row() -> None:
    with FakeOpenAIServer(reply="x", faults=lambda i, req: "503") as broken:
        m = local(broken, "a", fallbacks=[local(broken, "b")])
        res = nbt.orchestrate("hi", [m, "sim/swift-mini"], retries=0)
    row = res.outputs.iloc[0]
    assert pd.isna(row["output"])
    assert row["error"].startswith("ServiceUnavailableError") and "(fallbacks " in row["error"]
    assert row["error"].endswith("failed too)")
    assert row["attempts"] == 2


class Answer(BaseModel):
    answer: int
    unit: str


def test_schema_repair_re_asks_with_the_error_and_bounded_history() -> None:
    def reply(req):
        msgs = req["messages"]
        if len(msgs) == 1:
            return '{"answer": "lots", "unit": "eggs"}'
        return '{"answer": 18, "unit": "dollars"}'

    with FakeOpenAIServer(reply=reply) as server:
        res = nbt.orchestrate(
            "How much? {q}", [local(server)], variables={"q": "x"}, schema=Answer, repair=2
        )
        second = server.requests[1]["messages"]
    row = res.outputs.iloc[0]
    assert row["valid"] and row["answer"] == Answer(answer=18, unit="dollars")
    assert row["attempts"] == 2
    assert (
        len(second) == 3
        and "answer" in second[2]["content"]
        and "JSON schema" in second[0]["content"]
    )
    assert row["prompt_tokens"] > 0


def test_schema_that_never_validates_stops_after_repair_rounds() -> None:
    with FakeOpenAIServer(reply='{"answer": "never a number", "unit": 3}') as server:
        res = nbt.orchestrate("hi", [local(server), "sim/swift-mini"], schema=Answer, repair=2)
        assert server.request_count == 3
        assert all(len(r["messages"]) <= 3 for r in server.requests)  # never a growing history
    row = res.outputs.iloc[0]
    assert not row["valid"] and "Answer validation failed" in row["error"] and row["attempts"] == 3


def test_seeded_replay_only_runs_are_identical() -> None:
    data = pd.DataFrame({"q": ["a", "b", "c"]})
    with FakeOpenAIServer(
        reply=lambda req: "echo " + req["messages"][-1]["content"], latency=0.01
    ) as server:
        nbt.orchestrate(
            "{q}", [local(server, "x"), local(server, "y")], data=data, seed=1, temperature=0
        )
        first = nbt.orchestrate(
            "{q}",
            [local(server, "x"), local(server, "y")],
            data=data,
            seed=1,
            temperature=0,
            cache="replay-only",
        )
        second = nbt.orchestrate(
            "{q}",
            [local(server, "x"), local(server, "y")],
            data=data,
            seed=1,
            temperature=0,
            cache="replay-only",
        )
        assert server.request_count == 6
    pd.testing.assert_frame_equal(first.outputs, second.outputs)
    pd.testing.assert_frame_equal(first.consensus, second.consensus)


def test_low_confidence_threshold_and_disagreements(bank) -> None:
    res = nbt.orchestrate(
        "{question}",
        ["sim/coin-flip", "sim/budget-a", "sim/swift-mini"],
        data=bank,
        extract=["json:answer", "number"],
        confidence_threshold=0.9,
        seed=2,
    )
    assert (res.consensus["low_confidence"] == (res.consensus["confidence"] < 0.9)).all()
    assert set(res.disagreements()["row"]) == set(
        res.consensus[res.consensus["agreement"] < 1]["row"]
    )


def test_pipeline_feeds_consensus_and_outputs_forward() -> None:
    with FakeOpenAIServer(
        reply=lambda req: "seen: " + req["messages"][-1]["content"][:80]
    ) as server:
        res = nbt.pipeline(
            [
                nbt.Step(
                    "draft",
                    "Draft about {topic}",
                    [local(server, "a"), local(server, "b")],
                    strategy="medoid",
                ),
                [
                    nbt.Step("critique", "Critique: {draft_outputs}", [local(server, "c")]),
                    nbt.Step("title", "Title for: {draft}", [local(server, "d")]),
                ],
                nbt.Step(
                    "final", "Final from {draft} / {critique} / {title}", [local(server, "e")]
                ),
            ],
            variables={"topic": "owls"},
        )
    assert list(res.steps) == ["draft", "critique", "title", "final"]
    assert "### openai/a" in res["critique"].outputs["output"].iloc[0]
    final_prompt = res.final.outputs["output"].iloc[0]
    assert final_prompt.startswith("seen: Final from seen: Draft about owls")
    assert res.totals().loc["final", "calls"] == 1


def test_pipeline_per_row_and_mixture_of_agents(bank) -> None:
    res = nbt.mixture_of_agents(
        "{question}",
        ["sim/swift-mini", "sim/budget-a", "sim/steady-medium"],
        "sim/oracle-large",
        layers=2,
        data=bank.head(3),
        extract=["json:answer", "number"],
    )
    assert list(res.steps) == ["layer1", "layer2", "final"]
    assert len(res.final.consensus) == 3
    assert "layer2_outputs" in res.final.consensus.columns
    with pytest.raises(nbt.ConfigError, match="unique"):
        nbt.pipeline([nbt.Step("a", "x", "sim/swift-mini"), nbt.Step("a", "y", "sim/swift-mini")])


def test_fuse_and_pipeline_through_mock_response(bank) -> None:
    aggregator = nbt.Model(
        "gpt-4o-mini", extra={"mock_response": 'Combining them: {"answer": "42"}'}
    )
    res = nbt.orchestrate(
        "{question}",
        ["sim/swift-mini", "sim/budget-a"],
        data=bank.head(2),
        extract=["json:answer", "number"],
        strategy=Fuse(model=aggregator),
    )
    assert (res.consensus["answer"] == "42").all()
    assert res.strategy_calls["cost_usd"].gt(0).all()  # priced by litellm's table

    final = nbt.Model("gpt-4o-mini", extra={"mock_response": "The final word."})
    piped = nbt.pipeline(
        [
            nbt.Step("draft", "{question}", ["sim/swift-mini", "sim/steady-medium"]),
            nbt.Step("final", "Improve: {draft}", [final]),
        ],
        data=bank.head(2),
    )
    assert piped.final.outputs["output"].eq("The final word.").all()
    assert piped.final.consensus["draft"].notna().all()


def test_response_format_only_where_litellm_says_the_model_supports_it() -> None:
    from nbtoolkit.plan import plan_run

    with FakeOpenAIServer(reply="{}") as server:
        plan = plan_run(
            "hi",
            [nbt.Model("gpt-4o-mini"), local(server, "unknown-local"), "sim/swift-mini"],
            schema=Answer,
        )
    by_model = {c.model.label: c for c in plan.calls}
    assert by_model["gpt-4o-mini"].params["response_format"] is Answer
    assert "response_format" not in by_model["openai/unknown-local"].params
    assert "response_format" not in by_model["sim/swift-mini"].params
    assert all("JSON schema" in c.messages[-1]["content"] for c in plan.calls)


def test_each_row_s_candidates_are_its_answered_calls_in_call_order() -> None:
    from nbtoolkit.calls import Call, Outcome, Outcomes, cancelled_outcome, skipped
    from nbtoolkit.consensus import candidates_of

    a, b = nbt.Model("sim/swift-mini"), nbt.Model("sim/steady-pro", weight=2.0)
    # Rows out of order, as a stage's calls or a caller's own list may be.
    plan = [(2, a), (0, a), (2, b), (0, b), (1, a), (3, a)]
    calls = [Call(i, row, m, int(m is b), 0, [], {}) for i, (row, m) in enumerate(plan)]
    outcomes = Outcomes(len(calls))
    outcomes[0] = Outcome(output="7")
    outcomes[1] = Outcome(error="APIError: boom")  # a failure is a candidate, not valid
    outcomes[2] = Outcome(output="8")
    outcomes[3] = skipped("not needed")  # left out
    outcomes[4] = cancelled_outcome()  # left out: row 1 has none
    # call 5 has no outcome yet: left out, so row 3 has none
    extracted = [("7", True, None), (None, False, None), ("8", True, None), None, None, None]
    rows = candidates_of(calls, outcomes, extracted)
    assert list(rows) == [2, 0] and len(rows) == 2 and 1 not in rows and 3 not in rows
    assert [(c.model, c.answer, c.valid, c.weight, c.position) for c in rows[2]] == [
        ("sim/swift-mini", "7", True, 1.0, 0),
        ("sim/steady-pro", "8", True, 2.0, 1),
    ]
    assert [(c.answer, c.valid) for c in rows[0]] == [(None, False)]
    assert rows.get(1) is None and rows.get(3, []) == []
    assert dict(rows.items()) == {2: rows[2], 0: rows[0]}
