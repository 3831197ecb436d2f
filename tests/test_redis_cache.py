"""The shared cache on a real redis-server (started here, on 127.0.0.1): issue 18."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import nbtoolkit as nbt
from nbtoolkit.cache import Entry
from nbtoolkit.redis_cache import RedisCache
from nbtoolkit.store import open_cache
from nbtoolkit.testing import FakeOpenAIServer

from .conftest import CANARY_KEY
from .redis_server import REDIS_SERVER, RedisServer, redis_server_fixture  # noqa: F401

pytest.importorskip("redis")
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not installed (apt-get install redis-server)"
)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_KEY", CANARY_KEY)


def local(server: FakeOpenAIServer, name: str) -> nbt.Model:
    return nbt.Model(f"openai/{name}", api_base=server.base_url, api_key_env="LOCAL_KEY")


RUN = """
import json, sys
import nbtoolkit as nbt
base, = sys.argv[1:]
models = [nbt.Model(f"openai/{n}", api_base=base, api_key_env="LOCAL_KEY") for n in ("a", "b")]
res = nbt.orchestrate("Question {q}", models, data=__import__("pandas").DataFrame(
    {"q": list("abcd")}), audit=False, progress="none")
print(json.dumps({"outputs": res.outputs["output"].tolist(),
                  "cached": int(res.outputs["cached"].sum())}))
"""


def test_two_processes_share_answers(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    env = {
        **os.environ,
        "NBTOOLKIT_CACHE_URL": redis_server.url,
        "NBTOOLKIT_CACHE_DIR": str(tmp_path / "first-person"),
    }
    with FakeOpenAIServer(reply=lambda r: "reply to " + r["messages"][-1]["content"]) as server:
        done = subprocess.run(
            [sys.executable, "-c", RUN, server.base_url],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        first = json.loads(done.stdout.strip().splitlines()[-1])
        assert server.request_count == 8 and first["cached"] == 0
        # Another person (another local cache folder), same shared Redis: no call at all.
        monkeypatch.setenv("NBTOOLKIT_CACHE_URL", redis_server.url)
        monkeypatch.setenv("NBTOOLKIT_CACHE_DIR", str(tmp_path / "second-person"))
        import pandas as pd

        res = nbt.orchestrate(
            "Question {q}",
            [local(server, "a"), local(server, "b")],
            data=pd.DataFrame({"q": list("abcd")}),
            audit=False,
            progress="none",
        )
        assert server.request_count == 8
    assert res.outputs["output"].tolist() == first["outputs"]
    assert res.outputs["cached"].all()
    assert not (tmp_path / "second-person" / "cache.sqlite").exists()


def test_export_and_replay_from_the_shared_cache(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBTOOLKIT_CACHE_URL", redis_server.url)
    with FakeOpenAIServer(reply="The answer is 4") as server:
        live = nbt.orchestrate("What is 2+2?", [local(server, "m")], audit=False, progress="none")
    cache = open_cache()
    assert isinstance(cache, RedisCache) and cache.info()["entries"] == 1
    path = tmp_path / "rec.jsonl"
    assert cache.export(path) == 1
    replayed = nbt.orchestrate(
        "What is 2+2?", ["replay/openai/m"], recordings=str(path), audit=False, progress="none"
    )
    assert replayed.outputs["output"].tolist() == live.outputs["output"].tolist()


def test_namespaces_keep_projects_apart(redis_server: RedisServer) -> None:
    entry = Entry("k1", "openai/m", "p", "o", 1, 2, 0.001, 0.1)
    a = RedisCache(redis_server.url, namespace="project-a")
    b = RedisCache(redis_server.url, namespace="project-b")
    a.put(entry)
    assert a.get_many(["k1"]) == {"k1": entry}
    assert b.get_many(["k1"]) == {}
    assert b.clear() == 0 and a.info()["entries"] == 1
    assert a.clear() == 1 and a.info()["entries"] == 0


WRITER = """
import sys
from nbtoolkit.cache import Entry
from nbtoolkit.redis_cache import RedisCache
cache = RedisCache(sys.argv[1])
i = 0
while True:
    cache.put(Entry(f"k{i}", "openai/m", "p" * 1000, "o" * 200_000, 1, 2, 0.5, 0.1))
    i += 1
    if i == 5:
        print("writing", flush=True)
