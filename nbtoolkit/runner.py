"""Async fan-out of calls: concurrency limits, retries with backoff, timeouts, cache, progress.

The runner never raises for a failed call: every call it is given comes back as exactly one
``Outcome``, with an output or an error. Cancelling the run (Ctrl-C, a Cancel button) ends
the calls in flight and marks the ones not finished as cancelled.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from . import providers
from .budget import DEFAULT_MAX_TOKENS, worst_case_cost
from .cache import Cache, Entry, call_key
from .calls import (
    CANCELLED,
    SKIPPED,
    Call,
    Outcome,
    Progress,
    RetryPolicy,
    cancelled_outcome,
    is_cancelled,
    is_skipped,
    skipped,
)
from .errors import CacheError, redact
from .loop import install_executor
from .spec import Model
from .timing import LoopLag, safety_timeout, timed

# Re-exported: these names were first defined here, and callers import them from here.
__all__ = [
    "CANCELLED",
    "SKIPPED",
    "Call",
    "Outcome",
    "Progress",
    "ProgressCallback",
    "RetryPolicy",
    "Runner",
    "Sleep",
    "cancelled_outcome",
    "is_cancelled",
    "is_skipped",
    "skipped",
]


ProgressCallback = Callable[[Progress], None]
Sleep = Callable[[float], Awaitable[Any]]


class Runner:
    """Runs a list of calls and returns one outcome per call, in order."""

    def __init__(
        self,
        *,
        concurrency: int = 16,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        cache: Cache | None = None,
        cache_mode: str = "off",
        progress: ProgressCallback | None = None,
        on_outcome: Callable[[Call, Outcome], None] | None = None,
        sleep: Sleep = asyncio.sleep,
        seed: int | None = None,
        max_cost_usd: float | None = None,
        validator: Callable[[str], str | None] | None = None,
        repair: int = 0,
        repair_token_budget: int = 8000,
        params_for: Callable[[Model, int], dict[str, Any]] | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.cache = cache
        self.cache_mode = cache_mode
        self.progress_cb = progress
        self.on_outcome = on_outcome
        self.sleep = sleep
        self.rng = random.Random(seed)
        self.max_cost_usd = max_cost_usd
        self.validator = validator
        self.repair = repair
        self.repair_token_budget = repair_token_budget
        # How a fallback model's call is parameterised: the run's settings, then its own.
        self.params_for = params_for or (
            lambda model, sample: providers.call_params(model, {}, sample=sample)
        )
        self._repairing = True
        self.state = Progress()
        self.cancelled = False
        # What could not be recorded (audit, cache, progress), by kind: [message, count].
        self.unrecorded: dict[str, list[Any]] = {}
        self.shared = 0  # calls answered by an identical call of the same run
        # Budget accounting per request sent: money spent, and money held by calls in flight.
        self._spent = 0.0
        self._held = 0.0
        self._holding = 0  # reservations in flight (a count: float sums drift)
        self._released: asyncio.Event | None = None  # set (and replaced) when money is released
        self._sent: dict[int, int] = {}  # requests sent, by call index, in the current run()
        self.started: float | None = None
        self.wall_s = 0.0

    async def run(self, calls: list[Call], *, repair: bool = True) -> list[Outcome]:
        """Make ``calls`` (their ``index`` is ignored); one outcome each, in order.

        May be called several times (a cascade's stages, a judge's calls); ``finish()`` ends.
        ``repair=False`` for calls whose replies the run's extractor does not read (a judge's).
        """
        self._repairing = repair
        self._sent = {}
        calls = [replace(c, index=i) for i, c in enumerate(calls)]
        outcomes: list[Outcome | None] = [None] * len(calls)
        if self.cancelled:
            return [cancelled_outcome() for _ in calls]
        for call in calls:
            label = call.model.label
            self.state.total[label] = self.state.total.get(label, 0) + 1
            self.state.done.setdefault(label, 0)
            self.state.failed.setdefault(label, 0)

        pending, seeds = self._from_cache(calls, outcomes)
        # Before litellm's first call creates the loop's own default executor.
        self._marked = install_executor(asyncio.get_running_loop())
        if pending:
            await providers.warm_up()
        if self.started is None:
            self.started = time.perf_counter()  # after the warm-up: it is litellm's, not the run's
        limit = asyncio.Semaphore(self.concurrency)
        per_model = {
            c.model.label: asyncio.Semaphore(c.model.max_concurrency)
            for c in pending
            if c.model.max_concurrency
        }
        leaders, followers = _share_identical(pending)
        bugs: list[BaseException] = []
        sessions = providers.open_sessions()  # the lean transport's; closed when the run ends

        async def one(call: Call) -> None:
            try:
                model_limit = per_model.get(call.model.label)
                async with limit:
                    if model_limit is not None:
                        async with model_limit:
                            outcome = await self._call(call, seeds.get(call.index))
                    else:
                        outcome = await self._call(call, seeds.get(call.index))
                outcomes[call.index] = outcome
                self._finished(call, outcome)
                for twin in followers.get(call.index, []):
                    outcomes[twin.index] = _shared(outcome, call)
                    self.shared += 1
                    self._finished(twin, outcomes[twin.index])  # type: ignore[arg-type]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A bug in our own code: stop the run (and every other call) and surface it.
                bugs.append(exc)
                self._stop.set()

        self._loop = asyncio.get_running_loop()
        self._lag = LoopLag()
        self._stop = asyncio.Event()
        if self.cancelled:  # a cancel() that came during set-up, before anyone listened
            self._stop.set()
        tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(one(c)) for c in leaders]
        stopped: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        watched = [stopped]
        if any(c.model.timeout or self.timeout for c in pending):
            watched.append(self._lag.start())
        try:
            if tasks:
                everything: asyncio.Future[Any] = asyncio.gather(*tasks)
                watched.append(everything)
                await asyncio.wait([everything, stopped], return_when=asyncio.FIRST_COMPLETED)
                if not everything.done() and not bugs:
                    self.cancelled = True
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            # One exit for every path (done, Cancel, Ctrl-C, a bug): no call is left running,
            # so nothing is sent or billed after the run has returned or raised.
            await _settle([*tasks, *watched])
            await providers.close_sessions(sessions)
            for call in calls:
                if outcomes[call.index] is None:
                    # A request cut off in flight was still sent: it counts.
                    outcomes[call.index] = cancelled_outcome(self._sent.get(call.index, 0))
                    self._finished(call, outcomes[call.index], report=False)  # type: ignore[arg-type]
            self._report()
        if bugs:
            raise bugs[0]
        return [o for o in outcomes if o is not None]

    def finish(self) -> None:
        """The run is over: fix its wall time and tell the progress display."""
        if self.started is not None:
            self.wall_s = time.perf_counter() - self.started
        self.state.finished = True
        self._report()

    def cancel(self) -> None:
        """Stop the run from any thread: calls in flight end, finished rows are kept."""
        self.cancelled = True
        loop, stop = getattr(self, "_loop", None), getattr(self, "_stop", None)
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)

    def _from_cache(
        self, calls: list[Call], outcomes: list[Outcome | None]
    ) -> tuple[list[Call], dict[int, Outcome]]:
        """Fill outcomes for cached calls; return the calls still to make.

        A cached reply that needs repairing is handed on as that call's starting point, so a
        re-run repairs it the same way (from the cache) instead of keeping the bad reply.
        """
        live = [c for c in calls if not providers.is_offline(c.model.id)]
        for call in live:
            if not call.key:
                call.key = _key(call)
        found: dict[str, Entry] = {}
        if self.cache is not None and self.cache_mode in ("use", "replay-only") and live:
            found = self._lookup([c.key for c in live])
        pending: list[Call] = []
        seeds: dict[int, Outcome] = {}
        for call in calls:
            entry = found.get(call.key) if call.key else None
            if entry is not None and self._needs_repair(entry.output):
                seeds[call.index] = _from_entry(entry)
                pending.append(call)
                continue
            if entry is not None:
                outcome = _from_entry(entry)
            elif call.key and self.cache_mode == "replay-only" and not call.model.fallbacks:
                outcome = _not_in_cache()
            else:
                pending.append(call)
                continue
            outcomes[call.index] = outcome
            self._finished(call, outcome, report=False)
        self._report()
        return pending, seeds

    def _needs_repair(self, output: str | None) -> bool:
        return (
            self._repairing
            and bool(self.repair)
            and self.validator is not None
            and output is not None
            and self.validator(output) is not None
        )

    async def _call(self, call: Call, start: Outcome | None = None) -> Outcome:
        """One call with its retries, then its fallbacks, then its repairs."""
        outcome = start if start is not None else await self._attempt(call)
        answering = call
        if outcome.output is None and call.model.fallbacks:
            outcome, answering = await self._fallbacks(call, outcome)
        if self._needs_repair(outcome.output):
            outcome = await self._repair(answering, outcome)
        return outcome

    async def _fallbacks(self, call: Call, failed: Outcome) -> tuple[Outcome, Call]:
        """Ask each fallback in turn; the first that answers stands in for ``call``."""
        from .spec import as_model

        attempts = failed.attempts
        for fallback in call.model.fallbacks:
            model = as_model(fallback)
            # Built from the run's settings and the fallback's own: never the primary's
            # api_base or headers, which would send this model's key to the wrong host.
            params = self.params_for(model, call.sample)
            substitute = replace(call, model=model, params=params, key="")
            if not providers.is_offline(model.id):
                substitute.key = _key(substitute)
            outcome = self._cached(substitute) or await self._attempt(substitute)
            attempts += outcome.attempts
            if outcome.output is not None:
                outcome.attempts = attempts
                outcome.answered_by = model.id
                outcome.fallback_error = failed.error
                return outcome, substitute
        failed.attempts = attempts
        failed.error = (
            f"{failed.error} (fallbacks {', '.join(map(str, call.model.fallbacks))} failed too)"
        )
        return failed, call

    def _cached(self, call: Call) -> Outcome | None:
        if self.cache is None or self.cache_mode not in ("use", "replay-only") or not call.key:
            return None
        entry = self._lookup([call.key]).get(call.key)
        return None if entry is None else _from_entry(entry)

    def _lookup(self, keys: list[str]) -> dict[str, Entry]:
        """Cached entries for ``keys``; a cache that cannot be read is a warning, and the
        run goes on without it (the calls are made, nothing is cached)."""
        if self.cache is None:
            return {}
        try:
            return self.cache.get_many(keys)
        except CacheError as exc:
            self.not_recorded(
                "cache-read", f"{redact(str(exc))}; the run went on without the cache"
            )
            self.cache = None
            return {}

    async def _repair(self, call: Call, outcome: Outcome) -> Outcome:
        """Re-ask with the validation error, a bounded number of times and tokens.

        Each re-ask sends the original messages, the last bad reply (cut short) and the error:
        never the whole growing history.
        """
        assert self.validator is not None and outcome.output is not None
        spent = (outcome.prompt_tokens or 0) + (outcome.completion_tokens or 0)
        for round_ in range(1, self.repair + 1):
            problem = self.validator(outcome.output)
            if problem is None or spent >= self.repair_token_budget:
                break
            messages = [
                *call.messages,
                {"role": "assistant", "content": outcome.output[:2000]},
                {
                    "role": "user",
                    "content": f"That reply could not be used: {problem[:500]}\n"
                    "Reply again, with only the corrected answer in the format asked for.",
                },
            ]
            params = dict(call.params)
            if "nbt_sample" in params:
                params["nbt_sample"] = call.sample + 1000 * round_  # a fresh simulated draw
            again = replace(call, messages=messages, params=params)
            # Each round is its own cache entry: an identical re-ask may still answer otherwise.
            again.key = (
                call_key(
                    call.model.id, messages, params, call.sample + 1000 * round_, call.model.label
                )
                if call.key
                else ""
            )
            fixed = self._cached(again) or await self._attempt(again)
            if is_skipped(fixed.error):
                break  # the budget would not cover another round: keep the reply we have
            spent += (fixed.prompt_tokens or 0) + (fixed.completion_tokens or 0)
            outcome = _merge(outcome, fixed)
            if fixed.output is None:
                break
        return outcome

    async def _attempt(self, call: Call) -> Outcome:
        """One call with retries and backoff; stores a success in the cache.

        Every request sent counts in ``attempts``; each one first holds its worst-case cost
        against ``max_cost_usd`` (see ``_hold``), so calls in flight cannot overspend together.
        """
        if call.key and self.cache_mode == "replay-only":
            return _not_in_cache()  # replay-only never reaches a provider
        timeout = call.model.timeout or self.timeout
        attempts = 0
        failed: Outcome | None = None
        while True:
            held = await self._hold(call)
            if held is None:
                if failed is None:
                    return skipped(_over_budget(self.max_cost_usd, call.params))
                failed.error = f"{failed.error} (not retried: the budget max_cost_usd is spent)"
                return failed
            attempts += 1
            self._sent[call.index] = self._sent.get(call.index, 0) + 1
            start = time.perf_counter()
            try:
                # The timeout is ours (time the request took); litellm's is only a safety net.
                reply = await timed(
                    providers.complete(
                        call.model,
                        call.messages,
                        call.params,
                        safety_timeout(timeout) if timeout else None,
                    ),
                    timeout,
                    self._lag,
                    marked=self._marked,
                )
            except asyncio.CancelledError:
                self._settle_cost(held, math.nan)  # sent, maybe billed: keep it held
                raise
            except Exception as exc:
                self._settle_cost(held, 0.0)
                retryable, retry_after = providers.retry_hint(exc)
                failed = Outcome(
                    error=redact(providers.describe_error(exc, call.model)),
                    latency_s=time.perf_counter() - start,
                    cost_usd=0.0 if providers.price_known(call.model) else math.nan,
                    attempts=attempts,
                )
                if not retryable or attempts > self.retry.retries:
                    return failed
                await self.sleep(self.retry.delay(attempts, retry_after, self.rng))
                continue
            self._settle_cost(held, reply.cost_usd)
            latency = time.perf_counter() - start
            outcome = Outcome(
                output=reply.text,
                latency_s=reply.latency_s if reply.latency_s is not None else latency,
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens,
                cost_usd=reply.cost_usd,
                attempts=attempts,
            )
            self._store(call, outcome)
            return outcome

    async def _hold(self, call: Call) -> float | None:
        """Reserve the call's worst-case cost before it is sent; None when it can no longer
        fit in ``max_cost_usd``. The worst case is its prompt tokens plus ``max_tokens`` (or
        ``DEFAULT_MAX_TOKENS`` when none is set) at the model's price; an unknown price
        holds nothing, as its spend cannot be counted either.

        A call that would fit once the calls in flight have settled waits for them (they
        usually cost far less than their worst case) instead of being skipped."""
        if self.max_cost_usd is None:
            return 0.0
        worst = worst_case_cost(call.model, call.messages, call.params)
        if math.isnan(worst):
            worst = 0.0
        while self._spent + self._held + worst > self.max_cost_usd:
            if self._spent + worst > self.max_cost_usd or self._holding == 0:
                return None  # would not fit even with nothing in flight
            if self._released is None:
                self._released = asyncio.Event()
            await self._released.wait()
        self._held += worst
        self._holding += 1
        return worst

    def _settle_cost(self, held: float, cost: float) -> None:
        """Release a reservation for what the request really cost (NaN: keep it held)."""
        if self.max_cost_usd is None:
            return
        if math.isnan(cost):
            return
        self._held -= held
        self._holding -= 1
        self._spent += cost
        if self._released is not None:  # wake every call waiting for money to be released
            self._released.set()
            self._released = None

    def _store(self, call: Call, outcome: Outcome) -> None:
        if self.cache is None or not call.key or self.cache_mode not in ("use", "refresh"):
            return
        prompt = next(
            (m["content"] for m in reversed(call.messages) if m.get("role") == "user"), ""
        )
        entry = Entry(
            key=call.key,
            model=call.model.id,
            prompt=prompt if isinstance(prompt, str) else str(prompt),
            output=outcome.output or "",
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            cost_usd=None if math.isnan(outcome.cost_usd) else outcome.cost_usd,
            latency_s=outcome.latency_s,
        )
        try:
            self.cache.put(entry)
        except Exception as exc:
            # A full disk must not cost the user the answer they just paid for.
            text = redact(str(exc)) if isinstance(exc, CacheError) else f"the cache: {_say(exc)}"
            self.not_recorded("cache", text)

    def _finished(self, call: Call, outcome: Outcome, report: bool = True) -> None:
        """Count a finished call and record it; a record that cannot be written is a warning,
        never the loss of the answer (the frames are built from the outcomes, not the log)."""
        label = call.model.label
        if outcome.error is None:
            self.state.done[label] += 1
        elif is_skipped(outcome.error):
            self.state.skipped[label] = self.state.skipped.get(label, 0) + 1
        elif is_cancelled(outcome.error):
            self.state.cancelled[label] = self.state.cancelled.get(label, 0) + 1
        else:
            self.state.failed[label] += 1
        if not outcome.cached and math.isnan(outcome.cost_usd):
            self.state.unpriced += 1
        elif not outcome.cached:
            self.state.cost_usd += outcome.cost_usd
        if self.on_outcome is not None:
            try:
                self.on_outcome(call, outcome)
            except Exception as exc:
                self.not_recorded("audit", f"the audit log could not be written ({_say(exc)})")
        if report:
            self._report()

    def not_recorded(self, kind: str, message: str) -> None:
        """Note that something could not be recorded; said once per kind, with a count."""
        entry = self.unrecorded.setdefault(kind, [message, 0])
        entry[1] += 1

    def recording_warnings(self) -> list[str]:
        """One line per kind of record that could not be written."""
        what = {"audit": "calls are not in the audit log", "cache": "replies were not cached"}
        lines = []
        for kind, (message, count) in self.unrecorded.items():
            if kind in what:
                lines.append(f"{message}: {count} {what[kind]}; the answers are kept in the frames")
            else:
                lines.append(message)
        return lines

    def _report(self) -> None:
        if self.progress_cb is None:
            return
        try:
            self.progress_cb(self.state)
        except Exception as exc:
            # The user's display failed, not the run: it is not called again.
            self.progress_cb = None
            self.not_recorded(
                "progress",
                f"the progress callback raised {_say(exc)}; it was not called again",
            )


def _say(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__)[:300]


async def _settle(tasks: list[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, even if we are cancelled meanwhile:
    a call task that outlives the run would go on sending (and billing) requests."""
    for task in tasks:
        task.cancel()
    interrupted = False
    while True:
        running = [t for t in tasks if not t.done()]
        if not running:
            break
        try:
            await asyncio.wait(running)
        except asyncio.CancelledError:
            interrupted = True  # finish settling first; the cancellation is raised after
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved
    if interrupted:
        raise asyncio.CancelledError


