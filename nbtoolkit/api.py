"""``orchestrate``: one prompt (or one per DataFrame row) to many models, as DataFrames.

The function reads as a recipe: check everything, plan the calls, run them, read the
answers, combine them. Every user mistake is raised in the first step, before any call is
made or anything is written.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import consensus as consensus_mod
from . import extract as extract_mod
from . import providers
from .audit import AuditLog, call_record
from .cache import Cache, cache_dir
from .consensus import FollowUpCall
from .errors import ConfigError, RunFailedError, public, redact
from .loop import run_sync
from .plan import Plan, check_options, plan_run
from .results import CONSENSUS_COLUMNS, EXTRA_CONSENSUS_COLUMNS, OUTPUT_COLUMNS, RunResult
from .runner import SKIPPED, Call, Outcome, Progress, RetryPolicy, Runner
from .spec import Model
from .strategies import Candidate

# The note on a duplicate call's row (same prompt, model, parameters and sample as another).
SHARED = "shared reply: identical to"


def collect(
    plan: Plan,
    outcomes: list[Outcome],
    followups: dict[int, FollowUpCall],
    extracted: dict[int, consensus_mod.Extracted],
    candidates: dict[int, list[Candidate]],
    *,
    run_id: str,
    wall_s: float,
    cancelled: bool,
) -> RunResult:
    """Build the frames from the outcomes and their extracted answers, and decide each row."""
    records = [
        _record(call, outcome, extracted[call.index])
        for call, outcome in zip(plan.calls, outcomes, strict=True)
    ]
    outputs = _frame(records)
    extra = _frame(
        [
            _record(f.call, outcome, extract_mod.apply(plan.extractor, outcome.output))
            for f in followups.values()
            for outcome in [f.outcome or Outcome(error="Cancelled")]
        ]
    )
    consensus, fields = _consensus(plan, outputs, candidates, followups)
    result = RunResult(
        outputs=outputs,
        consensus=consensus,
        run_id=run_id,
        models=[m.label for m in plan.models],
        strategy=getattr(plan.strategy, "name", type(plan.strategy).__name__),
        prompt=redact(plan.template.text),
        wall_s=wall_s,
        cancelled=cancelled,
        simulated=[m.label for m in plan.models if m.id.startswith("sim/")],
        strategy_calls=extra,
        field_agreement=fields,
        input_columns=(
            {}
            if plan.data is None
            else dict(zip(plan.data.columns, input_names(list(plan.data.columns)), strict=True))
        ),
    )
    result.warnings.extend(plan.notes)
    # Written into report notebooks: header values hidden, credentials and keys redacted.
    result.meta = public(manifest(plan, outcomes))
    result.meta["shared_calls"] = sum(1 for o in outcomes if o.shared_from is not None)
    result.meta["transports"] = providers.transports_of(list(plan.models))
    return result


def manifest(plan: Plan, outcomes: list[Outcome]) -> dict[str, Any]:
    """What a run was made of, for reports that must be re-run to the same numbers.

    Never holds an API key: parameters are the litellm ones, and ``api_key_env`` is a name.
    """
    from . import __version__
    from .audit import prompt_hash
    from .cache import call_key
    from .providers import sim

    # Every call's inputs, cached or not: a simulated or replayed call has no cache key, yet
    # its prompt, parameters and sample still decide its answer.
    keys = sorted(
        c.key or call_key(c.model.id, c.messages, c.params, c.sample, c.model.label)
        for c in plan.calls
    )
    recordings = sorted({str(c.params["nbt_store"]) for c in plan.calls if "nbt_store" in c.params})
    return {
        "nbtoolkit": __version__,
        "litellm": _version("litellm"),
        "python": sys.version.split()[0],
        "models": [_public(m) for m in plan.models],
        "strategy": repr(plan.strategy),
        "extract": getattr(plan.extractor, "__name__", repr(plan.extractor)),
        "params": {k: v for k, v in plan.run_params.items() if k != "api_key"},
        "seed": plan.seed,
        "prompt_template_sha256": prompt_hash([{"content": plan.template.text}]),
        "rows": len(plan.prompts),
        "calls": len(plan.calls),
        "cache_keys_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
        "recordings": [
            {"path": p, "sha256": _file_digest(p)}
            for key in recordings
            for p in key.split(os.pathsep)
        ],
        "cached_calls": sum(1 for o in outcomes if o.cached),
        # Simulated models sleep only this share of their (recorded) simulated latency.
        "sim_time_scale": sim.time_scale()
        if any(m.id.startswith("sim/") for m in plan.models)
        else None,
    }


def _public(model: Model) -> dict[str, Any]:
    """A model's settings for the record, without header values (they may carry a token)."""
    dump = model.model_dump(mode="json", exclude_defaults=True)
    for section in ("params", "extra"):
        if "extra_headers" in dump.get(section, {}):
            dump[section]["extra_headers"] = sorted(dump[section]["extra_headers"])
    return dump