"""


def test_a_writer_killed_mid_write_leaves_only_whole_entries(redis_server: RedisServer) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, redis_server.url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait(30)
    writer.stdout.close()
    cache = RedisCache(redis_server.url)
    entries = list(cache.entries())
    assert len(entries) >= 5
    assert all(len(e.output) == 200_000 and len(e.prompt) == 1000 for e in entries)
    assert cache.integrity_ok()


def test_redis_stopped_mid_run_keeps_every_answer_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_server = RedisServer(tmp_path)
    monkeypatch.setenv("NBTOOLKIT_CACHE_URL", redis_server.url)

    def reply(request: dict) -> str:
        redis_server.stop()  # the first call reaches the model after the lookup: Redis dies
        return "The answer is 4"

    import pandas as pd

    try:
        with FakeOpenAIServer(reply=reply) as server:
            res = nbt.orchestrate(
                "Question {q}",
                [local(server, "m")],
                data=pd.DataFrame({"q": list("abc")}),
                audit=False,
                progress="none",
                concurrency=1,
            )
    finally:
        redis_server.stop()
    assert res.outputs["output"].tolist() == ["The answer is 4"] * 3  # nothing paid for is lost
    said = " ".join(res.warnings)
    assert "Redis cache at redis://127.0.0.1" in said and "not" in said
    # A re-run while Redis is down makes the calls again and says the cache was not read.
    with FakeOpenAIServer(reply="The answer is 4") as server:
        again = nbt.orchestrate("Q", [local(server, "m")], audit=False, progress="none")
        assert server.request_count == 1
    assert any("Redis cache" in w for w in again.warnings)
    # replay-only makes no call: its rows are errors that name the server.
    with FakeOpenAIServer(reply="x") as server:
        with pytest.raises(nbt.RunFailedError) as failed:
            nbt.orchestrate(
                "Q", [local(server, "m")], audit=False, progress="none", cache="replay-only"
            )
        assert server.request_count == 0
    error = failed.value.result.outputs["error"].iloc[0]
    assert "cannot read the Redis cache at redis://127.0.0.1" in error


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret-pass@127.0.0.1:1/0",
        "redis://127.0.0.1:1/0?password=s3cret-pass",  # redis-py reads it from the query too
        "redis://127.0.0.1:1/?db=0&password=s3cret-pass&socket_timeout=1",
    ],
)
def test_a_password_in_the_url_is_never_shown(url: str, tmp_path: Path) -> None:
    cache = RedisCache(url, timeout_s=0.5)
    assert "s3cret" not in cache.path
    with pytest.raises(nbt.CacheError) as failed:
        cache.get_many(["k"])
    assert "s3cret" not in str(failed.value) and "127.0.0.1" in str(failed.value)
    log = tmp_path / "audit.jsonl"
    res = nbt.orchestrate("hi", ["sim/swift-mini"], cache_url=url, audit=str(log))
    assert "s3cret" not in " ".join(res.warnings) + log.read_text()


def test_a_url_that_is_not_redis_is_one_clear_line() -> None:
    with pytest.raises(nbt.ConfigError, match="not a Redis URL"):
        open_cache(url="http://127.0.0.1:6379")


def test_cache_url_names_the_shared_cache_for_one_run(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NBTOOLKIT_CACHE_URL", raising=False)
    monkeypatch.setenv("NBTOOLKIT_CACHE_DIR", str(tmp_path / "local"))
    with FakeOpenAIServer(reply="The answer is 4") as server:
        first = nbt.orchestrate(
            "What is 2+2?",
            [local(server, "m")],
            cache_url=redis_server.url,
            audit=False,
            progress="none",
        )
        again = nbt.orchestrate(
            "What is 2+2?",
            [local(server, "m")],
            cache_url=redis_server.url,
            audit=False,
            progress="none",
        )
        assert server.request_count == 1
    assert not first.outputs["cached"].any() and again.outputs["cached"].all()
    assert RedisCache(redis_server.url).info()["entries"] == 1
    assert not (tmp_path / "local" / "cache.sqlite").exists()
    with pytest.raises(nbt.ConfigError, match="not a Redis URL"):
        nbt.orchestrate("Hi", ["sim/oracle-large"], cache_url="http://127.0.0.1:6379")
