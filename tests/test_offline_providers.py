"""Offline providers (``replay/``, ``sim/``, a user's own) are answered in-process.

The frames must be the same as through ``litellm.acompletion`` (the way they were answered
before): the same runs are made both ways and compared.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit.errors import CallError
from nbtoolkit.providers import Reply, get_litellm, recordings, register_offline, registry, sim

from .conftest import SHARED_DATA

SIM_MODELS = ["sim/oracle-large", "sim/budget-a", "sim/budget-b", "sim/coin-flip"]
# A model litellm prices (its tokens are counted and priced by litellm) and one it never saw.
PRICED, UNKNOWN = "gpt-4o-mini-2024-07-18", "my-own-finetune"


def _both_ways(monkeypatch: pytest.MonkeyPatch, run: Any) -> tuple[Any, Any]:
    """The same run answered in-process, then through litellm.acompletion (the old path)."""
    new = run()
    with monkeypatch.context() as m:
        m.setattr(registry, "_THROUGH_LITELLM", True)
        old = run()
    return new, old


def _same_frames(new: nbt.RunResult, old: nbt.RunResult, latency: pd.Series | None) -> None:
    columns = [c for c in new.outputs.columns if c != "latency_s"]
    pd.testing.assert_frame_equal(new.outputs[columns], old.outputs[columns])
    pd.testing.assert_frame_equal(new.consensus, old.consensus)
    # latency_s is the stated one (a recording's, a simulated profile's) where there is one;
    # elsewhere it is the time a real wait took, which differs from run to run.
    stated = latency if latency is not None else pd.Series(True, index=new.outputs.index)
    pd.testing.assert_series_equal(
        new.outputs.loc[stated, "latency_s"], old.outputs.loc[stated, "latency_s"]
    )


def test_sim_frames_are_the_same_in_process_and_through_litellm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bank = [q["question"] for q in sim.question_bank()[:12]]
    data = pd.DataFrame({"question": bank + ["Tell me a joke."]})

    def run() -> nbt.RunResult:
        return nbt.orchestrate(
            "{question}",
            SIM_MODELS,
            data=data,
            extract="number",
            samples=2,
            temperature=0.7,
            seed=7,
            cache="off",
            audit=False,
        )

    new, old = _both_ways(monkeypatch, run)
    _same_frames(new, old, None)
    assert new.outputs["prompt_tokens"].notna().all()
    assert new.outputs["cost_usd"].gt(0).all()


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    recordings.write(lines, path)
    return path


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """Two questions recorded for three models, in every shape a recording comes in."""
    lines = []
    for i, q in enumerate(["What is 2 + 3?", "What is 7 * 6?"]):
        answer = str(eval(q.removeprefix("What is ").rstrip("?")))  # noqa: S307
        lines += [
            {"model": PRICED, "prompt": q, "output": f"It is {answer}."},  # usage by litellm
            {"model": UNKNOWN, "prompt": q, "output": f"{answer}", "latency_s": 0.25 + i},
            {
                "model": "house-model",
                "prompt": q,
                "output": f"The answer is {answer}",
                "prompt_tokens": 11,
                "completion_tokens": 4,
                "cost_usd": 0.002,
                "latency_s": 1.5,
            },
        ]
    return _write(tmp_path / "answers.jsonl", lines)


def test_replay_frames_are_the_same_in_process_and_through_litellm(
    monkeypatch: pytest.MonkeyPatch, recorded: Path
) -> None:
    data = pd.DataFrame({"q": ["What is 2 + 3?", "What is 7 * 6?", "What is 1 + 1?"]})

    def run() -> nbt.RunResult:
        return nbt.orchestrate(
            "{q}",
            [f"replay/{PRICED}", f"replay/{UNKNOWN}", "replay/house-model"],
            data=data,
            extract="number",
            recordings=recorded,
            cache="off",
            audit=False,
        )

    new, old = _both_ways(monkeypatch, run)
    out = new.outputs
    _same_frames(new, old, out["model"].ne(f"replay/{PRICED}") & out["output"].notna())
    by_model = out.set_index(["model", "row"])
    # litellm counted and priced the model it knows; the one it never saw is unknown, not 0.
    assert by_model.loc[(f"replay/{PRICED}", 0), "prompt_tokens"] > 0
    assert by_model.loc[(f"replay/{PRICED}", 0), "cost_usd"] > 0
    assert pd.isna(by_model.loc[(f"replay/{UNKNOWN}", 0), "prompt_tokens"])
    assert math.isnan(by_model.loc[(f"replay/{UNKNOWN}", 0), "cost_usd"])
    assert by_model.loc[("replay/house-model", 1), "cost_usd"] == 0.002
    # The prompt nobody recorded: a failed row each, with the reason, asked once.
    missing = out[out["row"] == 2]
    assert missing["error"].str.contains("no recording of replay/").all()
    assert missing["attempts"].eq(1).all()


@pytest.mark.skipif(
    not (SHARED_DATA / "recordings.jsonl.gz").exists(), reason="../shared/data is not here"
)
def test_gsm8k_replay_frames_are_the_same_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    items = pd.read_json(SHARED_DATA / "items.jsonl", lines=True, dtype={"gold": str}).head(40)
    template = (SHARED_DATA / "prompt_template.txt").read_text(encoding="utf-8")
    models = ["gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022", "gpt-3.5-turbo-0125"]

    def run() -> nbt.RunResult:
        return nbt.orchestrate(
            template,
            [f"replay/{m}" for m in models],
            data=items[["item", "question", "gold"]],
            extract=["json:answer", "number"],
            recordings=SHARED_DATA / "recordings.jsonl.gz",
            audit=False,
        )

    new, old = _both_ways(monkeypatch, run)
    # No recorded latencies here: every latency_s is the time the look-up took.
    _same_frames(new, old, pd.Series(False, index=new.outputs.index))
    assert new.outputs["prompt_tokens"].notna().sum() == 2 * len(items)  # the two GPT models


def test_a_replayed_model_needs_no_price_from_litellm(tmp_path: Path) -> None:
    # litellm maps jamba-1.5-large to a provider it cannot price it for ("This model isn't
    # mapped yet"): that failed every call. A replay never depends on litellm's mapping.
    path = _write(
        tmp_path / "jamba.jsonl",
        [
            {"model": "jamba-1.5-large", "prompt": "What is 2 + 3?", "output": "5"},
            {"model": "jamba-1.5-large", "prompt": "What is 7 * 6?", "output": "42"},
        ],
    )
    res = nbt.orchestrate(
        "{q}",
        ["replay/jamba-1.5-large"],
        data=pd.DataFrame({"q": ["What is 2 + 3?", "What is 7 * 6?"]}),
        extract="number",
        recordings=path,
        cache="off",
        audit=False,
    )
    out = res.outputs
    assert out["error"].isna().all(), out["error"].tolist()
    assert out["answer"].tolist() == ["5", "42"]
    # Priced from litellm's table where it says a price; NaN where not; never an error.
    assert ((out["cost_usd"] > 0) | out["cost_usd"].isna()).all()


_NO_LITELLM = """
import json, sys
import pandas as pd
import nbtoolkit as nbt
from nbtoolkit.providers import sim

