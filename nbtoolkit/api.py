"""``orchestrate``: one prompt (or one per DataFrame row) to many models, as DataFrames.

The function reads as a recipe: check everything, plan the calls, run them, read the
answers, combine them. Every user mistake is raised in the first step, before any call is
made or anything is written.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from . import extract as extract_mod
from . import providers, strategies
from .audit import AuditLog, call_record
from .cache import Cache, cache_dir, check_mode
from .errors import ConfigError, RunFailedError
from .providers import recordings as recordings_mod
from .results import CONSENSUS_COLUMNS, OUTPUT_COLUMNS, RunResult
from .runner import Call, Outcome, Progress, RetryPolicy, Runner
from .spec import Model, as_models, check_litellm_params
from .strategies import Candidate
from .templating import Template


@dataclass
class Plan:
    """A checked run, ready to go: the calls and everything needed to read their results."""

    template: Template
    models: tuple[Model, ...]
    data: pd.DataFrame | None
    rows: list[dict[str, Any]]
    calls: list[Call]
    extractor: Callable[[Any], Any]
    strategy: Any
    strict: bool


def plan_run(
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
    params: dict[str, Any] | None = None,
) -> Plan:
    """Check every argument and build the calls; raises ``ConfigError`` subclasses only."""
    check_litellm_params(params or {}, "orchestrate()")
    panel = as_models(models)
    template = Template(prompt)
    if data is not None and not isinstance(data, pd.DataFrame):
        raise ConfigError(
            f"data= must be a pandas DataFrame (one run per row), not {type(data).__name__}; "
            "for a list of dicts use pd.DataFrame(records)"
        )
    if variables is not None and not isinstance(variables, Mapping):
        raise ConfigError(
            f"variables= must be a dict of name -> value, not {type(variables).__name__}"
        )
    _positive("concurrency", concurrency)
    _positive("samples", samples)
    if retries < 0:
        raise ConfigError(f"retries={retries} is negative: use 0 for no retries")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"timeout={timeout} must be a positive number of seconds, or None")
    check_mode(cache)
    extractor = extract_mod.build_extractor(extract)
    chosen = strategies.get(strategy)
    variables = dict(variables or {})
    columns = [str(c) for c in data.columns] if data is not None else []
    template.check(set(columns) | set(variables))

    store_key = None
    if any(m.id.startswith("replay/") for m in panel):
        paths = recordings_mod.resolve_paths(recordings)
        if paths:
            store_key = recordings_mod.load(paths).key
    options = {"recordings": recordings}
    for model in panel:
        providers.check_model(model, options)

    rows = data.to_dict("records") if data is not None else [{}]
    run_params: dict[str, Any] = {}
    if temperature is not None:
        run_params["temperature"] = temperature
    if max_tokens is not None:
        run_params["max_tokens"] = max_tokens
    if seed is not None:
        run_params["seed"] = seed
    run_params.update(params or {})

    calls: list[Call] = []
    for row_number, row in enumerate(rows):
        text = template.render({str(k): v for k, v in row.items()}, variables)
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": text}
        ]
        for position, model in enumerate(panel):
            call_params = {**run_params, **model.litellm_kwargs()}
            offline = providers.is_offline(model.id)
            if seed is not None and not offline:
                # Many providers have no seed; litellm drops it there instead of failing.
                call_params["drop_params"] = True
            if store_key and model.id.startswith("replay/"):
                call_params["nbt_store"] = store_key
            for sample in range(samples):
                these = dict(call_params)
                if offline:
                    these["nbt_sample"] = sample
                calls.append(Call(len(calls), row_number, model, position, sample, messages, these))
    return Plan(template, panel, data, rows, calls, extractor, chosen, strict)


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name}={value!r} must be a positive whole number")


def collect(
    plan: Plan, outcomes: list[Outcome], *, run_id: str, wall_s: float, cancelled: bool
) -> RunResult:
    """Read the answers out of the outcomes and combine them per row."""
    records = []
    for call, outcome in zip(plan.calls, outcomes, strict=True):
        answer, valid, extract_error = extract_mod.apply(plan.extractor, outcome.output)
        records.append(
            {
                "row": call.row,
                "model": call.model.label,
                "sample": call.sample,
                "output": outcome.output,
                "answer": answer,
                "valid": valid and outcome.error is None,
                "error": outcome.error or extract_error,
                "latency_s": outcome.latency_s,
                "prompt_tokens": outcome.prompt_tokens,
                "completion_tokens": outcome.completion_tokens,
                "cost_usd": outcome.cost_usd,
                "cached": outcome.cached,
                "attempts": outcome.attempts,
            }
        )
    outputs = pd.DataFrame.from_records(records, columns=OUTPUT_COLUMNS)
    outputs = outputs.astype(
        {
            "row": "int64",
            "sample": "int64",
            "valid": "bool",
            "latency_s": "float64",
            "prompt_tokens": "Int64",
            "completion_tokens": "Int64",
            "cost_usd": "float64",
            "cached": "bool",
            "attempts": "int64",
        }
    )
    consensus = _consensus(plan, records)
    return RunResult(
        outputs=outputs,
        consensus=consensus,
        run_id=run_id,
        models=[m.label for m in plan.models],
        strategy=getattr(plan.strategy, "name", type(plan.strategy).__name__),
        prompt=plan.template.text,
        wall_s=wall_s,
        cancelled=cancelled,
        simulated=[m.label for m in plan.models if m.id.startswith("sim/")],
    )


def _consensus(plan: Plan, records: list[dict[str, Any]]) -> pd.DataFrame:
    by_row: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(plan.rows))}
    for rec, call in zip(records, plan.calls, strict=True):
        rec["_call"] = call
        by_row[rec["row"]].append(rec)
    name = getattr(plan.strategy, "name", type(plan.strategy).__name__)
    rows = []
    for row_number, recs in by_row.items():
        candidates = [
            Candidate(
                model=r["model"],
                sample=r["sample"],
                answer=r["answer"],
                valid=r["valid"],
                weight=r["_call"].model.weight,
                position=r["_call"].position,
            )
            for r in recs
        ]
        verdict = plan.strategy.combine(candidates)
        costs = [r["cost_usd"] for r in recs]
        rows.append(
            {
                "row": row_number,
                "answer": verdict.answer,
                "confidence": float(verdict.confidence),
                "agreement": float(verdict.agreement),
                "n_valid": int(verdict.n_valid),
                "strategy": name,
                "cost_usd": math.nan if any(math.isnan(c) for c in costs) else float(sum(costs)),
            }
        )
    for rec in records:
        rec.pop("_call", None)
    consensus = pd.DataFrame.from_records(rows, columns=CONSENSUS_COLUMNS)
    if plan.data is None:
        return consensus
    inputs = plan.data.copy()
    # An input column called "answer" (gold answers often are) must not hide the consensus.
    inputs.columns = [f"{c}_input" if c in CONSENSUS_COLUMNS else c for c in inputs.columns]
    consensus.index = inputs.index
    return pd.concat([inputs, consensus], axis=1)


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
    progress: Callable[[Progress], None] | None = None,
    audit: bool | str = True,
    cache_path: str | None = None,
    on_start: Callable[[Runner], None] | None = None,
    **params: Any,
) -> RunResult:
    """The async twin of ``orchestrate``; await it inside a running event loop.

    ``on_start(runner)`` is called once the calls are planned; ``runner.cancel()`` (from any
    thread) stops the run and returns the rows finished so far, marked ``cancelled``.
    """
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
        params=params,
    )
    run_id = uuid.uuid4().hex[:12]
    log = _audit_log(audit)

    def on_outcome(call: Call, outcome: Outcome) -> None:
        if log is not None:
            log.write(
                call_record(
                    run_id=run_id,
                    model=call.model.id,
                    params=call.params,
                    messages=call.messages,
                    row=call.row,
                    sample=call.sample,
                    outcome=outcome,
                )
            )

    runner = Runner(
        concurrency=concurrency,
        timeout=timeout,
        retry=RetryPolicy(retries=retries),
        cache=Cache(cache_path) if cache != "off" else None,
        cache_mode=cache,
        progress=progress,
        on_outcome=on_outcome,
        seed=seed,
    )
    if on_start is not None:
        on_start(runner)
    outcomes = await runner.run(plan.calls)
    result = collect(
        plan, outcomes, run_id=run_id, wall_s=runner.wall_s, cancelled=runner.cancelled
    )
    result.warnings.extend(runner.warnings)
    failed = int(result.outputs["output"].isna().sum())
    if failed and not runner.cancelled:
        result.warnings.append(
            f"{failed} of {len(result.outputs)} calls failed; see res.errors for each error"
        )
    _raise_if_failed(plan, result, runner.cancelled)
    return result


def _audit_log(audit: bool | str) -> AuditLog | None:
    if audit is False:
        return None
    path = cache_dir() / "audit.jsonl" if audit is True else audit
    return AuditLog(path)


def _raise_if_failed(plan: Plan, result: RunResult, cancelled: bool) -> None:
    if cancelled or result.outputs.empty:
        return
    failed = result.outputs["error"].notna() & result.outputs["output"].isna()
    if failed.all():
        first = result.outputs["error"].iloc[0]
        raise RunFailedError(
            f"every call failed ({len(failed)} of {len(failed)}); the first error: {first}",
            result,
        )
    if plan.strict and failed.any():
        raise RunFailedError(
            f"{int(failed.sum())} of {len(failed)} calls failed (strict=True); "
            f"the first error: {result.outputs.loc[failed, 'error'].iloc[0]}",
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
    progress: Callable[[Progress], None] | None = None,
    audit: bool | str = True,
    cache_path: str | None = None,
    on_start: Callable[[Runner], None] | None = None,
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

    Works the same in a script and inside a running event loop (a Jupyter kernel): the run
    goes on a worker thread with its own loop, so no loop is patched. Ctrl-C (or interrupting
    the kernel) stops the calls in flight and returns the rows finished so far.
    """
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
        audit=audit,
        cache_path=cache_path,
    )
    holder: dict[str, Runner] = {}

    def started(runner: Runner) -> None:
        holder["runner"] = runner
        if on_start is not None:
            on_start(runner)

    def work() -> RunResult:
        return asyncio.run(
            aorchestrate(
                prompt,
                models,
                on_start=started,
                **options,  # type: ignore[arg-type]
                **params,
            )
        )

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nbtoolkit") as pool:
        future = pool.submit(work)
        try:
            return future.result()
        except KeyboardInterrupt:
            if "runner" in holder:
                holder["runner"].cancel()
            return future.result()