@functools.cache
def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _record(call: Call, outcome: Outcome, extracted: consensus_mod.Extracted) -> dict[str, Any]:
    answer, valid, extract_error = extracted
    error = outcome.error or extract_error
    if outcome.answered_by and outcome.output is not None:
        error = f"answered by fallback {outcome.answered_by} after: {outcome.fallback_error}"
    if outcome.shared_from is not None:
        # Not a failure (the output is there): a note, as for an answer given by a fallback.
        note = f"{SHARED} row {outcome.shared_from}'s call, sent once"
        # After the error, so a copied "Skipped:"/"Cancelled" still reads (and counts) as one.
        error = f"{error} [{note}]" if error else note
    return {
        "row": call.row,
        "model": call.model.label,
        "sample": call.sample,
        "output": outcome.output,
        "answer": answer,
        "valid": valid and outcome.output is not None,
        "error": error,
        "latency_s": outcome.latency_s,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "cost_usd": outcome.cost_usd,
        "cached": outcome.cached,
        "attempts": outcome.attempts,
    }


# Each column built once with its final dtype: from_records + astype cost ~4 ms even empty.
_INTS = ("row", "sample", "attempts")
_BOOLS = ("valid", "cached")
_FLOATS = ("latency_s", "cost_usd")
_NULLABLE_INTS = ("prompt_tokens", "completion_tokens")


def _frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    columns: dict[str, Any] = {}
    for name in OUTPUT_COLUMNS:
        values = [r[name] for r in records]
        if name in _INTS:
            columns[name] = np.array(values, dtype="int64")
        elif name in _BOOLS:
            columns[name] = np.array(values, dtype="bool")
        elif name in _FLOATS:
            columns[name] = np.array(values, dtype="float64")
        elif name in _NULLABLE_INTS:
            columns[name] = pd.array(values, dtype="Int64")
        elif name == "model":  # never missing: pandas' own text dtype
            columns[name] = values if values else np.array([], dtype=object)
        else:
            columns[name] = _objects(values)
    return pd.DataFrame(columns, columns=OUTPUT_COLUMNS)


def _objects(values: list[Any]) -> pd.Series:
    """An object column whose missing values are None in every run. Left to inference,
    pandas 3 makes a column of strings and None its ``str`` dtype with NaN for missing, but a
    column of only None stays object with None: the same ``error`` read None in one run and
    NaN in the next. Item by item, so a list or dict answer stays one value."""
    column = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        column[i] = value
    return pd.Series(column, dtype=object)  # an explicit dtype: pandas infers none