bank = [q["question"] for q in sim.question_bank()[:5]]
res = nbt.orchestrate("{q}", ["sim/oracle-large", "sim/swift-mini"], data=pd.DataFrame({"q": bank}),
                      extract="number", samples=2, audit=True, progress=lambda p: None)
replayed = nbt.orchestrate("{q}", ["replay/house-model"], data=pd.DataFrame({"q": ["What is 2 + 3?"]}),
                           extract="number", recordings=sys.argv[1], cache="use")
judged = nbt.orchestrate("{q}", ["sim/coin-flip", "sim/budget-a"], data=pd.DataFrame({"q": bank}),
                         strategy=nbt.Judge(model="sim/oracle-large"), extract="number")
print(json.dumps({"litellm": sorted(m for m in sys.modules if m.split(".")[0] == "litellm")[:3],
                  "failed": int(res.outputs["error"].notna().sum()),
                  "replayed": replayed.outputs["answer"].tolist(),
                  "judged": int(judged.strategy_calls["output"].notna().sum()) > 0}))
"""


def test_an_offline_run_never_imports_litellm(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "house.jsonl",
        [
            {
                "model": "house-model",
                "prompt": "What is 2 + 3?",
                "output": "5",
                "prompt_tokens": 7,
                "completion_tokens": 1,
                "cost_usd": 0.0001,
            }
        ],
    )
    env = {"NBTOOLKIT_CACHE_DIR": str(tmp_path / "cache"), "NBTOOLKIT_SIM_TIME_SCALE": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", _NO_LITELLM, str(path)],
        capture_output=True,
        text=True,
        env={**_environ(), **env},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"litellm": [], "failed": 0, "replayed": ["5"], "judged": True}


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


class Echo:
    """A user's own in-process offline provider."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    async def answer(
        self, name: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> Reply:
        if name == "refuse":
            raise CallError("echo/refuse refuses every prompt")
        if name == "wrong":
            return "a bare string"  # type: ignore[return-value]
        self.seen.append((name, params["nbt_sample"]))
        text = str(messages[-1]["content"])
        return Reply(f"{name}: {len(text)}", len(text), 1, math.nan, 0.5)


