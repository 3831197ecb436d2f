"""Dask for DataFrames that outgrow one process: ``orchestrate`` over a dask DataFrame.

::

    import dask.dataframe as dd
    from distributed import Client, LocalCluster
    import nbtoolkit.dask

    client = Client(LocalCluster(n_workers=2))          # or any Dask cluster
    ddf = dd.read_parquet("questions/*.parquet")
    res = nbtoolkit.dask.orchestrate(
        "{question} Answer with a number.", ["gpt-4o-mini", "claude-3-5-haiku-latest"],
        data=ddf, extract="number",
        cache_url="redis://cache:6379/0",                 # workers share answers
        proxy="http://proxy:4000",                        # and keys, budgets, rate limits
    )
    outputs, consensus = res.compute()                    # or res.outputs / res.consensus, lazy

Each partition is one ``nbtoolkit.orchestrate`` run on a worker: its calls, its consensus
(computed per row on the worker), its frames. The frames have the columns and dtypes of the
single-process run, and its row numbers: row ``i`` of the whole DataFrame is ``row == i`` in
both frames, whatever partition it fell in. No scheduler of ours: Dask places the work, the
shared cache (``cache_url=``, Redis) lets one worker's answer serve every other's re-run, and
a limit across workers (requests or tokens a minute, a budget) comes from the proxy. With
``concurrency=N`` each partition has ``N`` calls in flight; a cluster runs as many partitions
at once as it has worker threads.

Differences from one ``orchestrate`` call: identical rows in different partitions are two
runs (the second is answered by the shared cache once the first has written it, not marked
``shared``); a partition whose calls all fail does not stop the others (its rows carry their
errors and ``warnings`` says so); ``progress`` is off on workers. The partitions' row counts
are read first (one pass over ``data``: ``persist()`` an expensive frame before). Workers need
the proxy key's variable and the providers' keys in their own environment.

Needs ``pip install 'nbtoolkit[dask]'`` (``dask[dataframe]`` and ``distributed``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .errors import ConfigError, RunFailedError
from .frames import input_names
from .results import CONSENSUS_COLUMNS, EXTRA_CONSENSUS_COLUMNS, OUTPUT_COLUMNS
from .spec import Model

__all__ = ["DaskRun", "Computed", "orchestrate"]

# Arguments a partition's run cannot take: the whole frame is ``data``; a live display or a
# callback would run on a worker, out of sight.
_NOT_HERE = ("progress", "on_start")


class Computed(NamedTuple):
    """A computed ``DaskRun``: pandas frames as ``RunResult`` has them, and the warnings."""

    outputs: pd.DataFrame
    consensus: pd.DataFrame
    warnings: list[str]


@dataclass
class DaskRun:
    """The lazy result of ``nbtoolkit.dask.orchestrate``.

    ``outputs`` (one row per call) and ``consensus`` (one row per input row, the input's own
    columns first, on the input's index) are dask DataFrames with ``RunResult``'s columns and
    dtypes; ``warnings`` is a dask ``Delayed`` list (each prefixed with its partition).
    ``compute()`` computes the three together, so each partition runs once.
    """

    outputs: Any
    consensus: Any
    warnings: Any
    npartitions: int

    def compute(self, **kwargs: Any) -> Computed:
        import dask

        # One graph for the three (as Delayed parts: Dask will not mix its frames and
        # Delayed in one compute), so each partition runs once.
        outputs, consensus, warnings = dask.compute(
            self.outputs.to_delayed(), self.consensus.to_delayed(), self.warnings, **kwargs
        )
        return Computed(
            _concat(outputs, self.outputs._meta),
            _concat(consensus, self.consensus._meta),
            list(warnings),
        )


def orchestrate(
    prompt: str,
    models: Sequence[Model | str] | Model | str,
    *,
    data: Any,
    cache_url: str | None = None,
    proxy: Any = None,
    **options: Any,
) -> DaskRun:
    """``nbtoolkit.orchestrate`` over the partitions of the dask DataFrame ``data``; lazy.

    ``options`` are ``orchestrate``'s (``extract``, ``strategy``, ``samples``, ``concurrency``
    per partition, ``cache``, ``max_cost_usd`` per partition...). ``cache_url`` (a Redis URL)
    and ``proxy`` (a LiteLLM proxy's URL or ``nbtoolkit.Proxy``) are handed to every worker;
    unset, each worker reads ``$NBTOOLKIT_CACHE_URL`` and ``$NBTOOLKIT_PROXY_URL`` from its own
    environment. Everything is checked here, before any call: a mistake raises the
    ``ConfigError`` ``orchestrate`` would. Returns a ``DaskRun``.
    """
    try:
        import dask
        import dask.dataframe as dd
    except ImportError:
        raise ConfigError(
            "nbtoolkit.dask needs Dask: pip install 'nbtoolkit[dask]' "
            "(dask[dataframe] and distributed)"
        ) from None
    if not isinstance(data, dd.DataFrame):
        raise ConfigError(
            f"data= must be a dask DataFrame (dask.dataframe.from_pandas(df, npartitions=N)), "
            f"not {type(data).__name__}; for a pandas DataFrame use nbtoolkit.orchestrate"
        )
    given = sorted(set(options) & set(_NOT_HERE))
    if given:
        raise ConfigError(
            f"nbtoolkit.dask.orchestrate does not take {', '.join(given)}: partitions run on "
            "workers, out of sight; compute the result to see it"
        )
    options = {**options, "cache_url": cache_url, "proxy": proxy, "progress": "none"}
    _check(prompt, models, data._meta, options)

    samples = int(options.get("samples", 1))
    per_row = len(models if isinstance(models, (list, tuple)) else [models]) * samples
    sizes = [int(n) for n in data.map_partitions(len).compute()]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
    outputs_meta, consensus_meta = _metas(data._meta)
    run = dask.delayed(_run_partition, pure=False)
    parts = [
        run(part, prompt, models, options, start, index, per_row, outputs_meta, consensus_meta)
        for index, (part, start) in enumerate(zip(data.to_delayed(), starts, strict=False))
    ]
    pick = dask.delayed(_pick, pure=True)
    # The outputs' index is the single-process run's (call i of the whole run): known
    # divisions, unless an empty partition would repeat one.
    divisions: Any = None
    if all(sizes):
        divisions = [s * per_row for s in starts[:-1]] + [starts[-1] * per_row - 1]
    # Dask would turn object columns into Arrow strings; free text (a reply, an error, an
    # answer that is a list) stays object as in the single-process run.
    with dask.config.set({"dataframe.convert-string": False}):
        outputs = dd.from_delayed(
            [pick(p, 0) for p in parts], meta=outputs_meta, divisions=divisions
        )
        consensus = dd.from_delayed(
            [pick(p, 1) for p in parts], meta=consensus_meta, divisions=data.divisions
        )
    warnings = dask.delayed(_flatten, pure=True)([pick(p, 2) for p in parts])
    return DaskRun(outputs, consensus, warnings, data.npartitions)


def _check(prompt: str, models: Any, meta: pd.DataFrame, options: dict[str, Any]) -> None:
    """Every check ``orchestrate`` makes before a call, on the frame's empty meta; in a
    context of its own, so the run's settings (proxy, transport) do not stay set here."""
    from .plan import plan_run

    checked = {k: v for k, v in options.items() if k not in ("cache_url", "proxy", "progress")}
    params = {k: checked.pop(k) for k in list(checked) if k not in _PLAN_ARGS}
    contextvars.copy_context().run(
        plan_run,
        prompt,
        models,
        data=meta,
        params=params,
        cache_url=options["cache_url"],
        proxy=options["proxy"],
        **checked,
    )
    if options["cache_url"] is not None:
        from .store import open_cache

        open_cache(url=options["cache_url"])  # a URL that is not Redis's: one line, here


_PLAN_ARGS = {
    "variables",
    "strategy",
    "extract",
    "samples",
    "temperature",
    "seed",
    "max_tokens",
    "concurrency",
    "timeout",
    "retries",
    "cache",
    "recordings",
    "system",
    "strict",
    "schema",
    "repair",
    "max_cost_usd",
    "confidence_threshold",
    "progress",
    "audit",
    "cache_path",
    "repair_token_budget",
    "transport",
}


def _metas(meta: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Empty frames with the single-process run's columns and dtypes."""
    text = pd.Series(["x"]).dtype  # what pandas makes of a column of str: str or object
    objects = pd.Series([], dtype=object)
    outputs = pd.DataFrame(
        {
            "row": np.array([], dtype="int64"),
            "model": pd.Series([], dtype=text),
            "sample": np.array([], dtype="int64"),
            "output": objects,
            "answer": objects,
            "valid": np.array([], dtype=bool),
            "error": objects,
            "latency_s": np.array([], dtype="float64"),
            "prompt_tokens": pd.array([], dtype="Int64"),
            "completion_tokens": pd.array([], dtype="Int64"),
            "cost_usd": np.array([], dtype="float64"),
            "cached": np.array([], dtype=bool),
            "attempts": np.array([], dtype="int64"),
            "ttft_s": np.array([], dtype="float64"),
        },
        columns=OUTPUT_COLUMNS,
    )
    own = pd.DataFrame(
        {
            "row": np.array([], dtype="int64"),
            "answer": objects,
            "confidence": np.array([], dtype="float64"),
            "agreement": np.array([], dtype="float64"),
            "n_valid": np.array([], dtype="int64"),
            "strategy": pd.Series([], dtype=text),
            "cost_usd": np.array([], dtype="float64"),
            "low_confidence": np.array([], dtype=bool),
            "note": objects,
            "calibrated": np.array([], dtype=bool),
        },
        columns=CONSENSUS_COLUMNS + EXTRA_CONSENSUS_COLUMNS,
        index=meta.index,
    )
    inputs = meta.copy()
    inputs.columns = input_names(list(inputs.columns))
    return outputs, pd.concat([inputs, own], axis=1)


def _run_partition(
    part: pd.DataFrame,
    prompt: str,
    models: Any,
    options: dict[str, Any],
    start: int,
    index: int,
    per_row: int,
    outputs_meta: pd.DataFrame,
    consensus_meta: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """One partition's run, on a worker: its frames renumbered to the whole frame's rows."""
    from .api import orchestrate as run

    if len(part) == 0:
        return outputs_meta, consensus_meta, []
    result: Any
    try:
        result = run(prompt, models, data=part, **options)
    except RunFailedError as exc:  # every call of this partition failed: its rows say why
        if exc.result is None or options.get("strict"):
            raise  # strict=True: a failed call fails the computation, as it fails a run
        result = exc.result
        result.warnings.insert(0, str(exc))
    outputs = result.outputs.copy()
    if len(outputs) != len(part) * per_row:
        raise RuntimeError(
            f"partition {index}: {len(outputs)} calls for {len(part)} rows, expected "
            f"{per_row} per row"
        )
    outputs["row"] += start
    outputs.index = pd.RangeIndex(start * per_row, start * per_row + len(outputs))
    consensus = result.consensus.copy()
    consensus["row"] += start
    # An empty partition's meta and a full one's must agree: a column pandas inferred
    # differently (all None, say) is set to the single-process run's dtype.
    outputs = outputs.astype(outputs_meta.dtypes.to_dict())
    consensus = consensus.astype(consensus_meta.dtypes.to_dict())
    warnings = [f"partition {index}: {w}" for w in result.warnings]
    return outputs, consensus, warnings


def _concat(parts: list[pd.DataFrame], meta: pd.DataFrame) -> pd.DataFrame:
    full = [p for p in parts if len(p)]
    return pd.concat(full) if full else meta


def _pick(parts: tuple[Any, ...], position: int) -> Any:
    return parts[position]


def _flatten(lists: list[list[str]]) -> list[str]:
    return [w for one in lists for w in one]
