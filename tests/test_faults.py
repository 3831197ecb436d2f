"""Nothing lost, nothing overspent: paid results survive every recording failure, no call
outlives its run, bad replies are never cached, duplicates are sent once, budgets hold."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import threading
import time
from email.utils import formatdate
from pathlib import Path

import httpx
import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit import audit, providers
from nbtoolkit.cache import Cache, Entry
from nbtoolkit.calls import Outcome, Outcomes, from_entry, skipped
from nbtoolkit.loop import run_sync
from nbtoolkit.providers import sim
from nbtoolkit.runner import Call, RetryPolicy, Runner
from nbtoolkit.testing import FakeOpenAIServer

from .conftest import CANARY_KEY


@pytest.fixture(autouse=True)
def _key(monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_KEY", CANARY_KEY)


def local(server: FakeOpenAIServer, model: str = "gpt-4o-mini", **kw) -> nbt.Model:
    # A name litellm can price, served by the local server.
    return nbt.Model(f"openai/{model}", api_base=server.base_url, api_key_env="LOCAL_KEY", **kw)


def rows(n: int) -> pd.DataFrame:
    return pd.DataFrame({"q": [f"question {i}" for i in range(n)]})


def quiet_after(server: FakeOpenAIServer, seconds: float = 0.5, grace: float = 0.2) -> int:
    """Requests the server received in ``seconds`` after the run returned (must be 0).

    Counted from ``grace`` seconds after the return: a request the client had written
    before it returned was sent before, but the server's thread (in this busy process) may
    read it a moment later. A call left running would go on sending, and be seen."""
    time.sleep(grace)
    before = server.request_count
    time.sleep(seconds)
    return server.request_count - before


# -- paid results are never lost ---------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ("folder", "Is a directory"),
        ("disk-full", "No space left on device"),
        ("parent-is-a-file", "File exists"),
    ],
)
def test_unwritable_audit_log_keeps_every_answer_with_a_warning(tmp_path, where, words) -> None:
    path = {
        "folder": tmp_path,
        "disk-full": Path("/dev/full"),
        "parent-is-a-file": tmp_path / "file" / "audit.jsonl",
    }[where]
    (tmp_path / "file").write_text("not a folder")
    if where == "disk-full" and not path.exists():
        pytest.skip("/dev/full is not on this system")
    with FakeOpenAIServer(reply="The answer is 7", latency=0.02) as server:
        res = nbt.orchestrate("{q}", [local(server)], data=rows(12), audit=str(path), cache="off")
        assert quiet_after(server) == 0
    assert res.outputs["output"].eq("The answer is 7").all()
    (warning,) = [w for w in res.warnings if "audit log" in w]
    assert str(path) in warning and words in warning
    assert "12 calls are not in the audit log" in warning


def test_unusable_cache_keeps_every_answer_with_a_warning(tmp_path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with FakeOpenAIServer(reply="The answer is 7") as server:
        res = nbt.orchestrate(
            "{q}", [local(server)], data=rows(5), cache_path=str(tmp_path / "file" / "c.sqlite")
        )
    assert res.outputs["output"].notna().all()
    assert any("cannot open the cache" in w and "without the cache" in w for w in res.warnings)


def test_progress_callback_that_raises_is_a_warning_not_a_lost_run() -> None:
    seen = []

    def progress(state) -> None:
        seen.append(state.completed)
        if state.completed >= 3:
            raise ZeroDivisionError("the user's display broke")

    with FakeOpenAIServer(reply="The answer is 7", latency=0.02) as server:
        res = nbt.orchestrate("{q}", [local(server)], data=rows(20), progress=progress)
        assert quiet_after(server) == 0
        assert server.request_count == 20
    assert res.outputs["output"].notna().all()
    assert any("ZeroDivisionError: the user's display broke" in w for w in res.warnings)
    assert max(seen) == 3  # not called again once it failed


def test_a_lone_surrogate_in_a_reply_is_kept_and_the_audit_stays_readable(tmp_path) -> None:
    log = tmp_path / "audit.jsonl"
    with FakeOpenAIServer(reply="bad \ud800 text") as server:
        res = nbt.orchestrate("hi", [local(server)], audit=str(log))
    assert res.outputs["output"].iloc[0] == "bad \ud800 text"
    assert any("not valid Unicode" in w and "1 replies were not cached" in w for w in res.warnings)
    (record,) = audit.read(log)
    assert record["output"] == "bad \ud800 text"
    log.read_bytes().decode("utf-8")  # the file itself is valid UTF-8


def test_strict_run_with_an_unwritable_record_raises_carrying_the_frames(tmp_path) -> None:
    with FakeOpenAIServer(reply="The answer is 7") as server:
        with pytest.raises(nbt.NbtoolkitError, match="not everything was recorded") as info:
            nbt.orchestrate(
                "{q}", [local(server)], data=rows(4), audit=str(tmp_path), strict=True, cache="off"
            )
        assert quiet_after(server, 0.2) == 0
    frames = info.value.result  # type: ignore[attr-defined]
    assert frames.outputs["output"].eq("The answer is 7").all()


def test_a_bug_mid_run_stops_every_other_call_before_raising(monkeypatch) -> None:
    from nbtoolkit import runner

    real = runner.Runner._store
    stored = []

    def broken(self, call, outcome) -> None:
        stored.append(call)
        if len(stored) == 3:
            raise RuntimeError("a bug in our own code")
        real(self, call, outcome)

    monkeypatch.setattr(runner.Runner, "_store", broken)
    with FakeOpenAIServer(reply="ok", latency=0.05) as server:
        with pytest.raises(RuntimeError, match="a bug in our own code"):
            nbt.orchestrate("{q}", [local(server)], data=rows(200), concurrency=4)
        sent = server.request_count
        assert quiet_after(server) == 0
    assert sent < 200


def test_a_half_written_audit_line_never_breaks_the_next_reader(tmp_path) -> None:
    log = tmp_path / "audit.jsonl"
    nbt.orchestrate("one", ["sim/swift-mini"], audit=str(log))
    with log.open("ab") as fh:
        fh.write(b'{"run_id": "crashed", "model": "sim/sw')  # a write cut short
    nbt.orchestrate("two", ["sim/swift-mini"], audit=str(log))
    lines = log.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[-1])["model"] == "sim/swift-mini"
    assert len(audit.read(log)) == 2


@pytest.mark.parametrize("where", ["data", "variables", "prompt"])
def test_input_that_is_not_utf8_is_refused_before_any_call(where) -> None:
    # dtype=object: with pyarrow installed pandas would store the text as Arrow strings,
    # which cannot hold a lone surrogate at all (the frame could not be built).
    data = pd.DataFrame({"q": ["fine", "also fine"], "note": ["ok", "broken \ud800"]}, dtype=object)
    kwargs = {
        "data": dict(data=data),
        "variables": dict(variables={"note": "x\udcff"}),
        "prompt": {},
    }[where]
    prompt = "{q} \ud800" if where == "prompt" else ("{q} {note}" if where == "data" else "{note}")
    with FakeOpenAIServer(reply="never") as server:
        with pytest.raises(nbt.ConfigError, match="cannot be sent") as info:
            nbt.orchestrate(prompt, [local(server)], **kwargs)
        assert server.request_count == 0
    expected = {
        "data": "data row 1 (index 1), column 'note'",
        "variables": "variables['note']",
        "prompt": "prompt",
    }[where]
    assert str(info.value).startswith(expected)


# -- a bad reply is an error, and errors are never cached ----------------------------------


@pytest.mark.parametrize(
    "fault", ["429", "500", "503", "reset", "malformed", "empty_choices", "null_content", "hang"]
)
def test_no_kind_of_bad_reply_is_ever_cached(fault, tmp_path) -> None:
    cache_path = tmp_path / "c.sqlite"
    with FakeOpenAIServer(
        reply="The answer is 7", faults=lambda i, req: fault, hang_seconds=3, retry_after=0
    ) as server:
        for _ in range(2):
            res = nbt.orchestrate(
                "hi",
                [local(server), "sim/swift-mini"],
                retries=0,
                timeout=0.5,
                cache_path=str(cache_path),
            )
            row = res.outputs.iloc[0]
            assert pd.isna(row["output"]) and row["error"]
        assert server.request_count == 2  # the second run asked again
    assert Cache(cache_path).get_many([]) == {}
    assert sum(1 for e in Cache(cache_path).entries() if e.model.startswith("openai/")) == 0


def test_null_content_is_retried_like_empty_choices_and_says_why() -> None:
    with FakeOpenAIServer(reply="The answer is 7", faults={0: "null_content"}) as server:
        res = nbt.orchestrate("hi", [local(server)], cache="off")
        assert server.request_count == 2
    row = res.outputs.iloc[0]
    assert row["output"] == "The answer is 7" and row["attempts"] == 2
    with FakeOpenAIServer(faults=lambda i, req: "null_content") as server:
        res = nbt.orchestrate("hi", [local(server), "sim/swift-mini"], retries=0, cache="off")
    error = res.outputs["error"].iloc[0]
    assert "no message content" in error and "refusal: I can't help with that." in error


# -- identical calls are sent once ----------------------------------------------------------


def test_duplicate_rows_are_sent_once_and_marked() -> None:
    data = pd.DataFrame({"q": ["a", "b", "a", "a", "b", "c"]})
    with FakeOpenAIServer(reply=lambda req: "reply to " + req["messages"][-1]["content"]) as server:
        res = nbt.orchestrate("{q}", [local(server)], data=data, cache="off")
        assert server.request_count == 3
    out = res.outputs
    assert out["output"].tolist() == [f"reply to {q}" for q in data["q"]]
    shared = out[out["error"].fillna("").str.startswith("shared reply")]
    assert shared["row"].tolist() == [2, 3, 4]
    assert shared["error"].tolist()[0] == "shared reply: identical to row 0's call, sent once"
    assert (shared["cost_usd"] == 0).all() and (shared["attempts"] == 0).all()
    assert out["attempts"].sum() == server.request_count
    assert len(res.errors) == 0 and res.meta["shared_calls"] == 3
    assert any("3 calls were identical" in w for w in res.warnings)


def test_a_failed_call_shared_by_duplicates_stays_a_failure_on_every_row() -> None:
    data = pd.DataFrame({"q": ["bad", "good", "bad"]})
    with FakeOpenAIServer(faults=lambda i, req: "500" if "bad" in str(req) else None) as server:
        res = nbt.orchestrate("{q}", [local(server)], data=data, retries=0, cache="off")
        assert server.request_count == 2
    assert res.failed_mask().tolist() == [True, False, True]
    copy = res.outputs["error"].iloc[2]
    assert copy.startswith("InternalServerError") and copy.endswith(
        "[shared reply: identical to row 0's call, sent once]"
    )


def test_samples_and_different_models_are_not_shared() -> None:
    with FakeOpenAIServer(reply="ok") as server:
        nbt.orchestrate(
            "same", [local(server), local(server, "gpt-4o")], samples=2, temperature=1, cache="off"
        )
        assert server.request_count == 4


# -- budgets hold ----------------------------------------------------------------------


def test_budget_holds_at_concurrency_64() -> None:
    model = "gpt-4o-mini"
    with FakeOpenAIServer(reply="The answer is 7", latency=0.05) as server:
        probe = nbt.orchestrate("question 0", [local(server, model)], max_tokens=8, cache="off")
        one_call = float(probe.outputs["cost_usd"].iloc[0])
        budget = one_call * 10
        server.reset()
        res = nbt.orchestrate(
            "{q}",
            [local(server, model)],
            data=rows(300),
            max_tokens=8,
            max_cost_usd=budget,
            concurrency=64,
            cache="off",
        )
        assert quiet_after(server, 0.2) == 0
    spent = res.outputs["cost_usd"].sum()
    made = int(res.outputs["output"].notna().sum())
    assert spent <= budget
    assert made >= 3  # the reservation (prompt + 8 tokens) is a few calls' worth, not all
    assert server.request_count == made
    assert len(res.skipped) == 300 - made
    assert res.skipped["error"].str.contains("worst case").all()


def test_a_call_that_fits_once_others_settle_waits_instead_of_being_skipped() -> None:
    """Reservations are worst cases: replies far shorter than max_tokens release most of
    theirs, and calls that then fit are made, not skipped because others were in flight."""
    model = "gpt-4o-mini"
    with FakeOpenAIServer(reply="7", latency=0.02) as server:
        probe = nbt.orchestrate("question 0", [local(server, model)], max_tokens=8, cache="off")
        one_call = float(probe.outputs["cost_usd"].iloc[0])
        server.reset()
        # Room for 10 worst cases at once (max_tokens=400 against a one-token reply).
        from nbtoolkit.budget import prices

        budget = 10 * (one_call + 400 * prices(nbt.Model(model))[1])
        res = nbt.orchestrate(
            "{q}",
            [local(server, model)],
            data=rows(60),
            max_tokens=400,
            max_cost_usd=budget,
            concurrency=64,
            cache="off",
            audit=False,
        )
    assert res.outputs["cost_usd"].sum() <= budget
    made = int(res.outputs["output"].notna().sum())
    assert made == server.request_count
    assert made > 20, res.skipped["error"].head(1).tolist()  # far more than 10 at once


def test_a_skip_for_an_unset_max_tokens_says_how_to_tighten_the_bound() -> None:
    res = nbt.orchestrate(
        "{question}",
        ["sim/oracle-large"],
        data=pd.DataFrame(sim.question_bank()).head(3),
        max_cost_usd=1e-9,
        audit=False,
        cache="off",
    )
    assert len(res.skipped) == 3
    assert res.skipped["error"].str.contains("set max_tokens= to tighten it").all()


# -- time and retries are honest -----------------------------------------------------------


class _Status(Exception):
    def __init__(self, headers: dict[str, str]) -> None:
        self.status_code = 429
        self.response = httpx.Response(429, headers=headers)


@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        ({"Retry-After": "7"}, 7, 7),
        ({"retry-after-ms": "1500"}, 1.5, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25, 0.25),
        ({"Retry-After": "in 30 s"}, 27, 31),
        ({"Retry-After": "30 s ago"}, 0, 0),
        ({"Retry-After": "soon"}, None, None),
    ],
)
def test_retry_after_in_every_form(headers, low, high) -> None:
    dates = {"in 30 s": time.time() + 30, "30 s ago": time.time() - 30}
    if headers.get("Retry-After") in dates:  # an HTTP date, made when the test runs
        headers = {"Retry-After": formatdate(dates[headers["Retry-After"]], usegmt=True)}
    retryable, wait = providers.retry_hint(_Status(headers))
    assert retryable
    if low is None:
        assert wait is None
    else:
        assert wait is not None and low <= wait <= high


@pytest.mark.parametrize(("form", "expected"), [("ms", 0.25), ("date", None), ("seconds", 0.25)])
def test_the_wait_a_429_asks_for_is_the_wait_made(form, expected) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    with FakeOpenAIServer(
        reply="ok", faults={0: "429"}, retry_after=0.25, retry_after_format=form
    ) as server:
        model = local(server)
        runner = Runner(retry=RetryPolicy(retries=1), sleep=sleep, seed=1)
        params = providers.call_params(model, {}, sample=0)
        call = Call(0, 0, model, 0, 0, [{"role": "user", "content": "hi"}], params)
        (outcome,) = run_sync(runner.run([call]))
    assert outcome.output == "ok" and outcome.attempts == 2
    (wait,) = waits
    if form == "date":
        # Whole seconds (the server adds one): at most 1.25 s from when it was written, less
        # the time the reply took to be read; never our own backoff's draw.
        assert 0 <= wait <= 1.25
        assert wait != RetryPolicy(retries=1).delay(1, None, random.Random(1))
    else:
        assert wait == expected


def test_every_request_sent_is_counted_in_attempts() -> None:
    with (
        FakeOpenAIServer(
            reply="The answer is 7",
            fault_rate=0.3,
            fault_kinds=("429", "500", "reset", "malformed", "empty_choices", "null_content"),
            retry_after=0,
            seed=3,
        ) as flaky,
        FakeOpenAIServer(reply="The answer is 7") as healthy,
    ):
        res = nbt.orchestrate(
            "{q}",
            [local(flaky, fallbacks=[local(healthy, "gpt-4o")])],
            data=rows(60),
            retries=1,
            concurrency=16,
            cache="off",
        )
        sent = flaky.request_count + healthy.request_count
    assert res.outputs["output"].notna().all()
    assert res.outputs["attempts"].sum() == sent
    assert flaky.faults_served and healthy.request_count > 0


def test_retry_policy_caps_every_form() -> None:
    policy = RetryPolicy()
    assert policy.delay(1, 1e6, random.Random(0)) == policy.max_retry_after_s
    assert not math.isnan(policy.delay(3, None, random.Random(0)))


def test_a_reply_that_waits_for_a_busy_loop_is_not_a_timeout_nor_sent_again() -> None:
    """The loop is blocked for 2.5 s right after the requests went out (as a loaded machine
    or litellm's own CPU would): the replies came in time and must be taken, once each."""
    loops: list[asyncio.AbstractEventLoop] = []
    blocked: list[bool] = []

    def reply(req) -> str:
        if not blocked:
            blocked.append(True)
            loops[0].call_soon_threadsafe(time.sleep, 2.5)
        return "The answer is 7"

    def started(runner) -> None:
        loops.append(asyncio.get_running_loop())

    with FakeOpenAIServer(reply=reply, latency=0.05) as server:
        res = nbt.orchestrate(
            "{q}", [local(server)], data=rows(8), timeout=1, on_start=started, cache="off"
        )
        assert server.request_count == 8
    assert res.outputs["output"].notna().all()
    assert res.outputs["attempts"].eq(1).all()


def test_time_waiting_for_a_thread_to_build_the_request_is_not_the_request_timing_out() -> None:
    """litellm builds each request on the loop's thread pool; with the pool busy for 2.5 s
    (many calls at once on a loaded machine), no call may time out before it is even sent."""
    release = threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    def block_the_pool() -> None:
        for _ in range(64):  # more jobs than the pool has threads, on any machine
            loops[0].run_in_executor(None, release.wait, 10)
        threading.Timer(2.5, release.set).start()

    def reply(req) -> str:
        if not release.is_set() and not loops[1:]:
            loops.append(loops[0])
            loops[0].call_soon_threadsafe(block_the_pool)
        return "The answer is 7"

    def started(runner) -> None:
        loops.append(asyncio.get_running_loop())

    with FakeOpenAIServer(reply=reply, latency=0.05) as server:
        res = nbt.orchestrate(
            "{q}",
            [local(server, transport="litellm")],  # the path with a thread pool
            data=rows(8),
            timeout=1,
            concurrency=2,
            on_start=started,
            cache="off",
        )
        assert server.request_count == 8
    assert res.outputs["output"].notna().all()
    assert res.outputs["attempts"].eq(1).all()


def test_cancel_leaves_no_coroutine_never_awaited() -> None:
    """Cancelling while litellm builds requests on its threads dropped their coroutines:
    "RuntimeWarning: coroutine ... acompletion was never awaited" in the user's cell."""
    import subprocess
    import sys
    import textwrap

    with FakeOpenAIServer(reply="ok", latency=0.01) as server:
        code = f"""
            import gc, threading, pandas as pd, nbtoolkit as nbt
            # litellm's path: the lean transport has no thread pool to drop coroutines in.
            m = nbt.Model("openai/x", api_base="{server.base_url}", api_key_env="LOCAL_KEY",
                          transport="litellm")
            data = pd.DataFrame({{"q": [f"q{{i}}" for i in range(400)]}})
            for delay in (0.3, 0.5, 0.7, 0.9):
                def started(runner, delay=delay):
                    threading.Timer(delay, runner.cancel).start()
                res = nbt.orchestrate("{{q}}", [m], data=data, concurrency=32, cache="off",
                                      audit=False, on_start=started)
                assert res.cancelled
                gc.collect()
            print("done", flush=True)
            """
        child = subprocess.run(
            [sys.executable, "-W", "default", "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=240,
            env={**__import__("os").environ, "LOCAL_KEY": CANARY_KEY},
        )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "done"
    assert "never awaited" not in child.stderr, child.stderr


def test_a_cancelled_run_has_every_call_it_made_in_the_audit_log(tmp_path) -> None:
    """The log is written in batches; a run that ends early still writes what it paid for."""
    import threading

    log = tmp_path / "audit.jsonl"

    def started(runner) -> None:
        threading.Timer(0.4, runner.cancel).start()

    with FakeOpenAIServer(reply="The answer is 7", latency=0.02) as server:
        res = nbt.orchestrate(
            "{q}",
            [local(server)],
            data=rows(400),
            audit=str(log),
            cache="off",
            concurrency=2,
            on_start=started,
        )
    assert res.cancelled
    made = int(res.outputs["error"].isna().sum())
    assert 0 < made < 400
    assert len(audit.read(log)) >= made  # every answered call is in the log


def test_audit_records_are_batched_but_none_is_lost(tmp_path) -> None:
    log = audit.AuditLog(tmp_path / "a.jsonl", flush_every=3, flush_after_s=3600)
    for i in range(7):
        log.write({"run_id": "r", "row": i, "output": "x"})
    assert len(audit.read(log.path)) == 6  # two batches of three written
    log.flush()
    assert [r["row"] for r in audit.read(log.path)] == list(range(7))


def test_an_audit_record_is_strict_json_whichever_encoder_writes_it(tmp_path) -> None:
    # The lone surrogate sends the record to the json module's path: NaN and infinity must
    # still be null there (strict JSON readers refuse NaN), as orjson writes them.
    log = audit.AuditLog(tmp_path / "a.jsonl")
    for output in ("fine", "bad \ud800 text"):
        log.write(
            {
                "run_id": "r",
                "output": output,
                "cost_usd": math.nan,
                "latency_s": math.inf,
                # Nested too: a run's parameters (logit_bias=-inf is a real one).
                "params": {"logit_bias": {"50256": -math.inf}, "stop": [math.nan, "x"]},
            }
        )
    log.flush()

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    lines = log.path.read_text("utf-8").splitlines()
    records = [json.loads(line, parse_constant=refuse) for line in lines]
    assert [(r["cost_usd"], r["latency_s"]) for r in records] == [(None, None)] * 2
    assert [r["params"] for r in records] == [
        {"logit_bias": {"50256": None}, "stop": [None, "x"]}
    ] * 2
    assert records[1]["output"] == "bad \ud800 text"


def test_a_key_anywhere_in_an_audit_record_is_hidden(tmp_path, monkeypatch) -> None:
    secret = "sk-proj-" + "Q7r" * 12
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    log = audit.AuditLog(tmp_path / "a.jsonl")
    log.write({"run_id": "r", "params": {"note": [f"key {secret}"], secret: 1}, "error": secret})
    log.flush()
    text = log.path.read_text()
    assert secret not in text and secret[:12] not in text


@pytest.mark.parametrize(
    "entry",
    [
        Entry("k", "openai/m", "p", "The answer is 7", 12, 3, 0.00125, 0.4),
        Entry("k", "openai/m", "p", "", None, None, None, None),  # an old or foreign entry
        Entry("k", "openai/m", "p", "key sk-proj-" + "Q7r" * 12 + " in it", 1, 1, 0.0, 0.0),
        Entry("k", "openai/m", "p", "bad \ud800 text", True, 2**70, 1, 2),  # odd types kept
        # A shared cache's entry is JSON: its numbers may be anything.
        Entry("k", "openai/m", "p", "ok", "sk-proj-" + "Q7r" * 12, [1.5], math.inf, {"a": 1}),
    ],
)
def test_a_cached_call_is_logged_and_stored_as_its_outcome_would_be(
    entry, tmp_path, monkeypatch
) -> None:
    # A cached re-run takes a shorter way (columns and records made from the entry): it must
    # give what the outcome of from_entry gives, byte for byte in the log.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-" + "Q7r" * 12)
    common = dict(
        run_id="r",
        model="openai/m",
        row=3,
        sample=1,
        prompt_sha256="ab" * 8,
        when="2026-12-01T00:00:00+0000",
        params_logged={"temperature": 0},
    )
    slow, fast = audit.AuditLog(tmp_path / "slow.jsonl"), audit.AuditLog(tmp_path / "fast.jsonl")
    slow.write(audit.call_record(outcome=from_entry(entry), params={}, messages=[], **common))
    slow.write(audit.cached_record(entry=entry, **common))
    hit = ("openai/m", common["params_logged"], 3, 1, "ab" * 8, entry)
    fast.write_many(audit.cached_lines(run_id="r", when=common["when"], hits=[hit, hit]))
    slow.flush(), fast.flush()
    assert fast.path.read_bytes() == slow.path.read_bytes()
    assert "Q7r" * 12 not in fast.path.read_text("utf-8", "surrogatepass")
    assert len(audit.read(fast.path)) == 2

    def shown(o: Outcome) -> list:
        return [
            None if isinstance(v, float) and math.isnan(v) else v for v in dataclasses.astuple(o)
        ]

    by_outcome, by_entry = Outcomes(2), Outcomes(2)
    by_outcome[1] = from_entry(entry)
    by_entry[1] = skipped("was here before")  # replaced whole
    by_entry.put_entry(1, entry)
    assert shown(by_entry[1]) == shown(by_outcome[1])
    assert by_entry.reply(1) == (entry.output, None) and by_entry.count_cached() == 1