@pytest.fixture
def own_prefix() -> Iterator[str]:
    yield "echo"
    registry._OFFLINE.pop("echo", None)
    registry._OFFLINE_CHECKS.pop("echo", None)
    if registry._litellm is not None:
        litellm = registry._litellm
        litellm.custom_provider_map = [
            i for i in litellm.custom_provider_map if i["provider"] != "echo"
        ]
        litellm.utils.custom_llm_setup()


def test_a_users_own_provider_is_answered_in_process(own_prefix: str) -> None:
    echo = Echo()
    register_offline(own_prefix, echo)
    res = nbt.orchestrate(
        "abcd",
        ["echo/one", "echo/refuse", "echo/wrong"],
        samples=2,
        extract="number",
        cache="off",
        audit=False,
    )
    out = res.outputs.set_index(["model", "sample"])
    assert out.loc[("echo/one", 1), "output"] == "one: 4"
    assert out.loc[("echo/one", 1), "latency_s"] == 0.5
    assert math.isnan(out.loc[("echo/one", 1), "cost_usd"])
    assert sorted(echo.seen) == [("one", 0), ("one", 1)]
    # Its own refusal is the row's error, said once, not retried.
    assert out.loc[("echo/refuse", 0), "error"] == "CallError: echo/refuse refuses every prompt"
    assert out.loc[("echo/refuse", 0), "attempts"] == 1
    # A provider that breaks its contract is said to, once per row, not retried.
    assert out.loc[("echo/wrong", 0), "error"] == (
        "TypeError: the offline provider of echo/ answered str: answer() must return a "
        "providers.Reply with text"
    )
    assert out.loc[("echo/wrong", 0), "attempts"] == 1


def test_a_users_litellm_custom_provider_still_works(own_prefix: str) -> None:
    def factory() -> Any:
        litellm = get_litellm()

        class Shout(litellm.CustomLLM):  # type: ignore[misc]
            async def acompletion(self, model: str, messages: Any, *a: Any, **kw: Any) -> Any:
                return litellm.ModelResponse(
                    choices=[{"message": {"role": "assistant", "content": "LOUD 7"}}],
                    model=model,
                )

        return Shout()

    register_offline(own_prefix, factory)
    assert not registry.in_process("echo/x")
    res = nbt.orchestrate("hi", ["echo/x"], extract="number", cache="off", audit=False)
    assert res.outputs["output"].tolist() == ["LOUD 7"]
    assert res.outputs["answer"].tolist() == ["7"]


def test_a_simulated_call_keeps_to_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # An in-process answer starts the call's timeout clock as a request sent would.
    monkeypatch.setenv("NBTOOLKIT_SIM_TIME_SCALE", "1")  # oracle-large then waits ~2.5 s
    res = nbt.orchestrate(
        sim.question_bank()[0]["question"],
        ["sim/oracle-large", "sim/coin-flip"],
        timeout=1.2,
        retries=0,
        cache="off",
        audit=False,
    )
    errors = res.outputs.set_index("model")["error"]
    assert errors["sim/oracle-large"].startswith("Timeout: sim/oracle-large sent no reply")
    assert errors["sim/coin-flip"] is None