def _share_identical(calls: list[Call]) -> tuple[list[Call], dict[int, list[Call]]]:
    """Identical calls (same model, messages, parameters and sample: duplicate rows) are sent
    once; returns the calls to send and, by a sent call's index, the calls that share it."""
    leaders: list[Call] = []
    first: dict[str, Call] = {}
    followers: dict[int, list[Call]] = {}
    for call in calls:
        key = call.key or _key(call)
        leader = first.get(key)
        if leader is None:
            first[key] = call
            leaders.append(call)
        else:
            followers.setdefault(leader.index, []).append(call)
    return leaders, followers


def _shared(outcome: Outcome, leader: Call) -> Outcome:
    """A duplicate call's outcome: the reply of the call sent for it, neither sent nor billed
    again (its tokens are the reply's, its cost and attempts 0)."""
    return replace(
        outcome,
        cost_usd=0.0 if not math.isnan(outcome.cost_usd) else math.nan,
        attempts=0,
        shared_from=leader.row,
    )


def _from_entry(entry: Entry) -> Outcome:
    return Outcome(
        output=entry.output,
        latency_s=entry.latency_s if entry.latency_s is not None else math.nan,
        prompt_tokens=entry.prompt_tokens,
        completion_tokens=entry.completion_tokens,
        cost_usd=entry.cost_usd if entry.cost_usd is not None else math.nan,
        cached=True,
        attempts=0,
    )