def _consensus(
    plan: Plan,
    outputs: pd.DataFrame,
    candidates: dict[int, list[Candidate]],
    followups: dict[int, FollowUpCall],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    row_costs: dict[int, list[float]] = {i: [] for i in range(len(plan.prompts))}
    for row, cost in zip(outputs["row"], outputs["cost_usd"], strict=True):
        row_costs[int(row)].append(float(cost))
    for row, fc in followups.items():
        if fc.outcome is not None:
            row_costs[row].append(fc.outcome.cost_usd)
    name = getattr(plan.strategy, "name", type(plan.strategy).__name__)
    rows, field_rows = [], []
    for row_number, prompt in enumerate(plan.prompts):
        verdict = consensus_mod.decide(
            plan.strategy,
            row_number,
            prompt,
            plan.seed,
            candidates.get(row_number, []),
            followups.get(row_number),
        )
        confidence = float(verdict.confidence)
        rows.append(
            {
                "row": row_number,
                "answer": verdict.answer,
                "confidence": confidence,
                "agreement": float(verdict.agreement),
                "n_valid": int(verdict.n_valid),
                "strategy": name,
                "cost_usd": consensus_mod.cost_sum(row_costs[row_number]),
                "low_confidence": confidence < plan.confidence_threshold,
                "note": verdict.note,
            }
        )
        if verdict.fields:
            field_rows.append({"row": row_number, **verdict.fields})
    consensus = pd.DataFrame.from_records(rows, columns=CONSENSUS_COLUMNS + EXTRA_CONSENSUS_COLUMNS)
    for column in ("answer", "note"):  # missing is None here too (see _objects)
        consensus[column] = _objects([r[column] for r in rows])
    fields = (
        pd.DataFrame.from_records(field_rows).set_index("row") if field_rows else pd.DataFrame()
    )
    if plan.data is None:
        return consensus, fields
    inputs = plan.data.copy()
    inputs.columns = input_names(list(inputs.columns))
    # The frames are shown and written (CSV, reports): a key pasted into the data is not.
    for position in range(inputs.shape[1]):
        column = inputs.iloc[:, position]
        if column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
            inputs.iloc[:, position] = column.map(lambda v: redact(v) if isinstance(v, str) else v)
    consensus.index = inputs.index
    return pd.concat([inputs, consensus], axis=1), fields


def input_names(columns: list[Any]) -> list[Any]:
    """The input columns' names in the consensus frame: an input column called like one of
    the consensus's own ("answer": gold answers often are) gets ``_input``, then a number if
    that name is taken too, so no column hides or duplicates another."""
    taken = set(CONSENSUS_COLUMNS + EXTRA_CONSENSUS_COLUMNS) | set(columns)
    out = []
    for column in columns:
        if column not in CONSENSUS_COLUMNS + EXTRA_CONSENSUS_COLUMNS:
            out.append(column)
            continue
        name, n = f"{column}_input", 2
        while name in taken:
            name, n = f"{column}_input{n}", n + 1
        taken.add(name)
        out.append(name)
    return out


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
    confidence_threshold: float = 0.5,
    progress: Callable[[Progress], None] | str | None = None,
    audit: bool | str = True,
    cache_path: str | None = None,
    on_start: Callable[[Runner], None] | None = None,
    transport: str = "auto",
    **params: Any,
) -> RunResult:
    """The async twin of ``orchestrate``; await it inside a running event loop.

    ``on_start(runner)`` is called once the calls are planned; ``runner.cancel()`` (from any
    thread) stops the run and returns the rows finished so far, marked ``cancelled``.
    """
    reporter = _reporter(progress)
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
    )
    run_id = uuid.uuid4().hex[:12]
    runner = Runner(
        concurrency=concurrency,
        timeout=timeout,
        retry=RetryPolicy(retries=retries),
        cache=Cache(cache_path) if cache != "off" else None,
        cache_mode=cache,
        progress=reporter,
        on_outcome=_auditor(audit, run_id),
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
    )
    if on_start is not None:
        on_start(runner)
    outcomes = await consensus_mod.execute(
        plan.calls, plan.models, plan.strategy, plan.extractor, runner
    )
    extracted = consensus_mod.extract_all(plan.calls, list(outcomes), plan.extractor)
    candidates = consensus_mod.candidates_of(plan.calls, list(outcomes), extracted)
    followups = await consensus_mod.follow_up(
        candidates,
        dict(enumerate(plan.prompts)),
        plan.strategy,
        plan.run_params,
        plan.seed,
        runner,
    )
    runner.finish()
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
    _warn(result, runner)
    _raise_if_failed(plan, result, runner.cancelled)
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


