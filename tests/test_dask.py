"""nbtoolkit.dask on a real LocalCluster of 2 workers, with the shared cache on a real
redis-server (issue 18)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit.providers import sim

from .redis_server import REDIS_SERVER, RedisServer, redis_server_fixture  # noqa: F401

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

MODELS = ["sim/oracle-large", "sim/swift-mini", "sim/budget-a"]
PROMPT = "Item {n}. {question} Answer with a number."


def questions(rows: int) -> pd.DataFrame:
    bank = sim.question_bank()
    # A number per row makes every prompt its own: identical rows in two partitions would be
    # two runs (shared through the cache), where one run marks the second as shared.
    return pd.DataFrame(
        {"n": range(rows), "question": [bank[i % len(bank)]["question"] for i in range(rows)]}
    )


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    # Threads in one process: the workers see this process's environment (the test's cache
    # folder, NBTOOLKIT_SIM_TIME_SCALE=0) and start in a second, not in a process each.
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=2, processes=False, dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def single(df: pd.DataFrame, **options: Any) -> nbt.RunResult:
    return nbt.orchestrate(
        PROMPT, MODELS, data=df, extract="number", audit=False, progress="none", **options
    )


def test_partitions_on_two_workers_give_the_single_process_frames(client: Any) -> None:
    ddf = dd.from_pandas(questions(1000), npartitions=8)
    # The single-process run of the same frame as Dask holds it (Dask stores text as Arrow
    # strings; the consensus keeps the input columns' dtypes).
    expected = single(ddf.compute(), cache="off")
    res = nbt_dask().orchestrate(PROMPT, MODELS, data=ddf, extract="number", audit=False)
    assert list(res.outputs.columns) == list(expected.outputs.columns)
    assert res.outputs.dtypes.to_dict() == expected.outputs.dtypes.to_dict()
    assert res.consensus.dtypes.to_dict() == expected.consensus.dtypes.to_dict()
    with distributed.get_task_stream(client) as stream:
        done = res.compute()
    assert len({task["worker"] for task in stream.data}) == 2  # both workers ran partitions
    pd.testing.assert_frame_equal(done.outputs, expected.outputs)
    pd.testing.assert_frame_equal(done.consensus, expected.consensus)


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_a_second_run_is_answered_from_the_shared_cache(
    client: Any, redis_server: RedisServer
) -> None:
    from nbtoolkit.redis_cache import RedisCache
    from nbtoolkit.testing import FakeOpenAIServer

    def reply(request: dict) -> str:  # three models that each answer in their own way
        prompt = request["messages"][-1]["content"]
        return f"The answer is {(len(prompt) + len(request['model'])) % 7}."

    ddf = dd.from_pandas(questions(1000), npartitions=8)
    with FakeOpenAIServer(reply=reply) as server:
        live = [nbt.Model(f"openai/{n}", api_base=server.base_url) for n in ("a", "bb", "ccc")]

        def run() -> Any:
            return nbt_dask().orchestrate(
                PROMPT, live, data=ddf, extract="number", audit=False, cache_url=redis_server.url
            )

        lazy = run()
        assert server.request_count == 0  # lazy: nothing is asked until computed
        first = lazy.compute()
        assert server.request_count == 3000 and not first.outputs["cached"].any()
        assert RedisCache(redis_server.url).info()["entries"] == 3000
        again = run().compute()
        assert server.request_count == 3000  # no call at all
    assert again.outputs["cached"].all()
    same = ["row", "model", "sample", "output", "answer", "valid", "error", "cost_usd"]
    pd.testing.assert_frame_equal(again.outputs[same], first.outputs[same])
    pd.testing.assert_frame_equal(again.consensus, first.consensus)


def test_one_frame_computed_alone_is_the_single_process_one(client: Any) -> None:
    ddf = dd.from_pandas(questions(30), npartitions=3)
    res = nbt_dask().orchestrate(PROMPT, MODELS, data=ddf, extract="number", cache="off")
    expected = single(ddf.compute(), cache="off")
    pd.testing.assert_frame_equal(res.consensus.compute(), expected.consensus)


def test_partitions_whose_calls_all_fail_are_rows_with_their_error(client: Any) -> None:
    down = nbt.Model("openai/down", api_base="http://127.0.0.1:9/v1")
    res = nbt_dask().orchestrate(
        "Say {n}",
        [down],
        data=dd.from_pandas(questions(6), npartitions=2),
        retries=0,
        cache="off",
        audit=False,
    )
    done = res.compute()
    assert len(done.outputs) == 6 and done.outputs["error"].str.startswith("Cannot connect").all()
    assert done.outputs["row"].tolist() == list(range(6))
    assert [w.split(":")[0] for w in done.warnings if "every call failed" in w] == [
        "partition 0",
        "partition 1",
    ]


def test_mistakes_are_raised_before_any_work(client: Any) -> None:
    ddf = dd.from_pandas(questions(4), npartitions=2)
    with pytest.raises(nbt.TemplateError):
        nbt_dask().orchestrate("{nope}", MODELS, data=ddf)
    with pytest.raises(nbt.ConfigError, match="must be a dask DataFrame"):
        nbt_dask().orchestrate(PROMPT, MODELS, data=questions(4))
    with pytest.raises(nbt.ConfigError, match="not a Redis URL"):
        nbt_dask().orchestrate(PROMPT, MODELS, data=ddf, cache_url="http://127.0.0.1:1")
    with pytest.raises(nbt.ConfigError, match="does not take progress"):
        nbt_dask().orchestrate(PROMPT, MODELS, data=ddf, progress="text")
    with pytest.raises(nbt.ConfigError, match="samples"):
        nbt_dask().orchestrate(PROMPT, MODELS, data=ddf, samples=0)


def nbt_dask() -> Any:
    import nbtoolkit.dask

    return nbtoolkit.dask
