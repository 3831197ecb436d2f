"""The live path: litellm's real HTTP client against a local OpenAI-compatible server."""

from __future__ import annotations

import time

import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit.runner import RetryPolicy
from nbtoolkit.testing import FakeOpenAIServer

from .conftest import CANARY_KEY


@pytest.fixture(autouse=True)
def _key(monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_KEY", CANARY_KEY)


def local(server: FakeOpenAIServer, name: str = "local", **kw) -> nbt.Model:
    return nbt.Model(f"openai/{name}", api_base=server.base_url, api_key_env="LOCAL_KEY", **kw)


def run(prompt, models, **kw) -> nbt.RunResult:
    return nbt.orchestrate(prompt, models, cache="off", audit=False, **kw)


def test_reply_usage_and_parallel_latency() -> None:
    with FakeOpenAIServer(reply="The answer is 12", latency=0.3) as server:
        res = run(
            "{q}",
            [local(server, "a"), local(server, "b")],
            data=pd.DataFrame({"q": list("abcdefgh")}),
            extract="number",
        )
        overlap = server.max_overlap()
    assert server.request_count == 16
    assert (res.outputs["answer"] == "12").all()
    assert (res.outputs["latency_s"] >= 0.3).all()
    assert overlap >= 2  # the 16 calls were served side by side (concurrency 16)
    assert (res.outputs["prompt_tokens"] > 0).all() and (res.outputs["completion_tokens"] > 0).all()
    assert res.outputs["attempts"].eq(1).all()


def test_429_waits_for_retry_after_then_succeeds() -> None:
    with FakeOpenAIServer(reply="ok", faults={0: "429"}, retry_after=0.6) as server:
        start = time.perf_counter()
        res = run("hi", [local(server)])
        wall = time.perf_counter() - start
    row = res.outputs.iloc[0]
    assert row["output"] == "ok" and row["attempts"] == 2
    assert wall >= 0.6
    assert server.request_count == 2


@pytest.mark.parametrize("fault", ["500", "503", "malformed", "empty_choices", "reset"])
def test_transient_faults_are_retried(fault: str) -> None:
    with FakeOpenAIServer(reply="ok", faults={0: fault}) as server:
        res = run("hi", [local(server)])
    assert res.outputs["output"].iloc[0] == "ok"
    assert res.outputs["attempts"].iloc[0] == 2


def test_persistent_500_becomes_an_error_row_after_retries() -> None:
    with FakeOpenAIServer(
        reply="ok", faults=lambda i, req: "500" if "bad" in str(req) else None
    ) as server:
        res = run("{q}", [local(server)], data=pd.DataFrame({"q": ["good", "bad"]}), retries=1)
    bad = res.outputs.iloc[1]
    assert pd.isna(bad["output"])
    assert bad["attempts"] == 2  # the first try and one retry
    assert bad["error"].startswith("InternalServerError")
    assert server.request_count == 1 + 2
    assert res.outputs.iloc[0]["output"] == "ok"
    assert len(res.outputs) == 2
    assert CANARY_KEY not in bad["error"]


def test_timeout_is_an_error_row_not_a_hang() -> None:
    with FakeOpenAIServer(reply="ok", faults={0: "hang"}, hang_seconds=30) as server:
        # A hang of 30 s ends as a timeout of 0.5 s (pytest-timeout would catch a real hang).
        res = run("hi", [local(server), "sim/swift-mini"], timeout=0.5, retries=0)
        assert server.intervals == []  # the server was still holding it
    assert res.outputs["error"].iloc[0].startswith("Timeout")
    assert res.outputs["output"].iloc[1] is not None


def test_with_no_timeout_set_a_hung_request_still_ends_as_litellm_s_would(monkeypatch) -> None:
    import os

    from nbtoolkit.providers import openai_http

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    # The lean client's limit when the run sets none is litellm's own default.
    assert litellm.request_timeout == openai_http.DEFAULT_TIMEOUT_S
    monkeypatch.setattr(openai_http, "DEFAULT_TIMEOUT_S", 0.5)
    with FakeOpenAIServer(reply="ok", faults={0: "hang"}, hang_seconds=30) as server:
        res = run("hi", [local(server), "sim/swift-mini"], retries=0)  # timeout=None
    assert res.outputs["error"].iloc[0].startswith("Timeout")
    assert res.meta["transports"]["openai/local"] == "aiohttp"


def test_client_errors_are_not_retried() -> None:
    with FakeOpenAIServer(reply="ok") as server:
        wrong_path = nbt.Model(
            "openai/local",
            api_base=server.base_url.replace("/v1", "/nope"),
            api_key_env="LOCAL_KEY",
        )
        res = run("hi", [wrong_path, "sim/swift-mini"])
    row = res.outputs.iloc[0]
    assert row["attempts"] == 1 and row["error"].startswith("NotFoundError")


def test_retry_policy_backoff_is_bounded_and_honours_retry_after() -> None:
    import random

    policy = RetryPolicy(retries=5, base_s=0.5, max_s=4)
    rng = random.Random(0)
    delays = [policy.delay(a, None, rng) for a in range(1, 10)]
    assert all(0 <= d <= 4 for d in delays)
    assert policy.delay(1, 7.0, rng) == 7.0
    assert policy.delay(1, 1e6, rng) == policy.max_retry_after_s


def test_per_model_concurrency_limit() -> None:
    with FakeOpenAIServer(reply="ok", latency=0.2) as server:
        run("{q}", [local(server, max_concurrency=1)], data=pd.DataFrame({"q": list("abcd")}))
        assert server.request_count == 4
        assert server.max_overlap() == 1


def test_cancel_returns_finished_rows_within_a_second() -> None:
    import threading

    def slow_for_b(req):
        return "slow" if "b" in req["messages"][-1]["content"] else "fast"

    runners = []
    with FakeOpenAIServer(
        reply=slow_for_b,
        faults=lambda i, req: "hang" if "b" in str(req["messages"]) else None,
        hang_seconds=30,
    ) as server:
        timer = threading.Timer(1.0, lambda: runners[0].cancel())

        def started(runner):
            runners.append(runner)
            timer.start()

        res = run(
            "{q}", [local(server)], data=pd.DataFrame({"q": ["a", "b", "a2"]}), on_start=started
        )
        # The hanging call was cancelled, not waited out: the server still held it.
        assert len(server.intervals) == 2
    assert res.cancelled
    assert (
        res.outputs["output"].tolist()[0] == "fast" and res.outputs["output"].tolist()[2] == "fast"
    )
    assert res.outputs["error"].iloc[1].startswith("Cancelled")
    assert "CANCELLED" in repr(res)
    # The cancelled call's request was sent: every request sent is counted.
    assert res.outputs["attempts"].tolist() == [1, 1, 1]


def test_runs_reuse_their_connections_and_a_run_on_its_own_loop_closes_them() -> None:
    # orchestrate's loop lives for the process: the next run skips the TCP (and, against a
    # real endpoint, TLS) handshakes. A run under the user's own asyncio.run leaves nothing
    # open when it ends.
    import asyncio

    with FakeOpenAIServer(reply="ok") as server:
        model = local(server, "reuse")
        for _ in range(3):
            assert run("hi", [model]).outputs["output"].tolist() == ["ok"]
        assert server.connections_opened == 1

    with FakeOpenAIServer(reply="ok") as server:
        res = asyncio.run(nbt.aorchestrate("hi", [local(server)], cache="off", audit=False))
        assert res.outputs["output"].tolist() == ["ok"]
        deadline = time.monotonic() + 5
        while server.open_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.open_connections == 0


def test_a_step_ending_early_never_closes_connections_a_side_by_side_step_still_uses() -> None:
    # More servers than the kept sessions (16): the slow step's sessions are pushed out while
    # its calls are in flight, and the quick step beside it ends first. Closing them then
    # dropped those calls ("Connection dropped"), or made them twice with retries.
    from nbtoolkit.pipelines import Step

    slow = [FakeOpenAIServer(reply="42", latency=1.0).start() for _ in range(18)]
    fast = FakeOpenAIServer(reply="7").start()
    try:
        run("warm-up", [local(fast)])  # so both steps start together, their planning quick
        panel = [
            nbt.Model("openai/x", api_base=s.base_url, api_key_env="LOCAL_KEY", name=f"m{i}")
            for i, s in enumerate(slow)
        ]
        res = nbt.pipeline(
            [[Step("slow", "What is 6*7?", panel), Step("quick", "What is 3+4?", [local(fast)])]],
            cache="off",
            audit=False,
            retries=0,
            concurrency=32,
        )
        out = res["slow"].outputs
        assert out["error"].isna().all(), out["error"].dropna().tolist()[:1]
        assert out["attempts"].eq(1).all()
        assert sum(s.request_count for s in slow) == 18
    finally:
        for server in [*slow, fast]:
            server.stop()