def _auditor(audit: bool | str, run_id: str) -> Callable[[Call, Outcome], None] | None:
    log = _audit_log(audit)
    if log is None:
        return None

    def write(call: Call, outcome: Outcome) -> None:
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

    return write


def _warn(result: RunResult, runner: Runner) -> None:
    out = result.outputs
    result.warnings.extend(runner.recording_warnings())
    if runner.shared:
        result.warnings.append(
            f"{runner.shared} calls were identical to another call of this run (duplicate "
            "rows): each was sent once and its reply shared, at no extra cost "
            f"(their error column says '{SHARED} row N')"
        )
    failed = int(result.failed_mask().sum())
    if failed and not runner.cancelled:
        result.warnings.append(
            f"{failed} of {int((~result.skipped_mask()).sum())} calls failed; "
            "see res.errors for each error"
        )
    skipped = result.skipped
    if len(skipped):
        reason = skipped["error"].iloc[0].removeprefix(SKIPPED).strip()
        result.warnings.append(
            f"{len(skipped)} calls were not made ({reason}); they are 'Skipped' rows"
        )
    fallbacks = int(out["error"].fillna("").str.startswith("answered by fallback").sum())
    if fallbacks:
        result.warnings.append(f"{fallbacks} calls were answered by a fallback model")
    notes = result.consensus["note"].dropna()
    if len(notes):
        result.warnings.append(f"{len(notes)} row(s) have a note, e.g.: {notes.iloc[0]}")


def _audit_log(audit: bool | str) -> AuditLog | None:
    if audit is False:
        return None
    path = cache_dir() / "audit.jsonl" if audit is True else audit
    return AuditLog(path)


def _raise_if_failed(plan: Plan, result: RunResult, cancelled: bool) -> None:
    if cancelled or result.outputs.empty:
        return
    failed = result.failed_mask()
    attempted = int((~result.skipped_mask()).sum())
    if attempted == 0:
        return  # nothing was asked (a budget of 0): the Skipped rows and warning say why
    if int(failed.sum()) == attempted:
        first = result.outputs.loc[failed, "error"].iloc[0]
        raise RunFailedError(
            f"every call failed ({attempted} of {attempted}); the first error: {first}", result
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
    progress: Callable[[Progress], None] | str | None = None,
    schema: type | None = None,
    repair: int = 0,
    repair_token_budget: int = 8000,
    max_cost_usd: float | None = None,
    confidence_threshold: float = 0.5,
    audit: bool | str = True,
    cache_path: str | None = None,
    on_start: Callable[[Runner], None] | None = None,
    transport: str = "auto",
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
        schema=schema,
        repair=repair,
        repair_token_budget=repair_token_budget,
        max_cost_usd=max_cost_usd,
        confidence_threshold=confidence_threshold,
        audit=audit,
        cache_path=cache_path,
        transport=transport,
    )
    check_options(on_start=on_start)  # before it is wrapped below
    holder: dict[str, Runner] = {}

    def started(runner: Runner) -> None:
        holder["runner"] = runner
        if on_start is not None:
            on_start(runner)

    def interrupted() -> bool:
        runner = holder.get("runner")
        if runner is None:
            return False
        runner.cancel()  # the run stops and returns the rows finished so far
        return True

    coro = aorchestrate(prompt, models, on_start=started, **options, **params)  # type: ignore[arg-type]
    return run_sync(coro, on_interrupt=interrupted)


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
