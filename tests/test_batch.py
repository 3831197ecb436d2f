"""Provider batch APIs: the fake Files/Batches server through litellm's real client, and
nbt.submit / attach / Job end to end against it (issue 17)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import nbtoolkit as nbt  # noqa: E402
from nbtoolkit.batch import POLL_ENV  # noqa: E402
from nbtoolkit.errors import BatchPendingError, ConfigError  # noqa: E402
from nbtoolkit.providers import batches as provider_batches  # noqa: E402
from nbtoolkit.results import CONSENSUS_COLUMNS, OUTPUT_COLUMNS  # noqa: E402
from nbtoolkit.testing import FakeBatchServer, FakeOpenAIServer  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:Item.* on TypedDict class .* using the `ReadOnly` qualifier:UserWarning"
)

QUESTIONS = pd.DataFrame({"q": ["2+2", "3+3", "4+4", "5+5", "6+6"]})
PROMPT = "What is {q}? Answer with a number."


def answer(request: dict[str, Any]) -> str:
    """The true answer to the 'What is a+b?' prompt of the request."""
    text = request["messages"][-1]["content"]
    a, b = text.split("What is ")[1].split("?")[0].split("+")
    return f"The answer is {int(a) + int(b)}"


def gpt(server: FakeBatchServer | FakeOpenAIServer) -> nbt.Model:
    return nbt.Model("openai/gpt-4o-mini", api_base=server.base_url)


def run(awaitable: Any) -> Any:
    """Run on nbtoolkit's shared loop, as the library does: litellm caches its clients per
    loop, and a loop closed by asyncio.run would leave their sockets open."""
    import gc
    import warnings

    from nbtoolkit.loop import run_sync

    try:
        return run_sync(awaitable)
    finally:
        # litellm's batch and file functions leave an unclosed OpenAI client per call (see
        # providers.batches._litellm_batch_call, which the library's own calls go through).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


async def _litellm_batch(server: FakeBatchServer, lines: list[dict[str, Any]]) -> Any:
    import litellm

    auth = {"custom_llm_provider": "openai", "api_base": server.base_url, "api_key": "sk-test"}
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = await litellm.acreate_file(file=("in.jsonl", data), purpose="batch", **auth)
    batch = await litellm.acreate_batch(
        completion_window="24h",
        endpoint="/v1/chat/completions",
        input_file_id=uploaded.id,
        **auth,
    )
    states = [batch.status]
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        batch = await litellm.aretrieve_batch(batch_id=batch.id, **auth)
        states.append(batch.status)
    files = {}
    for name in ("output_file_id", "error_file_id"):
        file_id = getattr(batch, name)
        if file_id:
            content = await litellm.afile_content(file_id=file_id, **auth)
            files[name] = [json.loads(x) for x in content.content.splitlines()]
    return batch, states, files


def _lines(n: int) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"What is {i}+1?"}],
            },
        }
        for i in range(n)
    ]


# -- the fake server, through litellm's own client ---------------------------------------


def test_fake_batch_server_steps_states_and_writes_output_and_error_files() -> None:
    fail = lambda custom_id, body: "overloaded" if custom_id == "r1" else None  # noqa: E731
    with FakeBatchServer(answer, fail=fail) as server:
        batch, states, files = run(_litellm_batch(server, _lines(3)))
        assert states == ["validating", "validating", "in_progress", "completed"]
        assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 1)
        out = {line["custom_id"]: line for line in files["output_file_id"]}
        body = out["r2"]["response"]["body"]
        assert body["choices"][0]["message"]["content"] == "The answer is 3"
        assert body["usage"]["prompt_tokens"] > 0
        (error,) = files["error_file_id"]
        assert error["custom_id"] == "r1"
        assert error["response"]["status_code"] == 500
        assert server.batches_created == 1


@pytest.mark.parametrize("final", ["expired", "cancelled"])
def test_expired_and_cancelled_batches_answer_half_and_list_the_rest(final: str) -> None:
    with FakeBatchServer(answer, final={0: final}) as server:
        batch, states, files = run(_litellm_batch(server, _lines(4)))
        assert batch.status == final
        assert [x["custom_id"] for x in files["output_file_id"]] == ["r0", "r1"]
        codes = {x["custom_id"]: x["error"]["code"] for x in files["error_file_id"]}
        assert codes == {"r2": f"batch_{final}", "r3": f"batch_{final}"}


def test_a_batch_over_the_limit_fails_validation_with_a_reason() -> None:
    with FakeBatchServer(answer, max_requests=2) as server:
        batch, _, files = run(_litellm_batch(server, _lines(3)))
        assert batch.status == "failed" and files == {}
        assert "limit is 2" in batch.errors.data[0].message


def test_cancel_through_litellm() -> None:
    import litellm

    async def go(server: FakeBatchServer) -> tuple[str, str]:
        auth = {"custom_llm_provider": "openai", "api_base": server.base_url, "api_key": "k"}
        data = "".join(json.dumps(x) + "\n" for x in _lines(2)).encode()
        f = await litellm.acreate_file(file=("a.jsonl", data), purpose="batch", **auth)
        b = await litellm.acreate_batch(
            completion_window="24h", endpoint="/v1/chat/completions", input_file_id=f.id, **auth
        )
        cancelling = await litellm.acancel_batch(batch_id=b.id, **auth)
        after = await litellm.aretrieve_batch(batch_id=b.id, **auth)
        return cancelling.status, after.status

    with FakeBatchServer(answer) as server:
        assert run(go(server)) == ("cancelling", "cancelled")


# -- submit / wait / result ----------------------------------------------------------------


def test_submit_returns_a_job_and_its_result_has_orchestrates_frames() -> None:
    fail = lambda custom_id, body: "the model is overloaded" if "5+5" in str(body) else None  # noqa: E731
    with FakeBatchServer(answer, fail=fail) as server:
        job = nbt.submit(PROMPT, [gpt(server), "sim/swift-mini"], data=QUESTIONS, extract="number")
        assert server.batches_created == 1
        assert job.parts[0].status == "validating" and job.parts[0].batch_id
        assert "sim/swift-mini" in job.live and "runs live" in repr(job)
        assert "batch_0000" in job._repr_html_()
        with pytest.raises(BatchPendingError, match=r"job\.wait\(\)"):
            job.result()
        res = job.wait(poll_s=0, progress=False)
    assert list(res.outputs.columns) == OUTPUT_COLUMNS
    assert [c for c in res.consensus.columns if c in CONSENSUS_COLUMNS] == CONSENSUS_COLUMNS
    batched = res.outputs[res.outputs["model"] == "openai/gpt-4o-mini"].set_index("row")
    assert batched.loc[0, "answer"] == "4" and batched.loc[4, "answer"] == "12"
    # A request the provider failed is an error row with the provider's reason.
    assert batched.loc[3, "output"] is None or pd.isna(batched.loc[3, "output"])
    assert "the model is overloaded" in batched.loc[3, "error"]
    # Billed at the table's batch price (gpt-4o-mini: $0.075 / $0.30 per million tokens).
    row = batched.loc[0]
    expected = row["prompt_tokens"] * 7.5e-8 + row["completion_tokens"] * 3e-7
    assert row["cost_usd"] == pytest.approx(expected)
    assert res.meta["batch"]["batches"] == {"openai/gpt-4o-mini": ["batch_0000"]}
    assert set(res.meta["batch"]["live"]) == {"sim/swift-mini"}
    assert any("sim/swift-mini ran live" in w for w in res.warnings)
    assert len(server.chat_requests) == 0  # nothing of the batched model went live


def test_collected_replies_are_cached_so_replay_only_gives_the_same_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(POLL_ENV, "0")
    with FakeBatchServer(answer) as server:
        model = gpt(server)
        res = nbt.orchestrate(
            PROMPT, [model], data=QUESTIONS, extract="number", batch=True, progress=None
        )
        again = nbt.orchestrate(
            PROMPT, [model], data=QUESTIONS, extract="number", cache="replay-only"
        )
        assert server.batches_created == 1 and server.chat_requests == []
    columns = ["row", "output", "answer", "prompt_tokens", "completion_tokens", "cost_usd"]
    pd.testing.assert_frame_equal(res.outputs[columns], again.outputs[columns])
    assert again.outputs["cached"].all()
    exported = nbt.Cache().export(tmp_path / "rec.jsonl")
    assert exported == len(QUESTIONS)


def test_requests_are_split_by_the_per_batch_limit() -> None:
    with FakeBatchServer(answer, max_requests=2) as server:
        job = nbt.submit(PROMPT, [gpt(server)], data=QUESTIONS, max_requests_per_batch=2)
        res = job.wait(poll_s=0, progress=False)
        assert server.batches_created == 3
        assert [b["request_counts"]["total"] for b in server.batches] == [2, 2, 1]
    assert res.errors.empty and res.outputs["output"].notna().all()


def test_duplicate_rows_are_one_request_and_billed_once() -> None:
    data = pd.DataFrame({"q": ["2+2", "2+2", "3+3"]})
    with FakeBatchServer(answer) as server:
        res = nbt.submit(PROMPT, [gpt(server)], data=data).wait(poll_s=0, progress=False)
        assert server.batches[0]["request_counts"]["total"] == 2
    costs = res.outputs["cost_usd"].tolist()
    assert costs[1] == 0.0 and costs[0] > 0 and res.outputs["output"].notna().all()


def test_expired_requests_are_error_rows_and_retry_failed_live_resends_only_those() -> None:
    with FakeBatchServer(answer, final={0: "expired"}) as server:
        job = nbt.submit(PROMPT, [gpt(server)], data=QUESTIONS, extract="number")
        res = job.wait(poll_s=0, progress=False)
        failed = res.errors
        assert len(failed) == 3  # the fake answers the first half of an expired batch
        assert failed["error"].str.contains("batch_expired").all()
        assert failed["error"].str.contains("completion window expired").all()
        fixed = job.retry_failed(live=True)
        assert len(server.chat_requests) == 3
        assert fixed.errors.empty and fixed.outputs["answer"].tolist() == [
            "4",
            "6",
            "8",
            "10",
            "12",
        ]
        again = nbt.attach(job.id).result()  # the retried replies are cached now
        assert len(server.chat_requests) == 3 and again.errors.empty


def test_retry_failed_as_a_new_batch_sends_only_the_failed_requests() -> None:
    with FakeBatchServer(answer, final={0: "failed"}) as server:
        job = nbt.submit(PROMPT, [gpt(server)], data=QUESTIONS)
        with pytest.raises(nbt.RunFailedError, match="every call failed") as failed:
            job.wait(poll_s=0, progress=False)
        errors = failed.value.result.errors
        assert len(errors) == 5 and errors["error"].str.startswith("BatchFailed").all()
        assert "could not be validated" in errors["error"].iloc[0]
        job.retry_failed(live=False)
        assert server.batches_created == 2
        res = job.wait(poll_s=0, progress=False)
        assert res.errors.empty and server.chat_requests == []


def test_a_batch_the_endpoint_refuses_is_error_rows_not_a_lost_run() -> None:
    with FakeOpenAIServer(reply="The answer is 4") as server:  # no /files, no /batches
        job = nbt.submit(PROMPT, [gpt(server), "sim/swift-mini"], data=QUESTIONS)
        assert job.parts[0].status == "not_submitted" and "404" in (job.parts[0].error or "")
        res = job.wait(poll_s=0, progress=False)
    errors = res.errors
    assert len(errors) == 5 and errors["error"].str.startswith("BatchNotSubmitted").all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategy": "cascade"}, "one stage"),
        ({"cache": "replay-only"}, "replay-only"),
        ({"max_cost_usd": 1.0}, "estimate"),
        ({"max_requests_per_batch": 0}, "whole number"),
        ({"stream": True}, "nothing to stream"),
        ({"proxy": "http://127.0.0.1:9"}, "proxy is not supported yet"),
    ],
)
def test_what_a_batch_cannot_do_is_refused_before_anything_is_sent(
    options: dict[str, Any], message: str
) -> None:
    with FakeBatchServer(answer) as server:
        with pytest.raises(ConfigError, match=message):
            nbt.submit(PROMPT, [gpt(server), "sim/swift-mini"], data=QUESTIONS, **options)
        assert server.batches_created == 0


def test_the_environments_key_never_goes_to_another_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import CANARY_KEY

    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    with FakeBatchServer(answer) as server:
        nbt.submit(PROMPT, [gpt(server)], data=QUESTIONS).wait(poll_s=0, progress=False)
        assert server.authorizations and all(
            CANARY_KEY not in (a or "") for a in server.authorizations
        )


def test_anthropic_is_said_to_run_live_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    with FakeBatchServer(answer) as server:
        job = nbt.submit(PROMPT, [gpt(server), "anthropic/claude-sonnet-4-5"], data=QUESTIONS)
        assert "17265" in job.live["anthropic/claude-sonnet-4-5"]
        assert "17265" in repr(job)
        assert server.batches_created == 1


def test_submit_in_one_process_killed_attach_in_another_never_submits_twice(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "NBTOOLKIT_CACHE_DIR": str(tmp_path / "cache")}
    with FakeBatchServer(answer, polls=3) as server:
        submit = textwrap.dedent(
            f"""
            import os, signal, pandas as pd, nbtoolkit as nbt
            job = nbt.submit({PROMPT!r}, [nbt.Model("openai/gpt-4o-mini", api_base={server.base_url!r}),
                             "sim/swift-mini"], data=pd.DataFrame({{"q": {QUESTIONS.q.tolist()!r}}}),
                             extract="number", max_requests_per_batch=2)
            print(job.id, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # no clean exit: the kernel died
            """
        )
        first = subprocess.run(
            [sys.executable, "-c", submit], env=env, capture_output=True, text=True, timeout=120
        )
        assert first.returncode == -9, first.stderr[-2000:]
        job_id = first.stdout.strip()
        assert server.batches_created == 3
        attach = textwrap.dedent(
            f"""
            import json, nbtoolkit as nbt
            job = nbt.attach({job_id!r})
            res = job.wait(poll_s=0, progress=False)
            print(json.dumps({{"answers": res.outputs["answer"].tolist(),
                               "errors": int(res.failed_mask().sum()),
                               "live": sorted(res.meta["batch"]["live"])}}))
            """
        )
        second = subprocess.run(
            [sys.executable, "-c", attach], env=env, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 0, second.stderr[-2000:]
        got = json.loads(second.stdout.strip().splitlines()[-1])
        assert server.batches_created == 3  # attach submitted nothing
        assert server.chat_requests == []
    assert got["errors"] == 0 and got["live"] == ["sim/swift-mini"]
    assert got["answers"][0::2] == ["4", "6", "8", "10", "12"]


def test_attach_asks_again_for_an_extractor_that_could_not_be_stored() -> None:
    with FakeBatchServer(answer) as server:
        job = nbt.submit(PROMPT, [gpt(server)], data=QUESTIONS, extract=lambda text: text[-2:])
        with pytest.raises(ConfigError, match=r"extract=.*nbt\.attach"):
            nbt.attach(job.id)
        res = nbt.attach(job.id, extract=lambda text: text[-2:]).wait(poll_s=0, progress=False)
    assert str(res.outputs["answer"].tolist()[0]).strip() == "4"


def test_a_header_value_never_reaches_the_job_store_and_attach_asks_for_it() -> None:
    from nbtoolkit.cache import cache_dir

    token = "hdr-CANARY-7c1d9e0f2a"  # not shaped like any provider key: only its place tells

    def model(server: FakeBatchServer) -> nbt.Model:
        return nbt.Model(
            "openai/gpt-4o-mini", api_base=server.base_url, extra_headers={"X-Team": token}
        )

    with FakeBatchServer(answer) as server:
        job = nbt.submit(PROMPT, [model(server)], data=QUESTIONS)
        for file in cache_dir().iterdir():
            if file.is_file():
                assert token.encode() not in file.read_bytes(), file.name
        with pytest.raises(ConfigError, match=r"models=.*credential.*nbt\.attach"):
            nbt.attach(job.id)
        res = nbt.attach(job.id, models=[model(server)]).wait(poll_s=0, progress=False)
    assert res.outputs["error"].isna().all()
    assert res.outputs["output"].tolist()[0] == "The answer is 4"


def test_a_run_level_header_never_reaches_the_job_store_either() -> None:
    from nbtoolkit.cache import cache_dir

    token = "runHeaderZZ77665544aa"
    with FakeBatchServer(answer) as server:
        job = nbt.submit(PROMPT, [gpt(server)], data=QUESTIONS, extra_headers={"X-Run": token})
        for file in cache_dir().iterdir():
            if file.is_file():
                assert token.encode() not in file.read_bytes(), file.name
        with pytest.raises(ConfigError, match=r"extra_headers=.*nbt\.attach"):
            nbt.attach(job.id)


def test_attach_to_an_unknown_job_says_how_to_find_it() -> None:
    with pytest.raises(ConfigError, match="no batch job 'nbtb-nope'"):
        nbt.attach("nbtb-nope")


# -- prices --------------------------------------------------------------------------------


def test_batch_prices_from_the_table_else_half_the_live_price_else_unknown() -> None:
    inp, out, estimated = provider_batches.prices(nbt.Model("openai/gpt-4o-mini"))
    assert (inp, out, estimated) == (7.5e-8, 3e-7, False)
    own = nbt.Model(
        "openai/mine",
        api_base="http://127.0.0.1:9/v1",
        extra={"input_cost_per_token": 1e-6, "output_cost_per_token": 4e-6},
    )
    assert provider_batches.prices(own) == (5e-7, 2e-6, True)
    unknown = provider_batches.prices(nbt.Model("openai/mine", api_base="http://127.0.0.1:9/v1"))
    assert math.isnan(unknown[0]) and math.isnan(unknown[1])


def test_estimate_with_batch_shows_the_saving(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    est = nbt.estimate(
        PROMPT, ["gpt-4o-mini", "sim/swift-mini"], data=QUESTIONS, max_tokens=50, batch=True
    )
    gpt_row, sim_row = est.loc["gpt-4o-mini"], est.loc["sim/swift-mini"]
    assert bool(gpt_row["batch"]) and not bool(sim_row["batch"])
    assert gpt_row["cost_high_usd"] == pytest.approx(gpt_row["live_cost_high_usd"] / 2)
    assert sim_row["cost_high_usd"] == sim_row["live_cost_high_usd"]
    assert "as a batch" in est.summary() and "saving up to" in est.summary()
    plain = nbt.estimate(PROMPT, ["gpt-4o-mini"], data=QUESTIONS, max_tokens=50)
    assert "batch" not in plain.columns


# -- the front ends ------------------------------------------------------------------------


def test_orchestrate_cell_with_batch_in_a_real_kernel(tmp_path: Path) -> None:
    import nbformat

    from tests.conftest import execute_notebook

    with FakeBatchServer(answer) as server:
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell(
                "import os\nos.environ['NBTOOLKIT_BATCH_POLL_S'] = '0'\n"
                "import pandas as pd\n%load_ext nbtoolkit\n"
                f"df = pd.DataFrame({{'q': {QUESTIONS.q.tolist()!r}}})"
            ),
            nbformat.v4.new_code_cell(
                f"%%orchestrate -m sim/swift-mini --api-base {server.base_url} "
                "-m openai/gpt-4o-mini --over df --extract number --batch --out res "
                "--no-progress\nWhat is {q}? Answer with a number."
            ),
            nbformat.v4.new_code_cell(
                "import json\nprint(json.dumps({'batches': res.meta['batch']['batches'], "
                "'live': sorted(res.meta['batch']['live']), "
                "'answers': res.outputs['answer'].tolist()}))"
            ),
        ]
        path = tmp_path / "batch.ipynb"
        nbformat.write(nb, path)
        done = execute_notebook(path, tmp_path)
        assert server.batches_created == 1
    printed = json.loads(done.cells[2].outputs[-1]["text"].strip().splitlines()[-1])
    assert printed["batches"] == {"openai/gpt-4o-mini": ["batch_0000"]}
    assert printed["live"] == ["sim/swift-mini"]
    assert printed["answers"][1::2] == ["4", "6", "8", "10", "12"]


def test_report_with_batch_runs_the_template_with_batch_true(tmp_path: Path) -> None:
    from nbtoolkit.cli import main

    out = tmp_path / "r.ipynb"
    code = main(
        ["report", "compare_models", "-p", "rows", "3", "--batch", "--no-html", "-o", str(out)]
    )
    assert code == 0
    text = out.read_text()
    assert "ran live, not as a batch" in text  # simulated models have no batch API


def test_report_batch_on_a_template_without_it_is_one_clear_line(tmp_path: Path) -> None:
    from nbtoolkit.errors import ParameterError
    from nbtoolkit.report.run import run_report

    with pytest.raises(ParameterError, match="has no 'batch' parameter"):
        run_report("pipeline", tmp_path / "p.ipynb", batch=True, html=False)


def test_ctrl_c_stops_the_waiting_not_the_batch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import nbtoolkit.batch.job as job_module

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    with FakeBatchServer(answer, polls=2) as server:
        job = nbt.submit(PROMPT, [gpt(server)], data=QUESTIONS)
        with monkeypatch.context() as patch:
            patch.setattr(job_module.time, "sleep", interrupted)
            with pytest.raises(KeyboardInterrupt):
                job.wait(poll_s=1)
        assert f"nbt.attach('{job.id}')" in capsys.readouterr().err
        assert server.batches[0]["status"] != "cancelled"
        res = nbt.attach(job.id).wait(poll_s=0, progress=False)
        assert server.batches_created == 1 and res.errors.empty


def test_a_part_left_submitting_by_a_dead_process_becomes_error_rows_not_a_hang() -> None:
    import time

    from nbtoolkit.batch.store import JobStore

    with FakeBatchServer(answer) as server:
        job = nbt.submit(PROMPT, [gpt(server)], data=QUESTIONS)
        store = JobStore()
        part = store.parts(job.id)[0]
        part.batch_id, part.status = None, "submitting"  # as if killed before create returned
        store.update_part(job.id, part)
        store._run("UPDATE batch_parts SET updated = ?", (time.time() - 3600,))
        with pytest.raises(nbt.RunFailedError) as failed:
            nbt.attach(job.id).wait(poll_s=0, progress=False)
        errors = failed.value.result.errors["error"]
        assert errors.str.startswith("BatchNotSubmitted").all()
        assert errors.str.contains("stopped before the provider confirmed").all()


def test_split_keeps_each_batch_within_both_limits_and_refuses_a_line_over_the_file_limit() -> None:
    from nbtoolkit.batch.sending import split

    lines = [b"x" * 40, b"y" * 40, b"z" * 40, b"w" * 10]
    assert split(lines, 10, 100) == [[0, 1], [2, 3]]  # 80 bytes, then 50
    assert split(lines, 3, 1000) == [[0, 1, 2], [3]]
    with pytest.raises(ConfigError, match="over the batch file limit"):
        split([b"x" * 101], 10, 100)


def test_ctrl_c_in_orchestrate_batch_says_how_to_attach_and_never_claims_nothing_was_sent(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import _thread
    import threading

    monkeypatch.setenv("NBTOOLKIT_BATCH_POLL_S", "0.05")
    with FakeBatchServer(answer, polls=10_000) as server:  # never ends while we wait

        def interrupt_soon() -> None:
            # Once the job is polled, it has been submitted: the run is waiting for it.
            while sum(server._steps.values()) < 2:
                threading.Event().wait(0.02)
            _thread.interrupt_main()  # Ctrl-C, as the kernel sends it

        threading.Thread(target=interrupt_soon, daemon=True).start()
        with pytest.raises(KeyboardInterrupt) as stopped:
            nbt.orchestrate(PROMPT, [gpt(server)], data=QUESTIONS, batch=True)
    assert not isinstance(stopped.value, nbt.RunInterrupted)  # batches were sent
    assert "nbt.attach(" in capsys.readouterr().err
