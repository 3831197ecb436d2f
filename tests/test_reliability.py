"""Reliability: faults at scale, interrupts, crashes, bad input, secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit.cache import Cache, cache_dir
from nbtoolkit.errors import NbtoolkitError
from nbtoolkit.testing import FakeOpenAIServer

from .conftest import CANARY_KEY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _key(monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_KEY", CANARY_KEY)


def local(server, model="gpt-4o-mini", **kw) -> nbt.Model:
    # A name litellm can price, served by the local server: costs are real numbers.
    return nbt.Model(f"openai/{model}", api_base=server.base_url, api_key_env="LOCAL_KEY", **kw)


@pytest.mark.slow
def test_twenty_percent_faults_over_a_thousand_calls_lose_nothing() -> None:
    data = pd.DataFrame({"q": [f"question {i}" for i in range(250)]})
    kinds = ("429", "500", "503", "hang", "reset", "malformed", "empty_choices", "null_content")
    with (
        FakeOpenAIServer(
            reply="The answer is 7",
            fault_rate=0.2,
            fault_kinds=kinds,
            seed=11,
            retry_after=0.05,
            hang_seconds=5,
            prompt_tokens=10,
            completion_tokens=5,
        ) as flaky,
        FakeOpenAIServer(reply="The answer is 7", prompt_tokens=10, completion_tokens=5) as healthy,
    ):
        models = [
            local(flaky, kind, name=name, fallbacks=[local(healthy, kind, name=f"{name}-backup")])
            for name, kind in (
                ("a", "gpt-4o-mini"),
                ("b", "gpt-4o-mini"),
                ("c", "gpt-4o"),
                ("d", "gpt-4o-mini"),
            )
        ]
        res = nbt.orchestrate(
            "{q}",
            models,
            data=data,
            extract="number",
            retries=1,
            timeout=0.5,
            concurrency=64,
            cache="off",
        )
        served = flaky.faults_served
        sent = flaky.request_count + healthy.request_count
    out = res.outputs
    assert out["attempts"].sum() == sent  # every request sent is counted
    assert len(out) == 1000
    assert not out[["row", "model", "sample"]].duplicated().any()
    assert (out["output"].notna() | out["error"].notna()).all()
    assert {str(kind) for _, kind in served} == set(kinds)
    assert (out["attempts"] > 1).sum() >= 100  # the faults were met and retried
    assert out["answer"].eq("7").all()  # retries, then fallbacks: every call answered
    # Retried calls are billed once: one reply of 10 + 5 tokens at the model's price.
    mini = out[out["model"].isin(["a", "b", "d"]) & out["output"].notna()]
    assert mini["cost_usd"].round(12).nunique() == 1
    assert (mini["prompt_tokens"] == 10).all() and (mini["completion_tokens"] == 5).all()
    assert out["error"].fillna("").str.startswith("answered by fallback").sum() >= 5


def _child(code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def _interrupt_after(child, server, requests: int, settle: float = 0.0) -> tuple[str, str]:
    """Ctrl-C the child once the server has seen ``requests`` requests (then ``settle``
    seconds); its stdout and stderr. The child prints "ready" before its first run."""
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    deadline = time.time() + 30
    while server.request_count < requests and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(settle)
    child.send_signal(signal.SIGINT)
    return child.communicate(timeout=30)


def test_ctrl_c_stops_with_the_finished_rows_within_a_second_and_leaves_no_task() -> None:
    with FakeOpenAIServer(
        reply="done",
        faults=lambda i, req: "hang" if "slow" in str(req["messages"]) else None,
        hang_seconds=60,
    ) as server:
        child = _child(
            f"""
            import asyncio, json, time, pandas as pd, nbtoolkit as nbt
            from nbtoolkit import loop
            m = nbt.Model("openai/x", api_base="{server.base_url}", api_key_env="LOCAL_KEY")
            data = pd.DataFrame({{"q": ["fast 1", "slow", "fast 2", "slow too"]}})
            print("ready", flush=True)
            try:
                nbt.orchestrate("{{q}}", [m], data=data, cache="off", audit=False)
            except nbt.RunInterrupted as stop:  # a loop of runs stops; the rows are kept
                res = stop.result
                assert isinstance(stop, KeyboardInterrupt)
            async def count():
                # litellm keeps one logging worker per loop for the life of the loop; it is not a call.
                return [repr(t.get_coro()) for t in asyncio.all_tasks()
                        if t is not asyncio.current_task() and "LoggingWorker" not in repr(t.get_coro())]
            left = asyncio.run_coroutine_threadsafe(count(), loop.get_loop()).result()
            print(json.dumps({{"cancelled": res.cancelled, "outputs": res.outputs["output"].tolist(),
                               "errors": res.outputs["error"].tolist(), "tasks_left": left}}), flush=True)
            """,
            {"LOCAL_KEY": CANARY_KEY},
        )
        out, err = _interrupt_after(child, server, 4, settle=0.3)
        answered = len(server.intervals)  # before stop() releases the hanging requests
    assert child.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["cancelled"]
    assert report["outputs"][0] == "done" and report["outputs"][2] == "done"
    assert report["errors"][1].startswith("Cancelled") and report["errors"][3].startswith(
        "Cancelled"
    )
    assert report["tasks_left"] == []
    # The hanging calls were cancelled, not waited out (60 s): the server never answered them.
    assert answered == 2
    assert "never awaited" not in err


def test_sigkill_mid_run_leaves_a_sound_cache_and_the_rerun_makes_only_missing_calls(
    tmp_path,
) -> None:
    cache_path = tmp_path / "crash" / "cache.sqlite"
    rows = 60
    with FakeOpenAIServer(
        reply=lambda req: "answer " + req["messages"][-1]["content"], latency=0.05
    ) as server:
        child = _child(
            f"""
            import pandas as pd, nbtoolkit as nbt
            m = nbt.Model("openai/x", api_base="{server.base_url}", api_key_env="LOCAL_KEY")
            data = pd.DataFrame({{"q": [f"q{{i}}" for i in range({rows})]}})
            nbt.orchestrate("{{q}}", [m], data=data, concurrency=4, cache_path="{cache_path}", audit=False)
            """,
            {"LOCAL_KEY": CANARY_KEY},
        )
        deadline = time.time() + 60
        while server.request_count < 20 and time.time() < deadline:
            time.sleep(0.01)
        child.kill()
        child.communicate(timeout=10)
        made_before = server.request_count
        cache = Cache(cache_path)
        assert cache.integrity_ok()
        kept = cache.info()["entries"]
        assert 0 < kept < rows
        res = nbt.orchestrate(
            "{q}",
            [nbt.Model("openai/x", api_base=server.base_url, api_key_env="LOCAL_KEY")],
            data=pd.DataFrame({"q": [f"q{i}" for i in range(rows)]}),
            cache_path=str(cache_path),
        )
        assert server.request_count - made_before == rows - kept
    assert res.outputs["cached"].sum() == kept and res.outputs["output"].notna().all()
    del made_before


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(models=[]), "models is empty"),
        (dict(models=["no-such-model-anywhere"]), "unknown model"),
        (dict(strategy="majority"), "unknown strategy"),
        (dict(extract="digits"), "unknown extract"),
        (dict(prompt="Hello {missing}"), "{missing}"),
        (dict(max_cost_usd=-0.5), "max_cost_usd=-0.5"),
        (dict(schema="Person"), "schema='Person': must be a pydantic model class"),
        (
            dict(recordings="/nonexistent/rec.jsonl", models=["replay/x"]),
            "recordings file not found",
        ),
        (dict(concurrency=0), "concurrency=0"),
    ],
)
def test_bad_input_matrix_is_one_line_and_writes_nothing(kwargs, words) -> None:
    args = {"prompt": "Hello", "models": ["sim/swift-mini"], **kwargs}
    with pytest.raises(NbtoolkitError) as info:
        nbt.orchestrate(args.pop("prompt"), args.pop("models"), **args)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert not cache_dir().exists()


def test_prompt_longer_than_the_context_window_is_refused_before_the_call(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    huge = "word " * 140_000  # gpt-4o-mini takes 128k tokens
    with FakeOpenAIServer(reply="never") as server:
        with pytest.raises(nbt.ConfigError, match="context window of 128000"):
            nbt.orchestrate("{text}", [local(server)], variables={"text": huge})
        assert server.request_count == 0
    assert not cache_dir().exists()


def test_malformed_recordings_name_file_and_line(tmp_path) -> None:
    bad = tmp_path / "rec.jsonl"
    bad.write_text('{"model": "m", "prompt": "p", "output": "o"}\n\n{"model": 3}\n')
    with pytest.raises(nbt.RecordingsError, match=r"rec.jsonl:3: 'model' must be a string"):
        nbt.orchestrate("p", ["replay/m"], recordings=bad)
    assert not cache_dir().exists()


def test_secret_in_a_provider_error_is_redacted_everywhere(tmp_path) -> None:
    def leak(req):
        raise RuntimeError(f"upstream said: invalid key {CANARY_KEY}")

    with FakeOpenAIServer(reply=leak) as server:
        res = nbt.orchestrate("hi", [local(server), "sim/swift-mini"], retries=0)
    error = res.outputs["error"].iloc[0]
    assert "invalid key ***" in error and CANARY_KEY not in error
    res.outputs.to_csv(tmp_path / "o.csv")
    for path in [tmp_path / "o.csv", *cache_dir().rglob("*")]:
        if path.is_file():
            assert CANARY_KEY.encode() not in path.read_bytes(), path
    assert CANARY_KEY not in repr(res) + res._repr_html_() + " ".join(res.warnings)


def test_ctrl_c_in_a_loop_of_runs_stops_the_loop_not_just_the_run() -> None:
    """Returning the partial result let `for ...: orchestrate(...)` go on to its next run."""
    with FakeOpenAIServer(reply="done", latency=0.3) as server:
        child = _child(
            f"""
            import json, pandas as pd, nbtoolkit as nbt
            m = nbt.Model("openai/x", api_base="{server.base_url}", api_key_env="LOCAL_KEY")
            data = pd.DataFrame({{"q": [f"q{{i}}" for i in range(40)]}})
            print("ready", flush=True)
            runs = []
            try:
                for temperature in (0.0, 0.5, 1.0):
                    runs.append(temperature)
                    nbt.orchestrate("{{q}}", [m], data=data, cache="off", audit=False,
                                    concurrency=2, temperature=temperature)
            except nbt.RunInterrupted as stop:
                res = stop.result
                print(json.dumps({{"runs": runs, "message": str(stop),
                                   "done": int((res.outputs["output"] == "done").sum()),
                                   "warnings": res.warnings}}), flush=True)
            """,
            {"LOCAL_KEY": CANARY_KEY},
        )
        out, err = _interrupt_after(child, server, 4)
    assert child.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["runs"] == [0.0]  # the loop stopped with its first run
    assert 0 < report["done"] < 40
    assert f"interrupted after {report['done']} of 40 calls" in report["message"]
    assert any("were not made" in w for w in report["warnings"])


def test_ctrl_c_in_a_pipeline_keeps_the_steps_that_ran() -> None:
    """A pipeline dropped every finished (paid-for) step on Ctrl-C: a bare KeyboardInterrupt."""
    with FakeOpenAIServer(reply="done", latency=0.7) as server:
        child = _child(
            f"""
            import json, nbtoolkit as nbt
            m = nbt.Model("openai/x", api_base="{server.base_url}", api_key_env="LOCAL_KEY")
            steps = [nbt.Step("draft", "Draft {{topic}}", [m]),
                     nbt.Step("critique", "Critique {{draft}}", [m]),
                     nbt.Step("final", "Final {{critique}}", [m])]
            print("ready", flush=True)
            try:
                nbt.pipeline(steps, variables={{"topic": "tea"}}, cache="off", audit=False)
            except nbt.RunInterrupted as stop:
                res = stop.result
                print(json.dumps({{"steps": list(res.steps),
                                   "draft": res["draft"].outputs["output"].tolist(),
                                   "cancelled": res.final.cancelled}}), flush=True)
            """,
            {"LOCAL_KEY": CANARY_KEY},
        )
        out, err = _interrupt_after(child, server, 2, settle=0.2)  # step two in flight
        sent = server.request_count
    assert child.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["steps"] == ["draft", "critique"]  # the third never started
    assert report["draft"] == ["done"] and report["cancelled"]
    assert sent == 2