def _merge(first: Outcome, second: Outcome) -> Outcome:
    """A repaired call: the last reply, with every attempt's tokens, cost and time added up."""

    def add(a: int | None, b: int | None) -> int | None:
        return None if a is None and b is None else (a or 0) + (b or 0)

    return Outcome(
        output=second.output if second.output is not None else first.output,
        error=None if second.output is not None else second.error,
        latency_s=first.latency_s + second.latency_s,
        prompt_tokens=add(first.prompt_tokens, second.prompt_tokens),
        completion_tokens=add(first.completion_tokens, second.completion_tokens),
        cost_usd=first.cost_usd + second.cost_usd,
        cached=first.cached and second.cached,
        attempts=first.attempts + second.attempts,
        answered_by=first.answered_by,
        fallback_error=first.fallback_error,
    )


def _key(call: Call) -> str:
    return call_key(call.model.id, call.messages, call.params, call.sample, call.model.label)


def _not_in_cache() -> Outcome:
    return Outcome(
        error="NotInCache: cache='replay-only' and this call was never recorded; "
        "run once with cache='use' to record it",
        attempts=0,
    )


def _over_budget(budget: float | None, params: dict[str, Any]) -> str:
    why = f"the budget max_cost_usd={budget} would be exceeded by this call's worst case"
    if params.get("max_completion_tokens") or params.get("max_tokens"):
        return why + " (prompt + max_tokens)"
    return why + (
        f" (prompt + {DEFAULT_MAX_TOKENS:,} reply tokens, assumed when max_tokens is not set: "
        "set max_tokens= to tighten it)"
    )
