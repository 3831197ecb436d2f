"""``orchestrate``: one prompt (or one per DataFrame row) to many models, as DataFrames.

The function reads as a recipe: check everything, plan the calls, run them, read the
answers, combine them. Every user mistake is raised in the first step, before any call is
made or anything is written.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from . import consensus as consensus_mod
from . import extract as extract_mod
from . import providers, streaming, views
from .audit import (
    AuditLog,
    AuditWriteError,
    cached_lines,
    call_record,
    loggable_params,
    prompt_hash,
)
from .cache import Entry, cache_dir
from .errors import ConfigError, RunFailedError, RunInterrupted
from .frames import SHARED, collect
from .loop import run_sync, while_waiting
from .plan import Plan, check_options, plan_run
from .results import CallCounts, RunResult, count_calls
from .runner import SKIPPED, Call, Outcome, Progress, RetryPolicy, Runner
from .spec import Model
from .store import open_cache
from .streaming import CallStream


async def aorchestrate(
    prompt: str,
    models: Sequence[Model | str] | Model | str,
    *,
    data: pd.DataFrame | None = None,
    variables: Mapping[str, Any] | None = None,
    strategy: Any = "vote",
    extract: Any = None,
    samples: int = 1,
    temperature: float | None = None,
    seed: int | None = None,
    max_tokens: int | None = None,
    concurrency: int = 16,
    timeout: float | None = None,
    retries: int = 2,
    cache: str = "use",
    recordings: Any = None,
    system: str | None = None,
    strict: bool = False,
    schema: type | None = None,
    repair: int = 0,
    repair_token_budget: int = 8000,
    max_cost_usd: float | None = None,
    confidence_threshold: float | str = 0.5,
    progress: Callable[[Progress], None] | str | None = None,
    audit: bool | str = True,
    cache_path: str | None = None,
    on_start: Callable[[Runner], None] | None = None,
    transport: str = "auto",
    cache_url: str | None = None,
    proxy: Any = None,
    stream: bool | Callable[[CallStream], None] = False,
    batch: bool = False,
    known: Callable[[Call], Outcome | None] | None = None,
    **params: Any,
) -> RunResult:
    """The async twin of ``orchestrate``; await it inside a running event loop.

    ``on_start(runner)`` is called once the calls are planned; ``runner.cancel()`` (from any
    thread) stops the run and returns the rows finished so far, marked ``cancelled``.
    ``known(call)``: an outcome already obtained for a call (a provider batch's reply, see
    ``nbtoolkit.batch``), used instead of sending it; None to send it as usual.
    """
    if batch and cache != "replay-only":
        # By name, through the registry: the batch package builds on this module.
        run_batched = views.get("batch.run")
        return await run_batched(prompt, models, _arguments(locals(), params))  # type: ignore[no-any-return]
    on_stream, panes = streaming.start(stream)
    reporter = _reporter(progress)
    # The first run in a process imports litellm while planning (seconds): a display that
    # can say so (``note``) does, instead of sitting at 0/N.
    listening = providers.loading_listener.set(getattr(reporter, "note", None))
    try:
        plan = plan_run(
            prompt,
            models,
            data=data,
            variables=variables,
            strategy=strategy,
            extract=extract,
            samples=samples,
            temperature=temperature,
            seed=seed,
            max_tokens=max_tokens,
            concurrency=concurrency,
            timeout=timeout,
            retries=retries,
            cache=cache,
            recordings=recordings,
            system=system,
            strict=strict,
            schema=schema,
            repair=repair,
            max_cost_usd=max_cost_usd,
            confidence_threshold=confidence_threshold,
            params=params,
            repair_token_budget=repair_token_budget,
            progress=reporter,
            audit=audit,
            cache_path=cache_path,
            on_start=on_start,
            transport=transport,
            cache_url=cache_url,
            proxy=proxy,
        )
    finally:
        providers.loading_listener.reset(listening)
    run_id = uuid.uuid4().hex[:12]
    audit_log = _audit_log(audit)
    auditor = None if audit_log is None else _Auditor(audit_log, run_id)
    runner = Runner(
        concurrency=concurrency,
        timeout=timeout,
        retry=RetryPolicy(retries=retries),
        cache=open_cache(cache_path, cache_url) if cache != "off" else None,
        cache_mode=cache,
        progress=reporter,
        on_outcome=None if auditor is None else auditor.one,
        on_cached=None if auditor is None else auditor.cached,
        known=known,
        seed=seed,
        max_cost_usd=max_cost_usd,
        validator=_validator(plan) if repair else None,
        repair=repair,
        repair_token_budget=repair_token_budget,
        params_for=lambda model, sample: providers.call_params(
            model,
            plan.run_params,
            sample=sample,
            seed=plan.seed,
            store_key=plan.store_key,
            schema=plan.schema,
        ),
        on_stream=on_stream,
        keys=plan.keys,
    )
    if on_start is not None:
        on_start(runner)
    if panes is not None:
        panes.attach(runner)
    try:
        outcomes = await consensus_mod.execute(
            plan.calls, plan.models, plan.strategy, plan.extractor, runner
        )
        extracted = consensus_mod.extract_all(plan.calls, outcomes, plan.extractor)
        candidates = consensus_mod.candidates_of(plan.calls, outcomes, extracted)
        followups = await consensus_mod.follow_up(
            candidates,
            dict(enumerate(plan.prompts)),
            plan.strategy,
            plan.run_params,
            plan.seed,
            runner,
        )
    finally:
        _flush(audit_log, runner)  # however the run ends, what it paid for is in the log
    runner.finish()
    if panes is not None:
        panes.close()
    result = collect(
        plan,
        outcomes,
        followups,
        extracted,
        candidates,
        run_id=run_id,
        wall_s=runner.wall_s,
        cancelled=runner.cancelled,
    )
    counts = count_calls(result.outputs)
    _warn(result, runner, counts)
    _raise_if_failed(plan, result, runner.cancelled, counts)
    if plan.strict and runner.unrecorded:
        raise RunFailedError(
            f"the run finished but not everything was recorded (strict=True): "
            f"{runner.recording_warnings()[0]}; the frames are in .result",
            result,
        )
    return result


def _validator(plan: Plan) -> Callable[[str], str | None]:
    """The repair check: the run's extractor, as an error message or None."""

    def check(output: str) -> str | None:
        _, valid, error = extract_mod.apply(plan.extractor, output)
        return None if valid else (error or "the reply could not be read")

    return check


