"""Provider batch APIs: about half the price for work that can wait up to 24 hours.

>>> job = nbt.submit(prompt, models, data=df, extract="number")   # returns at once   # doctest: +SKIP
>>> job = nbt.attach(job.id)          # in another process: never submits twice       # doctest: +SKIP
>>> res = job.wait(poll_s=30)         # a RunResult, like orchestrate's                # doctest: +SKIP

Built on litellm's batch functions (``providers.batches``); the job lives in the cache
database (``store``), so a kernel restart loses nothing. Models without a batch API run live
in the same run; ``res.meta["batch"]`` says which did which.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from ..loop import run_sync
from ..providers import batches as provider_batches
from ..results import RunResult
from ..spec import Model
from .job import POLL_ENV, Job, default_poll_s
from .store import JobStore, Part, Request

__all__ = [
    "POLL_ENV",
    "Job",
    "JobStore",
    "Part",
    "Request",
    "asubmit",
    "attach",
    "run_batched",
    "submit",
]


async def asubmit(
    prompt: str,
    models: Sequence[Model | str] | Model | str,
    *,
    max_requests_per_batch: int | None = None,
    **options: Any,
) -> Job:
    """The async twin of ``submit``."""
    from .sending import plan_of, submit_plan

    if max_requests_per_batch is not None and (
        not isinstance(max_requests_per_batch, int) or max_requests_per_batch < 1
    ):
        from ..errors import ConfigError

        raise ConfigError(
            f"max_requests_per_batch={max_requests_per_batch!r}: give a whole number, 1 or more"
        )
    plan = plan_of(prompt, models, options)
    store = JobStore(options.get("cache_path"))
    try:
        job_id, _ = await submit_plan(
            plan, prompt, models, options, store=store, max_requests=max_requests_per_batch
        )
    finally:
        provider_batches.release_clients()
    return Job(job_id, store, {"prompt": prompt, "models": models, **options})


def submit(
    prompt: str,
    models: Sequence[Model | str] | Model | str,
    *,
    max_requests_per_batch: int | None = None,
    **options: Any,
) -> Job:
    """Send the run's calls as provider batches and return a ``Job`` at once.

    Takes ``orchestrate``'s arguments. Each model whose provider has a batch API (OpenAI and
    the providers litellm sends the same way: Azure, Mistral, xAI) gets one batch, or several
    within the provider's limits (50,000 requests, 200 MB; ``max_requests_per_batch`` lowers
    the first); the others (``sim/``, ``replay/``, Anthropic...) run live when the result is
    built, and ``job`` shows which before anything is sent. Calls already in the cache are
    not sent. Raises ``ConfigError`` for what a batch cannot do (``cascade``, a budget,
    ``cache='replay-only'``) before anything is sent.
    """
    return run_sync(
        asubmit(prompt, models, max_requests_per_batch=max_requests_per_batch, **options)
    )


def attach(job_id: str, *, cache_path: str | None = None, **given: Any) -> Job:
    """The job ``job_id``, from the job store (``cache_path``: as when it was submitted).

    Never submits anything. ``given``: run arguments that could not be stored with the job
    (a function such as a lambda as ``extract=``), given again.
    """
    from ..errors import ConfigError

    store = JobStore(cache_path)
    options, unstored = store.job(job_id)
    missing = [name for name in unstored if name not in given]
    if missing:
        raise ConfigError(
            f"batch job {job_id} was submitted with {missing[0]}= holding something that is "
            "not stored (a function defined in the session, or a credential such as a header "
            f"value, never written to disk): give it again, nbt.attach({job_id!r}, "
            f"{missing[0]}=...)"
        )
    options.update(given)
    return Job(job_id, store, options)


async def run_batched(
    prompt: str, models: Sequence[Model | str] | Model | str, options: dict[str, Any]
) -> RunResult:
    """``orchestrate(..., batch=True)``: submit, wait for every batch, return the result."""
    job = await asubmit(prompt, models, **options)
    try:
        await job.await_ended(default_poll_s())
    except asyncio.CancelledError:  # Ctrl-C while waiting: the batches go on
        print(
            f"Stopped waiting; the batches go on at the provider. Pick them up later with "
            f"nbt.attach({job.id!r}).wait()",
            file=sys.stderr,
            flush=True,
        )
        raise
    return await job.aresult()