def test_a_large_run_keeps_a_fixed_number_of_tasks() -> None:
    # A fixed pool of workers, not one task per call: what is alive while the run goes does
    # not grow with the calls planned.
    seen: list[int] = []

    def progress(_state: Any) -> None:
        seen.append(len(asyncio.all_tasks()))

    bank = [q["question"] for q in sim.question_bank()]
    data = pd.DataFrame({"q": [f"{bank[i % len(bank)]} (#{i})" for i in range(600)]})
    res = nbt.orchestrate(
        "{q}",
        ["sim/swift-mini", "sim/budget-a"],
        data=data,
        extract="number",
        concurrency=4,
        cache="off",
        audit=False,
        progress=progress,
    )
    assert len(res.outputs) == 1200 and res.meta["shared_calls"] == 0
    assert len(seen) > 1000
    assert max(seen) <= 4 + 6  # the workers, the run itself and its watchers


def test_outcomes_are_stored_column_wise_and_read_back_the_same() -> None:
    from nbtoolkit.calls import Outcome, Outcomes

    kept = [
        Outcome(output="42", latency_s=0.5, prompt_tokens=12, completion_tokens=3, cost_usd=0.01),
        Outcome(error="Timeout: x", attempts=3, cost_usd=0.0),
        Outcome(output="7", answered_by="sim/oracle-large", fallback_error="boom", attempts=2),
        Outcome(output="7", cached=True, shared_from=4, prompt_tokens=None),
        Outcome(output="1", prompt_tokens=12.0, completion_tokens=1),  # type: ignore[arg-type]
    ]
    store = Outcomes(len(kept) + 1)
    for i, outcome in enumerate(kept):
        store[i] = outcome
    assert store.get(len(kept)) is None and not store.done(len(kept))
    for i, outcome in enumerate(kept):
        got = store[i]
        assert type(got.prompt_tokens) is type(outcome.prompt_tokens)
        assert repr(got) == repr(outcome)  # NaN == NaN here, field by field
    store[2] = Outcome(output="8")  # stored again: the fallback's note goes
    assert store[2].answered_by is None and store[-2].output == "1"
    done = [store.get(i) for i in range(len(store))]
    assert store.count_cached() == sum(1 for o in done if o is not None and o.cached)
    assert store.count_shared() == sum(1 for o in done if o and o.shared_from is not None)


def test_the_outputs_frame_reads_the_same_from_columns_as_from_outcomes() -> None:
    # A run's frame is written from the stored columns (no Outcome per call); one made from
    # outcome objects must read exactly the same, notes, unknown tokens and NaN included.
    from nbtoolkit.calls import Call, Outcome, Outcomes
    from nbtoolkit.frames import output_frame
    from nbtoolkit.spec import Model

    kept = [
        Outcome(output="42", latency_s=0.5, prompt_tokens=12, completion_tokens=3, cost_usd=0.01),
        Outcome(error="Timeout: x", attempts=3, cost_usd=0.0),
        Outcome(output="7", answered_by="sim/oracle-large", fallback_error="boom", attempts=2),
        Outcome(output="7", cached=True, shared_from=0, prompt_tokens=None, ttft_s=0.2),
        Outcome(error="Skipped: settled", cost_usd=0.0, shared_from=1),
        Outcome(error="Cancelled: the run was stopped first"),
    ]
    model = Model("sim/swift-mini")
    calls = [Call(i, i, model, 0, 0, [], {}) for i in range(len(kept))]
    extracted = [(42, True, None), (None, False, None), (7, True, None), (7, True, None)]
    extracted += [(None, False, None), (None, False, "no number")]
    store = Outcomes(len(kept))
    for i, outcome in enumerate(kept):
        store[i] = outcome
    assert store.columns() is not None  # the columnar path is the one compared
    from_columns = output_frame(calls, store, extracted)
    from_objects = output_frame(calls, list(kept), extracted)
    pd.testing.assert_frame_equal(from_columns, from_objects)
    assert from_columns["error"].tolist() == [
        None,
        "Timeout: x",
        "answered by fallback sim/oracle-large after: boom",
        "shared reply: identical to row 0's call, sent once",
        "Skipped: settled [shared reply: identical to row 1's call, sent once]",
        "Cancelled: the run was stopped first",
    ]
    assert from_columns["prompt_tokens"].isna().tolist() == [False, True, True, True, True, True]
    assert from_columns["cached"].tolist() == [False, False, False, True, False, False]
    from_columns.loc[0, "cached"] = True  # the user's own frame: writable
    # An outcome the columns cannot hold as it is (a float token count) takes the other path.
    store[0] = Outcome(output="1", prompt_tokens=12.0, completion_tokens=1)  # type: ignore[arg-type]
    assert store.columns() is None
    assert output_frame(calls, store, extracted)["prompt_tokens"].iloc[0] == 12


