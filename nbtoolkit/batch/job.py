"""``Job``: a submitted batch run, picked up again in any process by its id.

Its state is in the job store (the cache database), never only in memory: ``refresh`` asks
each provider batch how it is doing and collects the ended ones; ``result`` builds the run's
frames the way ``orchestrate`` does, from the collected replies plus the models that run
live; ``retry_failed`` sends the failed requests again (live, or as a new batch).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import replace
from typing import Any

from ..calls import Call, Outcome
from ..errors import BatchPendingError, RunFailedError
from ..loop import run_sync
from ..providers import batches as provider_batches
from ..results import RunResult
from ..spec import Model, as_models
from ..store import open_cache
from .collect import as_outcome, collect_part
from .store import JobStore, Part, Request
from .view import job_html, job_text

__all__ = ["POLL_ENV", "Job", "default_poll_s"]

POLL_ENV = "NBTOOLKIT_BATCH_POLL_S"
# A part still "submitting" after this long was left by a process that stopped mid-way.
STALE_SUBMIT_S = 600.0


def default_poll_s() -> float:
    """Seconds between two looks at a batch: ``$NBTOOLKIT_BATCH_POLL_S``, else 30."""
    return float(os.environ.get(POLL_ENV) or 30)


class Job:
    """A batch run. ``job.id`` is stable; ``nbt.attach(job.id)`` picks it up elsewhere.

    ``job.parts``: one ``Part`` per provider batch (model, batch id, status, counts);
    ``job.live``: by model label, why that model's calls run live instead.
    """

    def __init__(self, job_id: str, store: JobStore, options: dict[str, Any]) -> None:
        self.id = job_id
        self.store = store
        self.options = dict(options)
        self.prompt: str = self.options.pop("prompt")
        self.models = as_models(self.options.pop("models"))
        self._by_label: dict[str, Model] = {m.label: m for m in self.models}
        self._targets: dict[str, provider_batches.Target | str] = {}

    # -- what it is --------------------------------------------------------------------

    def model(self, label: str) -> Model | None:
        """The panel's model of that label (None for a label not in it)."""
        return self._by_label.get(label)

    def target(self, label: str) -> provider_batches.Target | str:
        """The model's batch target (with its key, never stored), or why it runs live."""
        if label not in self._targets:
            self._targets[label] = provider_batches.target(self._by_label[label])
        return self._targets[label]

    @property
    def live(self) -> dict[str, str]:
        return {
            m.label: reason for m in self.models if isinstance(reason := self.target(m.label), str)
        }

    @property
    def parts(self) -> list[Part]:
        return self.store.parts(self.id)

    @property
    def ended(self) -> bool:
        """Every batch has ended and been collected."""
        return all(p.collected for p in self.parts)

    def requests(self) -> list[Request]:
        return self.store.requests(self.id)

    def __repr__(self) -> str:
        return job_text(self)

    def _repr_html_(self) -> str:
        return job_html(self)

    # -- following it ------------------------------------------------------------------

    async def arefresh(self) -> Job:
        """Ask each batch not yet collected how it is; collect the ones that ended."""
        try:
            await self._refresh()
        finally:
            provider_batches.release_clients()
        return self

    async def _refresh(self) -> None:
        mode = str(self.options.get("cache", "use"))
        cache = open_cache(self.options.get("cache_path")) if mode != "off" else None
        for part in self.parts:
            if part.collected:
                continue
            model = self._by_label[part.model]
            target = self.target(part.model)
            if part.status == "submitting" and time.time() - part.updated > STALE_SUBMIT_S:
                part.status = "not_submitted"
                part.error = (
                    "the process submitting this batch stopped before the provider confirmed "
                    f"it (if it was created anyway, look for metadata nbtoolkit_job={self.id} "
                    "among the provider's batches); retry_failed() sends its requests again"
                )
            if part.batch_id is None or isinstance(target, str):
                if part.status == "not_submitted":
                    state = provider_batches.BatchState(
                        "not_submitted", part.total, 0, 0, None, None, part.error
                    )
                    if isinstance(target, str):
                        target = provider_batches.Target("", "", "")
                    await collect_part(self.id, part, model, target, state, self.store, cache, mode)
                continue  # "submitting": another process may be creating it right now
            state = await provider_batches.retrieve(target, part.batch_id)
            part.status, part.completed, part.failed = state.status, state.completed, state.failed
            if state.ended:
                part.error = state.errors
                await collect_part(self.id, part, model, target, state, self.store, cache, mode)
            else:
                self.store.update_part(self.id, part)

    def refresh(self) -> Job:
        """``arefresh`` from synchronous code (a script, a notebook cell)."""
        return run_sync(self.arefresh())

    async def await_ended(self, poll_s: float | None = None) -> None:
        """Refresh every ``poll_s`` seconds until every batch has ended (async)."""
        import asyncio

        poll = default_poll_s() if poll_s is None else poll_s
        while not (await self.arefresh()).ended:
            await asyncio.sleep(poll)

    def wait(self, poll_s: float | None = None, *, progress: bool = True) -> RunResult:
        """Wait for every batch to end, then return ``result()``.

        Looks every ``poll_s`` seconds (default ``$NBTOOLKIT_BATCH_POLL_S`` or 30) and
        prints one line when the counts change. Ctrl-C (interrupting the kernel) stops the
        waiting, never the batches: they go on at the provider, and ``nbt.attach(job.id)``
        picks them up later.
        """
        poll = default_poll_s() if poll_s is None else poll_s
        said = ""
        if progress:
            for label, reason in self.live.items():
                print(f"{label} runs live, not as a batch: {reason}", flush=True)
        try:
            while True:
                self.refresh()
                line = self.status_line()
                if progress and line != said:
                    print(line, file=sys.stdout, flush=True)
                    said = line
                if self.ended:
                    break
                time.sleep(poll)
        except KeyboardInterrupt:
            print(
                f"Stopped waiting; the batches go on at the provider. Pick them up later with "
                f"nbt.attach({self.id!r}).wait()",
                file=sys.stderr,
                flush=True,
            )
            raise
        return self.result()

    def status_line(self) -> str:
        parts = self.parts
        done = sum(p.completed for p in parts)
        failed = sum(p.failed for p in parts)
        total = sum(p.total for p in parts)
        ended = sum(p.collected for p in parts)
        return (
            f"batch job {self.id}: {ended}/{len(parts)} batches ended; "
            f"{done}/{total} requests done, {failed} failed"
        )

    # -- its result --------------------------------------------------------------------

    async def aresult(self) -> RunResult:
        """The run's ``RunResult``: the same columns and strategies as ``orchestrate``.

        Raises ``BatchPendingError`` while a batch has not ended. The calls of models that
        run live are made now (and cached, so the next ``result()`` makes none).
        """
        from ..api import aorchestrate

        await self.arefresh()
        pending = [p for p in self.parts if not p.collected]
        if pending:
            states = ", ".join(sorted({p.status for p in pending}))
            raise BatchPendingError(
                f"batch job {self.id} is not finished: {len(pending)} of {len(self.parts)} "
                f"batches are still {states}; job.wait() waits for them"
            )
        by_key = {r.key: r for r in self.requests() if not r.live and r.collected}
        known = _known(by_key)
        try:
            result = await aorchestrate(self.prompt, self.models, **self.options, known=known)
        except RunFailedError as exc:
            if isinstance(exc.result, RunResult):
                self._describe(exc.result)
            raise
        return self._describe(result)

    def result(self) -> RunResult:
        """``aresult`` from synchronous code."""
        return run_sync(self.aresult())

    def _describe(self, result: RunResult) -> RunResult:
        """Say in the result which model went by batch and which ran live, and at what price."""
        batches: dict[str, list[str]] = {}
        for part in self.parts:
            if part.batch_id:
                batches.setdefault(part.model, []).append(part.batch_id)
        estimated = [
            m.label for m in self.models if m.label in batches and provider_batches.prices(m)[2]
        ]
        result.meta["batch"] = {
            "job": self.id,
            "batches": batches,
            "live": self.live,
            "price_estimated": estimated,
        }
        for label, reason in self.live.items():
            result.warnings.append(f"{label} ran live, not as a batch: {reason}")
        for label in estimated:
            result.warnings.append(
                f"{label}: litellm's table has no batch price, so its cost_usd is half the "
                "live price (an estimate)"
            )
        return result

    # -- failures ----------------------------------------------------------------------

    def failed(self) -> list[Request]:
        """The collected requests the provider failed, expired or cancelled."""
        return [
            r for r in self.requests() if r.output is None and r.error is not None and not r.live
        ]

    def retry_failed(self, live: bool = True) -> Any:
        """Send the failed requests again; nothing else is sent.

        ``live=True``: now, at the live price, and return the ``result()``. ``live=False``:
        as new batches of this job; returns the job (``job.wait()`` then).
        """
        failed = self.failed()
        if live:
            for request in failed:
                request.live, request.error = True, None
            self.store.record(self.id, failed)
            return self.result()
        try:
            run_sync(self._resubmit(failed))
        finally:
            provider_batches.release_clients()
        return self

    async def _resubmit(self, failed: list[Request]) -> None:
        from .sending import line_of, plan_of, send_part, split

        plan = plan_of(self.prompt, self.models, self.options)
        calls = {c.key: c for c in plan.calls if c.key}
        number = max((p.part for p in self.parts), default=-1) + 1
        by_model: dict[str, list[Request]] = {}
        for request in failed:
            call = calls.get(request.key)
            if call is not None:
                by_model.setdefault(call.model.label, []).append(request)
        for label, requests in by_model.items():
            target = self.target(label)
            if isinstance(target, str):
                continue
            body = provider_batches.body_maker(target, self._by_label[label])
            lines = [
                line_of(r.custom_id, body(calls[r.key].messages, calls[r.key].params))
                for r in requests
            ]
            limit_requests, limit_bytes = provider_batches.LIMITS
            for group in split(lines, limit_requests, limit_bytes):
                part = Part(number, label, target.public(), None, None, "submitting", len(group))
                number += 1
                self.store.add_part(self.id, part)
                moved = [
                    replace(requests[i], part=part.part, error=None, output=None) for i in group
                ]
                self.store.record(self.id, moved)
                await send_part(
                    self.id, part, target, b"".join(lines[i] for i in group), self.store
                )

    def cancel(self) -> Job:
        """Ask the provider to cancel every batch not ended; what finished is still collected."""

        async def cancel_all() -> None:
            for part in self.parts:
                target = self.target(part.model)
                if part.batch_id and not part.collected and not isinstance(target, str):
                    await provider_batches.cancel(target, part.batch_id)

        try:
            run_sync(cancel_all())
        finally:
            provider_batches.release_clients()
        return self


def _known(by_key: dict[str, Request]) -> Any:
    """The runner's ``known`` hook: a batched call's collected outcome; an identical call of
    another row shares it (sent once, billed once), like the runner's duplicate rows."""

    def known(call: Call) -> Outcome | None:
        request = by_key.get(call.key)
        if request is None:
            return None
        outcome = as_outcome(request)
        if (call.row, call.position, call.sample) != (
            request.row,
            request.position,
            request.sample,
        ):
            cost = 0.0 if not math.isnan(outcome.cost_usd) else math.nan
            outcome = replace(outcome, cost_usd=cost, attempts=0, shared_from=request.row)
        return outcome

    return known
