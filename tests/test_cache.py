"""Record and replay: the SQLite cache, its modes, export to recordings, the audit log."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit.cache import Cache, cache_dir, call_key
from nbtoolkit.testing import FakeOpenAIServer

from .conftest import CANARY_KEY

FRAME_COLS = [
    "row",
    "model",
    "sample",
    "output",
    "answer",
    "valid",
    "error",
    "prompt_tokens",
    "completion_tokens",
]


def model(server: FakeOpenAIServer, name: str = "local-a", **kw) -> nbt.Model:
    return nbt.Model(f"openai/{name}", api_base=server.base_url, api_key_env="LOCAL_KEY", **kw)


@pytest.fixture(autouse=True)
def _key(monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_KEY", CANARY_KEY)


@pytest.fixture
def data() -> pd.DataFrame:
    return pd.DataFrame({"q": [f"What is {i} + {i}?" for i in range(5)]})


def test_second_identical_run_makes_no_call_and_returns_equal_frames(data) -> None:
    with FakeOpenAIServer(reply=lambda req: "The answer is 7") as server:
        models = [model(server, "a"), model(server, "b")]
        first = nbt.orchestrate("{q}", models, data=data, extract="number", samples=2)
        assert server.request_count == 5 * 2 * 2
        second = nbt.orchestrate("{q}", models, data=data, extract="number", samples=2)
        assert server.request_count == 5 * 2 * 2
    assert second.outputs["cached"].all() and not first.outputs["cached"].any()
    pd.testing.assert_frame_equal(first.outputs[FRAME_COLS], second.outputs[FRAME_COLS])
    pd.testing.assert_frame_equal(first.consensus, second.consensus)
    assert second.totals()["spent_usd"] == 0


def test_sample_index_and_provider_params_are_part_of_the_key() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    base = call_key("m", msgs, {"temperature": 1}, 0)
    assert call_key("m", msgs, {"temperature": 1}, 1) != base
    assert call_key("m", msgs, {"temperature": 1, "top_k": 5}, 0) != base
    assert call_key("m", msgs, {"temperature": 1, "api_key": "x", "timeout": 3}, 0) == base


def test_refresh_calls_again_and_off_never_touches_the_cache() -> None:
    with FakeOpenAIServer(reply="hello") as server:
        m = [model(server)]
        nbt.orchestrate("hi", m)
        nbt.orchestrate("hi", m, cache="refresh")
        assert server.request_count == 2
        nbt.orchestrate("hi", m, cache="off")
        nbt.orchestrate("hi", m, cache="off")
        assert server.request_count == 4
    assert Cache().info()["entries"] == 1


def test_replay_only_makes_no_call_and_a_miss_is_an_error_row() -> None:
    with FakeOpenAIServer(reply="hello") as server:
        m = [model(server)]
        nbt.orchestrate("recorded", m)
        assert server.request_count == 1
        again = nbt.orchestrate("recorded", m, cache="replay-only")
        assert again.outputs["output"].iloc[0] == "hello"
        mixed = nbt.orchestrate("never seen", [*m, "sim/swift-mini"], cache="replay-only")
        assert server.request_count == 1
    row = mixed.outputs.set_index("model").loc["openai/local-a"]
    assert "replay-only" in row["error"] and pd.isna(row["output"])


def test_errors_are_never_cached() -> None:
    with FakeOpenAIServer(reply="fine", faults={0: "500", 1: "500", 2: "500"}) as server:
        m = [model(server)]
        with pytest.raises(nbt.RunFailedError):
            nbt.orchestrate("hi", m, retries=2)
        assert Cache().info()["entries"] == 0
        res = nbt.orchestrate("hi", m)
        assert res.outputs["output"].iloc[0] == "fine" and server.request_count == 4


def test_export_then_replay_anywhere(tmp_path, monkeypatch) -> None:
    with FakeOpenAIServer(
        reply=lambda req: "answer to " + req["messages"][-1]["content"]
    ) as server:
        live = nbt.orchestrate(
            "{q}", [model(server, "gpt-x")], data=pd.DataFrame({"q": ["a", "b"]})
        )
    path = tmp_path / "exported.jsonl.gz"
    assert Cache().export(path) == 2
    monkeypatch.setenv("NBTOOLKIT_CACHE_DIR", str(tmp_path / "elsewhere"))
    replayed = nbt.orchestrate(
        "{q}", ["replay/openai/gpt-x"], data=pd.DataFrame({"q": ["a", "b"]}), recordings=path
    )
    assert replayed.outputs["output"].tolist() == live.outputs["output"].tolist()


def test_concurrent_writers_from_two_processes(tmp_path) -> None:
    import subprocess
    import sys

    db = tmp_path / "shared.sqlite"
    code = (
        "import sys; from nbtoolkit.cache import Cache, Entry\n"
        "c = Cache(sys.argv[1])\n"
        "for i in range(200): c.put(Entry(f'{sys.argv[2]}-{i}', 'm', 'p', 'o', 1, 1, 0.1, 0.2))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), tag]) for tag in ("a", "b")]
    assert all(p.wait(60) == 0 for p in procs)
    cache = Cache(db)
    assert cache.info()["entries"] == 400 and cache.integrity_ok()


def test_audit_log_has_every_call_and_no_key(data) -> None:
    with FakeOpenAIServer(reply="ok", faults={0: "500"}) as server:
        res = nbt.orchestrate("{q}", [model(server)], data=data, retries=0)
    log = cache_dir() / "audit.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 5 and {r["run_id"] for r in records} == {res.run_id}
    assert sum(r["error"] is not None for r in records) == 1
    assert {
        "model",
        "params",
        "prompt_sha256",
        "output",
        "cost_usd",
        "latency_s",
        "attempts",
    } <= set(records[0])


def test_canary_key_is_written_nowhere(data, tmp_path) -> None:
    with FakeOpenAIServer(reply="echoing nothing secret", faults={0: "500", 1: "429"}) as server:
        res = nbt.orchestrate("{q}", [model(server)], data=data, retries=0)
    res.outputs.to_csv(tmp_path / "outputs.csv")
    res.consensus.to_csv(tmp_path / "consensus.csv")
    Cache().export(tmp_path / "export.jsonl")
    written = [p for p in (tmp_path).rglob("*") if p.is_file()]
    assert any(p.name == "cache.sqlite" for p in written) and any(
        p.name == "audit.jsonl" for p in written
    )
    for path in written:
        assert CANARY_KEY.encode() not in path.read_bytes(), path
    assert CANARY_KEY not in repr(res) + res._repr_html_()
    with sqlite3.connect(cache_dir() / "cache.sqlite") as conn:
        dump = "\n".join(conn.iterdump())
    assert CANARY_KEY not in dump


def test_the_plan_s_key_maker_gives_call_key_s_keys() -> None:
    from pydantic import BaseModel

    from nbtoolkit.cache import KeyMaker, call_key

    class Answer(BaseModel):
        value: int

    maker = KeyMaker()
    rows = [
        [{"role": "system", "content": "Réponds"}, {"role": "user", "content": "2+2? {x}"}],
        [{"role": "user", "content": "lone \ud800 surrogate"}],
    ]
    for params in (
        {},
        {"temperature": 0.2, "api_key": "sk-x", "timeout": 3, "extra_body": {"b": 1, "a": [2]}},
        {"response_format": Answer, "seed": 4, "nbt_store": "x"},
    ):
        for sample in (0, 3, 1, True, 1.0):  # equal as dict keys, each written its own way
            for label in (None, "openai/m", "copy-1", 'modèle "ü"'):
                # Rows in turn, each twice: from the memo, and after another row's.
                for messages in [*rows, *rows, rows[0]]:
                    for model_id in ("openai/m", "openai/other"):
                        got = maker.key(model_id, messages, params, sample, label)
                        assert got == call_key(model_id, messages, params, sample, label)


def test_a_cached_rerun_logs_every_call_as_its_first_run_did(data, tmp_path) -> None:
    log = tmp_path / "audit.jsonl"
    with FakeOpenAIServer(reply="The answer is 7", prompt_tokens=11, completion_tokens=4) as server:
        first = nbt.orchestrate(
            "{q}", [model(server), model(server, "local-b")], data=data, audit=str(log)
        )
        again = nbt.orchestrate(
            "{q}", [model(server), model(server, "local-b")], data=data, audit=str(log)
        )
        assert server.request_count == 10
    records = [json.loads(line) for line in log.read_text().splitlines()]
    made = [r for r in records if r["run_id"] == first.run_id]
    cached = [r for r in records if r["run_id"] == again.run_id]
    assert len(made) == len(cached) == 10
    assert all(r["cached"] and r["attempts"] == 0 and r["error"] is None for r in cached)

    def same(r: dict) -> tuple:
        return (
            r["model"],
            r["row"],
            r["sample"],
            r["params"],
            r["prompt_sha256"],
            r["output"],
            r["prompt_tokens"],
            r["completion_tokens"],
        )

    assert sorted(map(same, cached)) == sorted(map(same, made))
    assert {r["prompt_tokens"] for r in cached} == {11}
    assert again.outputs["cached"].all() and again.outputs["attempts"].eq(0).all()


def test_a_cached_rerun_that_cannot_write_its_audit_log_keeps_every_answer(data, tmp_path) -> None:
    with FakeOpenAIServer(reply="The answer is 7") as server:
        nbt.orchestrate("{q}", [model(server)], data=data)
        res = nbt.orchestrate("{q}", [model(server)], data=data, audit=str(tmp_path))
        assert server.request_count == 5
    assert res.outputs["output"].eq("The answer is 7").all() and res.outputs["cached"].all()
    (warning,) = [w for w in res.warnings if "audit log" in w]
    assert "Is a directory" in warning and "5 calls are not in the audit log" in warning


def test_a_big_cached_rerun_that_cannot_write_its_audit_log_counts_every_record(
    tmp_path,
) -> None:
    many = pd.DataFrame({"q": [f"question {i}" for i in range(700)]})  # records in batches
    with FakeOpenAIServer(reply="The answer is 7") as server:
        nbt.orchestrate("{q}", [model(server)], data=many, audit=False, concurrency=32)
        res = nbt.orchestrate("{q}", [model(server)], data=many, audit=str(tmp_path))
        assert server.request_count == 700
    assert res.outputs["cached"].all()
    (warning,) = [w for w in res.warnings if "audit log" in w]
    assert "700 calls are not in the audit log" in warning