def test_the_run_s_counts_follow_the_masks_rules() -> None:
    from nbtoolkit.results import count_calls

    res = nbt.orchestrate(
        "{q}",
        ["sim/swift-mini", "sim/budget-a"],
        data=pd.DataFrame({"q": ["What is 2 + 2?", "What is 3 + 3?"]}),
        cache="off",
        audit=False,
    )
    out = res.outputs.copy()
    out["output"] = ["4", None, None, "6"]
    out["error"] = [
        None,
        "Timeout: slow",
        "Skipped: the budget was spent",
        "answered by fallback sim/oracle-large after: boom",
    ]
    res.outputs = pd.concat(
        [out, out.assign(output=None, error="Cancelled: the run was stopped first")],
        ignore_index=True,
    )
    counts = count_calls(res.outputs)
    assert counts.calls == 8 and counts.made == int(res.made_mask().sum()) == 3
    assert counts.failed == int(res.failed_mask().sum()) == 1
    assert counts.skipped == int(res.skipped_mask().sum()) == 1
    assert counts.cancelled == int(res.cancelled_mask().sum()) == 4
    assert counts.fallback == int(res.fallback_mask().sum()) == 1
    assert counts.first_failed == "Timeout: slow"
    assert counts.first_skipped == "Skipped: the budget was spent"


def test_an_empty_run_s_consensus_has_the_usual_column_types() -> None:
    empty = nbt.orchestrate(
        "{q}", ["sim/swift-mini"], data=pd.DataFrame({"q": []}), cache="off", audit=False
    )
    one = nbt.orchestrate(
        "{q}",
        ["sim/swift-mini"],
        data=pd.DataFrame({"q": ["What is 2 + 2?"]}),
        cache="off",
        audit=False,
    )
    columns = [c for c in one.consensus.columns if c != "q"]
    assert empty.consensus[columns].dtypes.to_dict() == one.consensus[columns].dtypes.to_dict()
    assert (
        empty.outputs.dtypes.drop("model").to_dict() == one.outputs.dtypes.drop("model").to_dict()
    )


def test_recordings_are_indexed_once_and_usage_counted_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Prompts of this test's own: no other test has counted their tokens.
    prompts = [f"What is {i} + 1? (counted once)" for i in range(10)]
    path = _write(
        tmp_path / "answers.jsonl",
        [{"model": PRICED, "prompt": p, "output": f"It is {i + 1}."} for i, p in enumerate(prompts)]
        + [
            {
                "model": "house-model",
                "prompt": p,
                "output": "1",
                "prompt_tokens": 9,
                "completion_tokens": 1,
                "cost_usd": 0.001,
            }
            for p in prompts
        ],
    )
    loads: list[Any] = []
    real_load = recordings.load
    monkeypatch.setattr(recordings, "load", lambda paths: loads.append(paths) or real_load(paths))
    litellm = get_litellm()
    counted: list[Any] = []
    real_counter = litellm.token_counter
    monkeypatch.setattr(
        litellm, "token_counter", lambda **kw: counted.append(kw) or real_counter(**kw)
    )

    def run() -> nbt.RunResult:
        return nbt.orchestrate(
            "{q}",
            [f"replay/{PRICED}", "replay/house-model"],
            data=pd.DataFrame({"q": prompts}),
            samples=2,
            recordings=path,
            cache="off",
            audit=False,
        )

    first = run()
    assert first.outputs["error"].isna().all() and len(first.outputs) == 40
    # Read when the run is planned (once per model checked, at most), never per call.
    assert 0 < len(loads) <= 3
    # litellm counted each (model, prompt) once: the prompt and the reply of 10 prompts of the
    # model it knows; not per sample, and never for a recording that states its usage.
    assert len(counted) == 20
    counted.clear()
    again = run()
    assert counted == []  # memoised: the same counts as the first time
    pd.testing.assert_frame_equal(
        first.outputs.drop(columns="latency_s"), again.outputs.drop(columns="latency_s")
    )