def _flush(log: AuditLog | None, runner: Runner) -> None:
    if log is None:
        return
    try:
        log.flush()
    except AuditWriteError as exc:
        runner.not_recorded(
            "audit", f"the audit log could not be written ({exc})", count=exc.records
        )


class _Auditor:
    """Writes the run's calls to the audit log: each as it finishes (``one``), and the calls
    a cache lookup answered all at once (``cached``)."""

    def __init__(self, log: AuditLog, run_id: str) -> None:
        self.log = log
        self.run_id = run_id
        # A row's messages go to every model of the panel: hashed once. Keyed by the object
        # (kept alive here, so its id is never reused within the run).
        self._hashes: dict[int, tuple[object, str]] = {}
        # And a model's parameters (one dict per model and sample) are one logged dict,
        # which the log makes safe once per batch of records.
        self._logged: dict[int, tuple[object, dict[str, Any]]] = {}
        self._clock: list[Any] = [None, ""]

    def _hash(self, messages: list[dict[str, Any]]) -> str:
        seen = self._hashes.get(id(messages))
        if seen is None:
            seen = self._hashes[id(messages)] = (messages, prompt_hash(messages))
        return seen[1]

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        logged = self._logged.get(id(params))
        if logged is None:
            logged = self._logged[id(params)] = (params, loggable_params(params))
        return logged[1]

    def _when(self) -> str:
        second = int(time.time())
        if self._clock[0] != second:
            self._clock[0], self._clock[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S%z")
        return str(self._clock[1])

    def one(self, call: Call, outcome: Outcome) -> None:
        self.log.write(
            call_record(
                run_id=self.run_id,
                model=call.model.id,
                params=call.params,
                messages=call.messages,
                row=call.row,
                sample=call.sample,
                outcome=outcome,
                prompt_sha256=self._hash(call.messages),
                when=self._when(),
                params_logged=self._params(call.params),
            )
        )

    def cached(self, hits: Iterable[tuple[Call, Entry]]) -> None:
        self.log.write_many(
            cached_lines(
                run_id=self.run_id,
                when=self._when(),
                hits=(
                    (
                        call.model.id,
                        self._params(call.params),
                        call.row,
                        call.sample,
                        self._hash(call.messages),
                        entry,
                    )
                    for call, entry in hits
                ),
            )
        )


def _warn(result: RunResult, runner: Runner, counts: CallCounts) -> None:
    result.warnings.extend(runner.recording_warnings())
    if runner.shared:
        result.warnings.append(
            f"{runner.shared} calls were identical to another call of this run (duplicate "
            "rows): each was sent once and its reply shared, at no extra cost "
            f"(their error column says '{SHARED} row N')"
        )
    failed = counts.failed
    if runner.cancelled:
        result.warnings.append(
            f"{counts.cancelled} of {counts.calls} calls were not made, the run being stopped "
            + (
                "('Cancelled' rows; a rerun with the cache makes only those)"
                if runner.cache is not None
                else "('Cancelled' rows)"
            )
            + (f"; {failed} of the calls made failed (see res.errors)" if failed else "")
        )
    if failed and not runner.cancelled:
        result.warnings.append(
            f"{failed} of {counts.made} calls failed; see res.errors for each error"
        )
    if counts.skipped:
        reason = str(counts.first_skipped).removeprefix(SKIPPED).strip()
        result.warnings.append(
            f"{counts.skipped} calls were not made ({reason}); they are 'Skipped' rows"
        )
    if counts.fallback:
        result.warnings.append(f"{counts.fallback} calls were answered by a fallback model")
    notes = [note for note in result.consensus["note"].tolist() if isinstance(note, str)]
    if notes:
        result.warnings.append(f"{len(notes)} row(s) have a note, e.g.: {notes[0]}")


def _audit_log(audit: bool | str) -> AuditLog | None:
    if audit is False:
        return None
    path = cache_dir() / "audit.jsonl" if audit is True else audit
    return AuditLog(path)


def _raise_if_failed(plan: Plan, result: RunResult, cancelled: bool, counts: CallCounts) -> None:
    if cancelled or counts.calls == 0:
        return
    attempted = counts.calls - counts.skipped
    if attempted == 0:
        return  # nothing was asked (a budget of 0): the Skipped rows and warning say why
    if counts.failed == attempted:
        raise RunFailedError(
            f"every call failed ({attempted} of {attempted}); the first error: "
            f"{counts.first_failed}",
            result,
        )
    if plan.strict and counts.failed:
        raise RunFailedError(
            f"{counts.failed} of {counts.calls} calls failed (strict=True); "
            f"the first error: {counts.first_failed}",
            result,
        )


def orchestrate(
    prompt: str,
    models: Sequence[Model | str] | Model | str,
    *,
    data: pd.DataFrame | None = None,
    variables: Mapping[str, Any] | None = None,
    strategy: Any = "vote",
    extract: Any = None,
    samples: int = 1,
    temperature: float | None = None,
    seed: int | None = None,
    max_tokens: int | None = None,
    concurrency: int = 16,
    timeout: float | None = None,
    retries: int = 2,
    cache: str = "use",
    recordings: Any = None,
    system: str | None = None,
    strict: bool = False,
    progress: Callable[[Progress], None] | str | None = None,
    schema: type | None = None,
    repair: int = 0,
    repair_token_budget: int = 8000,
    max_cost_usd: float | None = None,
    confidence_threshold: float | str = 0.5,
    audit: bool | str = True,
    cache_path: str | None = None,
    on_start: Callable[[Runner], None] | None = None,
    transport: str = "auto",
    cache_url: str | None = None,
    proxy: Any = None,
    stream: bool | Callable[[CallStream], None] = False,
    batch: bool = False,
    **params: Any,
) -> RunResult:
    """Send a prompt (one per DataFrame row) to several models; returns a ``RunResult``.

    >>> import nbtoolkit as nbt
    >>> res = nbt.orchestrate("What is 17 * 3? Answer with a number.",
    ...                       ["sim/oracle-large", "sim/swift-mini", "sim/budget-a"],
    ...                       extract="number")               # doctest: +SKIP
    >>> res.consensus                                          # doctest: +SKIP

    ``{name}`` in the prompt comes from the row's columns, then ``variables``; other braces
    stay literal. ``extract`` reads the answer ("number", "choice", "json:field", a regex,
    a pydantic class, a function, or a list of these). Extra keyword arguments are litellm
    parameters (top_p, stop, response_format, ...); unknown ones are an error.
    ``transport``: how the calls of models left on ``Model(transport="auto")`` are carried:
    ``"auto"`` (the lean aiohttp client for OpenAI-compatible endpoints, litellm for the
    rest), ``"litellm"`` or ``"aiohttp"``; ``res.meta["transports"]`` says which each used.
    ``cache_url``: a shared Redis cache (``redis://host:6379/0``; default
    ``$NBTOOLKIT_CACHE_URL``), instead of the SQLite file on this machine.
    ``proxy``: a LiteLLM proxy's URL (or ``nbtoolkit.Proxy(url, key_env=...)``; default
    ``$NBTOOLKIT_PROXY_URL``): every model not answered offline is sent there by its id,
    with the virtual key from ``$NBTOOLKIT_PROXY_KEY_ENV``'s variable; the proxy's refusals
    (budget exceeded, model not allowed, rate limited) are one line each in the error column.
    ``stream=True``: every call is streamed, so ``res.outputs["ttft_s"]`` holds each reply's
    time to its first text (seconds; NaN for a cached or unstreamed reply); in an interactive
    Jupyter kernel, one pane per model fills as the text arrives, with a Stop button (the
    finished rows are kept). Nothing is shown in a script or a papermill/nbconvert run.
    ``stream=f``: ``f(call_stream)`` after each piece of text, on the run's loop thread (see
    ``nbtoolkit.streaming.CallStream``).

    ``batch=True`` sends the calls through the providers' batch APIs (about half price,
    answered within 24 hours) and waits for them: ``nbt.submit`` + ``job.wait()``; models
    without a batch API run live in the same run (``res.meta["batch"]`` says which did which).

    Works the same in a script and inside a running event loop (a Jupyter kernel): the run
    goes on a worker thread with its own loop, so no loop is patched. Ctrl-C (or interrupting
    the kernel) stops the calls in flight and raises ``RunInterrupted`` (a
    ``KeyboardInterrupt``) whose ``.result`` holds the rows finished so far; before the
    first call (the first run imports litellm: seconds) it raises ``KeyboardInterrupt`` at
    once, and nothing is sent. A ``progress`` object with a ``note(text)`` method hears
    ``providers.LOADING_NOTE`` while litellm is imported.
    """
    if batch and cache != "replay-only":  # replaying sends nothing: there is nothing to batch
        submit = views.get("batch.submit")
        return submit(prompt, models, **_arguments(locals(), params)).wait()  # type: ignore[no-any-return]
    options = dict(
        data=data,
        variables=variables,
        strategy=strategy,
        extract=extract,
        samples=samples,
        temperature=temperature,
        seed=seed,
        max_tokens=max_tokens,
        concurrency=concurrency,
        timeout=timeout,
        retries=retries,
        cache=cache,
        recordings=recordings,
        system=system,
        strict=strict,
        progress=progress,
        schema=schema,
        repair=repair,
        repair_token_budget=repair_token_budget,
        max_cost_usd=max_cost_usd,
        confidence_threshold=confidence_threshold,
        audit=audit,
        cache_path=cache_path,
        transport=transport,
        cache_url=cache_url,
        proxy=proxy,
    )
    check_options(on_start=on_start)  # before it is wrapped below
    holder: dict[str, Runner] = {}
    stopped: list[bool] = []
    # The panes draw from this (the cell's) thread while it waits: see loop.while_waiting.
    on_stream, panes = streaming.start(stream)

    def started(runner: Runner) -> None:
        holder["runner"] = runner
        if stopped:
            runner.cancel()  # interrupted while planning: not one call is made
        if panes is not None:
            panes.attach(runner)  # its Stop button stops this runner
        if on_start is not None:
            on_start(runner)

    def interrupted() -> bool:
        stopped.append(True)
        runner = holder.get("runner")
        if runner is None:
            return False
        runner.cancel()  # the run stops and returns the rows finished so far
        return True

    def planning() -> bool:
        # Planning is synchronous work on the loop's thread (the first run imports litellm
        # there: seconds), which a cancellation cannot cut short. It makes no call, and the
        # run it ends in is cancelled before its first one (``started``): the interrupt
        # need not wait for it. A batch job has no runner until its result is built: its
        # wait is cancelled and awaited like a run's.
        return "runner" not in holder and not batch

    if panes is not None:
        options["progress"] = None  # the panes say it all
    coro = aorchestrate(
        prompt,
        models,
        on_start=started,
        stream=on_stream if on_stream is not None else False,
        **options,  # type: ignore[arg-type]
        **params,
    )
    try:
        with while_waiting(panes.pump) if panes is not None else contextlib.nullcontext():
            result = run_sync(coro, on_interrupt=interrupted, leave=planning)
    except KeyboardInterrupt as exc:
        if isinstance(exc, RunInterrupted) or "runner" in holder or batch:
            raise  # a batch job's wait says itself how to attach to the job again
        # Still planning (the first run imports litellm): not one call was made.
        raise RunInterrupted(
            "interrupted before the first call: nothing was sent (.result is None)"
        ) from None
    finally:
        if panes is not None:
            panes.close()
    if stopped:
        # Returning would let a loop of runs go on to its next run: the interrupt goes on
        # up, carrying what was finished (a Stop button or runner.cancel() just returns).
        made = int(result.made_mask().sum())
        raise RunInterrupted(
            f"interrupted after {made} of {len(result.outputs)} calls; the rows finished so far "
            "are in this exception's .result (except nbtoolkit.RunInterrupted as stop: "
            "res = stop.result)",
            result,
        )
    return result


def option_names() -> list[str]:
    """``orchestrate``'s keyword-only options that a batch job keeps (all but ``batch`` and
    ``on_start``), in order."""
    import inspect

    return [
        name
        for name, p in inspect.signature(orchestrate).parameters.items()
        if p.kind is p.KEYWORD_ONLY and name not in ("batch", "on_start")
    ]


def _arguments(scope: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``orchestrate``'s keyword arguments as given (from its ``locals()``), for a batch."""
    return {**{name: scope[name] for name in option_names()}, **params}


def _reporter(progress: Any) -> Callable[[Progress], None] | None:
    """``progress=`` as a function, or one of the magic's modes by name (``"auto"``,
    ``"widget"``, ``"text"``, ``"none"``), so both front ends accept the same values."""
    if not isinstance(progress, str):
        return progress  # type: ignore[no-any-return]  # plan_run checks it is callable
    from . import progress as progress_mod

    if progress not in progress_mod.MODES:
        from .suggest import did_you_mean

        raise ConfigError(
            f"progress={progress!r} is not a mode.{did_you_mean(progress, progress_mod.MODES)} "
            f"Use one of {', '.join(progress_mod.MODES)}, a function of the progress, or None"
        )
    return None if progress == "none" else progress_mod.start(progress)
