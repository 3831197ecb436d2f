"""Making calls: a fixed pool of workers, concurrency limits, retries with backoff, timeouts,
fallbacks, repairs, budget reservations, cache, progress.

The runner never raises for a failed call: every call it is given comes back as exactly one
``Outcome``, with an output or an error. Cancelling the run (Ctrl-C, a Cancel button) ends
the calls in flight and marks the ones not finished as cancelled.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

from . import providers
from .budget import DEFAULT_MAX_TOKENS, Reservations
from .cache import Cache, Entry, KeyMaker, call_key
from .calls import (
    CANCELLED,
    SKIPPED,
    Call,
    Outcome,
    Outcomes,
    Progress,
    RetryPolicy,
    cancelled_outcome,
    from_entry,
    is_cancelled,
    is_skipped,
    key_of,
    merged,
    not_in_cache,
    share_identical,
    shared_outcome,
    skipped,
)
from .errors import CacheError, redact, redactor
from .loop import install_executor, is_shared
from .spec import Model
from .streaming import CallStream, StreamCallback, cut_short
from .timing import LoopLag, safety_timeout, timed

# Re-exported: these names were first defined here, and callers import them from here.
__all__ = [
    "CANCELLED",
    "SKIPPED",
    "Call",
    "Outcome",
    "Outcomes",
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
# Calls looked up in the cache at a time (see Runner._from_cache).
_CACHE_CHUNK = 1000
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
        on_cached: Callable[[Iterable[tuple[Call, Entry]]], None] | None = None,
        sleep: Sleep = asyncio.sleep,
        seed: int | None = None,
        max_cost_usd: float | None = None,
        validator: Callable[[str], str | None] | None = None,
        repair: int = 0,
        repair_token_budget: int = 8000,
        params_for: Callable[[Model, int], dict[str, Any]] | None = None,
        on_stream: StreamCallback | None = None,
        known: Callable[[Call], Outcome | None] | None = None,
        keys: KeyMaker | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.cache = cache
        self.cache_mode = cache_mode
        self.cache_unread: str | None = None  # why the cache could not be read, if it could not
        self.progress_cb = progress
        self.on_outcome = on_outcome
        # Told at once of every call a run's cache lookup answered (each with its entry), in
        # place of ``on_outcome`` per call: a cached re-run is thousands of them.
        self.on_cached = on_cached
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
        # Outcomes obtained another way before the run (a provider batch's collected replies):
        # taken before the cache, never sent again.
        self.known = known
        self.keys = keys  # the plan's cache keys (Plan.keys), for calls without their own
        self._repairing = True
        # Set: every call is streamed, and this is told of each piece (streaming.CallStream).
        self.on_stream = on_stream
        self._streams: dict[int, CallStream] = {}  # by call index, while a call is made
        self.state = Progress()
        self.cancelled = False
        # What could not be recorded (audit, cache, progress), by kind: [message, count].
        self.unrecorded: dict[str, list[Any]] = {}
        self.shared = 0  # calls answered by an identical call of the same run
        # Budget accounting per request sent: money spent, and money held by calls in flight.
        self.budget = Reservations(max_cost_usd)
        # Requests sent by the calls of the current run() not finished yet, by call index.
        self._sent: dict[int, int] = {}
        self.started: float | None = None
        self.wall_s = 0.0

    async def run(self, calls: list[Call], *, repair: bool = True) -> Outcomes:
        """Make ``calls`` (their ``index`` is ignored); one outcome each, in order.

        May be called several times (a cascade's stages, a judge's calls); ``finish()`` ends.
        ``repair=False`` for calls whose replies the run's extractor does not read (a judge's).

        A fixed pool of ``concurrency`` workers takes the calls in order, one at a time: the
        memory in use grows with the outcomes kept, not with the calls waiting their turn.
        """
        self._repairing = repair
        self._sent = {}
        self._streams = {}
        outcomes = Outcomes(len(calls))
        if self.cancelled:
            for i in range(len(calls)):
                outcomes[i] = cancelled_outcome()
            return outcomes
        for call in calls:
            label = call.model.label
            self.state.total[label] = self.state.total.get(label, 0) + 1
            self.state.done.setdefault(label, 0)
            self.state.failed.setdefault(label, 0)

        pending, seeds = self._from_cache(calls, outcomes)
        # Before litellm's first call creates the loop's own default executor.
        self._marked = install_executor(asyncio.get_running_loop())
        models = {id(calls[i].model): calls[i].model for i in pending}
        if any(_through_litellm(model) for model in models.values()):
            await providers.warm_up()
        if self.started is None:
            self.started = time.perf_counter()  # after the warm-up: it is litellm's, not the run's
        per_model: dict[str, asyncio.Semaphore] = {}
        for i in pending:
            model = calls[i].model
            if model.max_concurrency and model.label not in per_model:
                per_model[model.label] = asyncio.Semaphore(model.max_concurrency)
        leaders, followers = share_identical(calls, pending, self.keys)
        del pending
        queue = iter(leaders)  # shared by the workers: each takes the next call when free
        bugs: list[BaseException] = []
        # The lean transport's: on our own loop, kept for the next run; else closed at the end.
        sessions = providers.open_sessions(keep=is_shared(asyncio.get_running_loop()))

        async def worker() -> None:
            for i in queue:
                call = calls[i] if calls[i].index == i else replace(calls[i], index=i)
                try:
                    model_limit = per_model.get(call.model.label)
                    if model_limit is not None:
                        async with model_limit:
                            outcome = await self._call(call, seeds.pop(i, None))
                    else:
                        outcome = await self._call(call, seeds.pop(i, None))
                    outcomes[i] = outcome
                    self._sent.pop(i, None)  # its attempts are in its outcome now
                    self._finished(call, outcome)
                    for twin in followers.pop(i, ()):
                        copy = shared_outcome(outcome, call)
                        outcomes[twin] = copy
                        self.shared += 1
                        self._finished(calls[twin], copy, position=twin)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # A bug in our own code: stop the run (and every other call) and surface it.
                    bugs.append(exc)
                    self._stop.set()
                    return

        self._loop = asyncio.get_running_loop()
        self._lag = LoopLag()
        self._stop = asyncio.Event()
        if self.cancelled:  # a cancel() that came during set-up, before anyone listened
            self._stop.set()
        workers: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(worker()) for _ in range(min(self.concurrency, len(leaders)))
        ]
        stopped: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        watched = [stopped]
        if leaders and (self.timeout or any(calls[i].model.timeout for i in leaders)):
            watched.append(self._lag.start())
        try:
            if workers:
                everything: asyncio.Future[Any] = asyncio.gather(*workers)
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
            await _settle([*workers, *watched])
            await providers.close_sessions(sessions)
            for i in range(len(calls)):
                if not outcomes.done(i):
                    # A request cut off in flight was still sent: it counts.
                    cut = cancelled_outcome(self._sent.get(i, 0))
                    outcomes[i] = cut
                    self._finished(calls[i], cut, report=False, position=i)
            self._report()
        if bugs:
            raise bugs[0]
        return outcomes

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
        self, calls: list[Call], outcomes: Outcomes
    ) -> tuple[list[int], dict[int, Outcome]]:
        """Fill outcomes for cached calls; return the positions of the calls still to make.

        A cached reply that needs repairing is handed on as that call's starting point, so a
        re-run repairs it the same way (from the cache) instead of keeping the bad reply.
        """
        offline = {m for m in {c.model.id for c in calls} if providers.is_offline(m)}
        pending: list[int] = []
        seeds: dict[int, Outcome] = {}
        # A chunk at a time: its entries, and the audit records made of them, are let go
        # before the next chunk's are read. Holding a whole run's at once made the garbage
        # collector's full collections over the whole process (litellm's ~400,000 objects
        # included) come about twice as often.
        for start in range(0, len(calls), _CACHE_CHUNK):
            chunk = range(start, min(start + _CACHE_CHUNK, len(calls)))
            self._from_cache_chunk(calls, chunk, offline, outcomes, pending, seeds)
        self._report()
        return pending, seeds

    def _from_cache_chunk(
        self,
        calls: list[Call],
        chunk: range,
        offline: set[str],
        outcomes: Outcomes,
        pending: list[int],
        seeds: dict[int, Outcome],
    ) -> None:
        """``_from_cache`` for the calls at the positions ``chunk``: their outcomes filled,
        or their positions added to ``pending`` (with a starting point in ``seeds``)."""
        live = [calls[i] for i in chunk if calls[i].model.id not in offline]
        for call in live:
            if not call.key:
                call.key = key_of(call, self.keys)
        found: dict[str, Entry] = {}
        if self.cache is not None and self.cache_mode in ("use", "replay-only") and live:
            found = self._lookup([c.key for c in live])
        del live
        hits: list[int] = []  # positions answered by the cache
        for i in chunk:
            call = calls[i]
            given = self.known(call) if self.known is not None and call.key else None
            if given is not None:
                if self._needs_repair(given.output):
                    seeds[i] = given
                    pending.append(i)
                    continue
                outcomes[i] = given
                self._finished(call, given, report=False)
                continue
            entry = found.get(call.key) if found and call.key else None
            if entry is not None:
                if self._needs_repair(entry.output):
                    seeds[i] = from_entry(entry)
                    pending.append(i)
                else:
                    outcomes.put_entry(i, entry)
                    hits.append(i)
                continue
            if call.key and self.cache_mode == "replay-only" and not call.model.fallbacks:
                outcome = not_in_cache(self.cache_unread)
                outcomes[i] = outcome
                self._finished(call, outcome, report=False, position=i)
            else:
                pending.append(i)
        self._finished_cached(calls, outcomes, hits, found)

    def _finished_cached(
        self, calls: list[Call], outcomes: Outcomes, hits: list[int], found: dict[str, Entry]
    ) -> None:
        """``_finished`` for the calls the cache answered (``found`` by their keys), counted
        and recorded together."""
        if self.on_stream is not None or (self.on_cached is None and self.on_outcome is not None):
            for i in hits:
                self._finished(calls[i], outcomes[i], report=False, position=i)
            return
        done = self.state.done
        for i in hits:
            done[calls[i].model.label] += 1
        if self.on_cached is None or not hits:
            return
        try:
            self.on_cached((calls[i], found[calls[i].key]) for i in hits)
        except Exception as exc:
            self.not_recorded(
                "audit",
                f"the audit log could not be written ({_say(exc)})",
                count=getattr(exc, "records", len(hits)),
            )

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
                substitute.key = key_of(substitute)
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
        return None if entry is None else from_entry(entry)

    def _lookup(self, keys: list[str]) -> dict[str, Entry]:
        """Cached entries for ``keys``; a cache that cannot be read is a warning, and the
        run goes on without it (the calls are made, nothing is cached)."""
        if self.cache is None:
            return {}
        try:
            found = self.cache.get_many(keys)
        except CacheError as exc:
            self.cache_unread = redact(str(exc))
            self.not_recorded(
                "cache-read", f"{self.cache_unread}; the run went on without the cache"
            )
            self.cache = None
            return {}
        # Stored redacted; a value that has become a secret since (a token set after the run
        # that cached it) is hidden on the way out too.
        hide = redactor(values_only=True)
        for key, entry in found.items():
            if entry.output and (hidden := hide(entry.output)) is not entry.output:
                found[key] = entry._replace(output=hidden)
        return found

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
            outcome = merged(outcome, fixed)
            if fixed.output is None:
                break
        return outcome

    async def _attempt(self, call: Call) -> Outcome:
        """One call with retries and backoff; stores a success in the cache.

        Every request sent counts in ``attempts``; each one first holds its worst-case cost
        against ``max_cost_usd`` (see ``budget.Reservations``), so calls in flight cannot overspend together.
        """
        if call.key and self.cache_mode == "replay-only":
            return not_in_cache()  # replay-only never reaches a provider
        timeout = call.model.timeout or self.timeout
        attempts = 0
        failed: Outcome | None = None
        tap = self._tap(call)
        while True:
            held = await self.budget.hold(call.model, call.messages, call.params)
            if held is None:
                if failed is None:
                    return skipped(_over_budget(self.max_cost_usd, call.params))
                failed.error = f"{failed.error} (not retried: the budget max_cost_usd is spent)"
                return failed
            attempts += 1
            self._sent[call.index] = self._sent.get(call.index, 0) + 1
            start = time.perf_counter()
            if tap is not None:
                tap.begin()
                self._emit(tap)
            try:
                # The timeout is ours (time the request took); litellm's is only a safety net.
                reply = await timed(
                    providers.complete(
                        call.model,
                        call.messages,
                        call.params,
                        safety_timeout(timeout) if timeout else None,
                        on_text=None if tap is None else self._feeder(tap),
                    ),
                    timeout,
                    self._lag,
                    marked=self._marked,
                )
            except asyncio.CancelledError:
                self.budget.settle(held, math.nan)  # sent, maybe billed: keep it held
                raise
            except Exception as exc:
                self.budget.settle(held, 0.0)
                retryable, retry_after = providers.retry_hint(exc)
                failed = Outcome(
                    # What had arrived of a reply cut off mid-stream is kept with its error.
                    error=cut_short(redact(providers.describe_error(exc, call.model)), tap),
                    latency_s=time.perf_counter() - start,
                    cost_usd=0.0 if providers.price_known(call.model) else math.nan,
                    attempts=attempts,
                )
                if not retryable or attempts > self.retry.retries:
                    return failed
                await self.sleep(self.retry.delay(attempts, retry_after, self.rng))
                continue
            self.budget.settle(held, reply.cost_usd)
            latency = time.perf_counter() - start
            outcome = Outcome(
                output=reply.text,
                latency_s=reply.latency_s if reply.latency_s is not None else latency,
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens,
                cost_usd=reply.cost_usd,
                attempts=attempts,
                ttft_s=_ttft(reply, tap),
            )
            self._store(call, outcome)
            return outcome

    def _tap(self, call: Call) -> CallStream | None:
        """The call's stream (one per call, across its retries, fallbacks and repairs)."""
        if self.on_stream is None:
            return None
        tap = self._streams.get(call.index)
        if tap is None:
            tap = self._streams[call.index] = CallStream(call)
        return tap

    def _feeder(self, tap: CallStream) -> Callable[[str], None]:
        def feed(piece: str) -> None:
            tap.add(piece)
            self._emit(tap)

        return feed

    def _emit(self, tap: CallStream) -> None:
        if self.on_stream is None:
            return
        try:
            self.on_stream(tap)
        except Exception as exc:
            # The user's display failed, not the run: the calls go on without it.
            self.on_stream = _quiet
            self.not_recorded(
                "stream", f"the stream callback raised {_say(exc)}; it was not called again"
            )

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

    def _finished(
        self, call: Call, outcome: Outcome, report: bool = True, position: int | None = None
    ) -> None:
        """Count a finished call and record it; a record that cannot be written is a warning,
        never the loss of the answer (the frames are built from the outcomes, not the log)."""
        if self.on_stream is not None:
            # A cached or shared reply never streamed: it is shown whole, at once.
            at = call.index if position is None else position
            tap = self._streams.pop(at, None) or CallStream(call)
            tap.end(outcome)
            self._emit(tap)
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
                self.not_recorded(
                    "audit",
                    f"the audit log could not be written ({_say(exc)})",
                    count=getattr(exc, "records", 1),
                )
        if report:
            self._report()

    def not_recorded(self, kind: str, message: str, count: int = 1) -> None:
        """Note that ``count`` records could not be written; said once per kind, with a count."""
        entry = self.unrecorded.setdefault(kind, [message, 0])
        entry[1] += count

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


def _quiet(stream: CallStream) -> None:
    """Stands in for a stream callback that failed once."""


def _ttft(reply: providers.Reply, tap: CallStream | None) -> float:
    """The reply's time to first text: the provider's own figure (a simulated model's), else
    the one measured; NaN when the call was not streamed."""
    if tap is None:
        return math.nan
    if reply.ttft_s is not None:
        return float(reply.ttft_s)
    return tap.ttft_s


def _through_litellm(model: Model) -> bool:
    """Whether a call of ``model`` (or of one of its fallbacks) may go through litellm."""
    from .spec import as_model

    return not providers.in_process(model.id) or any(
        not providers.in_process(as_model(f).id) for f in model.fallbacks
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


def _over_budget(budget: float | None, params: dict[str, Any]) -> str:
    why = f"the budget max_cost_usd={budget} would be exceeded by this call's worst case"
    if params.get("max_completion_tokens") or params.get("max_tokens"):
        return why + " (prompt + max_tokens)"
    return why + (
        f" (prompt + {DEFAULT_MAX_TOKENS:,} reply tokens, assumed when max_tokens is not set: "
        "set max_tokens= to tighten it)"
    )
