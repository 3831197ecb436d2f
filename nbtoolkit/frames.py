"""The frames of a run: its outputs (one row per call), its consensus (one per input row),
and the manifest of what the run was made of.

The outputs are written column by column, straight from the outcomes: a run's memory grows
with the rows it keeps, with no intermediate record per row.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import consensus as consensus_mod
from . import extract as extract_mod
from . import providers
from .calls import FALLBACK, Call, Notes, Outcome, Outcomes, key_of, notes_of
from .consensus import FollowUpCall
from .errors import public, redact, redactor
from .plan import Plan
from .results import CONSENSUS_COLUMNS, EXTRA_CONSENSUS_COLUMNS, RunResult
from .spec import Model
from .strategies import Candidate

__all__ = ["SHARED", "collect", "input_names", "manifest", "output_frame"]

# The note on a duplicate call's row (same prompt, model, parameters and sample as another).
SHARED = "shared reply: identical to"


def collect(
    plan: Plan,
    outcomes: Sequence[Outcome],
    followups: dict[int, FollowUpCall],
    extracted: Sequence[consensus_mod.Extracted | None],
    candidates: Mapping[int, list[Candidate]],
    *,
    run_id: str,
    wall_s: float,
    cancelled: bool,
) -> RunResult:
    """Build the frames from the outcomes and their extracted answers (by call index), and
    decide each row."""
    # First, while no frame is built yet: its keys are the largest thing it holds for a while.
    meta = manifest(plan, outcomes)
    shared = (
        outcomes.count_shared()
        if isinstance(outcomes, Outcomes)
        else sum(1 for o in outcomes if o.shared_from is not None)
    )
    outputs = output_frame(
        plan.calls, outcomes, [extracted[c.index] or (None, False, None) for c in plan.calls]
    )
    made = [f.outcome or Outcome(error="Cancelled") for f in followups.values()]
    extra = output_frame(
        [f.call for f in followups.values()],
        made,
        [extract_mod.apply(plan.extractor, o.output) for o in made],
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
    result.meta = public(meta)
    result.meta["shared_calls"] = shared
    result.meta["transports"] = providers.transports_of(list(plan.models))
    proxy = providers.current_proxy()
    if proxy is not None:  # its URL and the key's variable name; never the key
        result.meta["proxy"] = public({"url": proxy.url, "key_env": proxy.variable})
    return result


def manifest(plan: Plan, outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """What a run was made of, for reports that must be re-run to the same numbers.

    Never holds an API key: parameters are the litellm ones, and ``api_key_env`` is a name.
    """
    from . import __version__
    from .audit import prompt_hash
    from .providers import sim
    from .strategies import records

    # Every call's inputs, cached or not: a simulated or replayed call has no cache key, yet
    # its prompt, parameters and sample still decide its answer.
    keys = sorted(key_of(c, plan.keys) for c in plan.calls)
    digest = hashlib.sha256()  # of the keys joined by newlines, without the joined copy
    for n, key in enumerate(keys):
        digest.update(f"\n{key}".encode() if n else key.encode())
    del keys
    recordings = sorted({str(c.params["nbt_store"]) for c in plan.calls if "nbt_store" in c.params})
    return {
        "nbtoolkit": __version__,
        "litellm": _version("litellm"),
        "python": sys.version.split()[0],
        "models": [_public(m) for m in plan.models],
        "strategy": repr(plan.strategy),
        # The strategy itself, a calibrated one with its fitted model: of_run(res) rebuilds it.
        "strategy_record": records.to_record(plan.strategy),
        # The number rows were flagged below ("auto:<target>" resolved from the calibration).
        "confidence_threshold": plan.confidence_threshold,
        "extract": getattr(plan.extractor, "__name__", repr(plan.extractor)),
        "params": {k: v for k, v in plan.run_params.items() if k != "api_key"},
        "seed": plan.seed,
        "prompt_template_sha256": prompt_hash([{"content": plan.template.text}]),
        "rows": len(plan.prompts),
        "calls": len(plan.calls),
        "cache_keys_sha256": digest.hexdigest(),
        "recordings": [
            {"path": p, "sha256": _file_digest(p)}
            for key in recordings
            for p in key.split(os.pathsep)
        ],
        "cached_calls": (
            outcomes.count_cached()
            if isinstance(outcomes, Outcomes)
            else sum(1 for o in outcomes if o.cached)
        ),
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


def _error(
    error: str | None,
    extract_error: str | None,
    output: str | None,
    notes: Notes | None,
) -> str | None:
    """A row's ``error``: the call's, else the extractor's; a fallback's or a shared reply's
    note when the output is there. ``notes``: the outcome's ``(answered_by, fallback_error,
    shared_from)``, None when it has none."""
    error = error or extract_error
    if notes is None:
        return error
    answered_by, fallback_error, shared_from = notes
    if answered_by and output is not None:
        error = f"{FALLBACK} {answered_by} after: {fallback_error}"
    if shared_from is not None:
        # Not a failure (the output is there): a note, as for an answer given by a fallback.
        note = f"{SHARED} row {shared_from}'s call, sent once"
        # After the error, so a copied "Skipped:"/"Cancelled" still reads (and counts) as one.
        error = f"{error} [{note}]" if error else note
    return error


def output_frame(
    calls: Sequence[Call],
    outcomes: Sequence[Outcome],
    extracted: Sequence[consensus_mod.Extracted],
) -> pd.DataFrame:
    """The outputs frame (``OUTPUT_COLUMNS``), one row per call, each column written once
    with its final dtype (from_records + astype cost ~4 ms even empty, and a dict per row).
    From ``Outcomes``, the numbers are copied column by column, with no object per call."""
    n = len(calls)
    if len(outcomes) != n or len(extracted) != n:
        raise ValueError("one outcome and one extracted answer per call")
    if n == 0:
        return _EMPTY_OUTPUTS.copy()
    stored = outcomes.columns() if isinstance(outcomes, Outcomes) else None
    if stored is None:
        stored = _columns_of(outcomes)
    row = np.fromiter((c.row for c in calls), dtype="int64", count=n)
    sample = np.fromiter((c.sample for c in calls), dtype="int64", count=n)
    model = [c.model.label for c in calls]
    replies, errors, notes = stored["output"], stored["error"], stored["notes"]
    # Missing is None in every run (see _objects); item by item, so a list answer stays one.
    output, answer, error = (np.empty(n, dtype=object) for _ in range(3))
    valid = np.empty(n, dtype="bool")
    for i, (value, ok, extract_error) in enumerate(extracted):
        reply = replies[i]
        output[i], answer[i] = reply, value
        valid[i] = ok and reply is not None
        error[i] = _error(errors[i], extract_error, reply, notes.get(i))
    columns: dict[str, Any] = {
        "row": row,
        "model": model,  # pandas' own text dtype
        "sample": sample,
        "output": pd.Series(output, dtype=object, copy=False),
        "answer": pd.Series(answer, dtype=object, copy=False),
        "valid": valid,
        "error": pd.Series(error, dtype=object, copy=False),
        "latency_s": np.array(stored["latency_s"], dtype="float64"),
        "prompt_tokens": _tokens(stored["prompt_tokens"]),
        "completion_tokens": _tokens(stored["completion_tokens"]),
        "cost_usd": np.array(stored["cost_usd"], dtype="float64"),
        "cached": np.frombuffer(stored["cached"], dtype="uint8").astype(bool),
        "attempts": np.array(stored["attempts"], dtype="int64"),
        "ttft_s": np.array(stored["ttft_s"], dtype="float64"),
    }
    return pd.DataFrame(columns, copy=False)


def _columns_of(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """``Outcomes.columns()``'s shape, from outcome objects (a list of them, or ``Outcomes``
    holding some whole): token counts as ``pd.array`` reads them, -1 never used."""
    items = list(outcomes)
    notes = {i: found for i, o in enumerate(items) if (found := notes_of(o)) is not None}
    return {
        "output": [o.output for o in items],
        "error": [o.error for o in items],
        "latency_s": [o.latency_s for o in items],
        "cost_usd": [o.cost_usd for o in items],
        "ttft_s": [o.ttft_s for o in items],
        "prompt_tokens": [o.prompt_tokens for o in items],
        "completion_tokens": [o.completion_tokens for o in items],
        "attempts": [o.attempts for o in items],
        "cached": bytes(bool(o.cached) for o in items),
        "notes": notes,
    }


def _tokens(values: Any) -> Any:
    """A token count column (``Int64``): -1 in stored columns and None are unknown."""
    if isinstance(values, list):
        return pd.array(values, dtype="Int64")
    counts = np.array(values, dtype="int64")
    return pd.arrays.IntegerArray(counts, counts < 0)


def _objects(values: list[Any]) -> pd.Series:
    """An object column whose missing values are None in every run. Left to inference,
    pandas 3 makes a column of strings and None its ``str`` dtype with NaN for missing, but a
    column of only None stays object with None: the same ``error`` read None in one run and
    NaN in the next. Item by item, so a list or dict answer stays one value."""
    column = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        column[i] = value
    return pd.Series(column, dtype=object)  # an explicit dtype: pandas infers none


_EMPTY_OUTPUTS = pd.DataFrame(
    {
        column: pd.Series(dtype=dtype)
        for column, dtype in {
            "row": "int64",
            "model": object,
            "sample": "int64",
            "output": object,
            "answer": object,
            "valid": "bool",
            "error": object,
            "latency_s": "float64",
            "prompt_tokens": "Int64",
            "completion_tokens": "Int64",
            "cost_usd": "float64",
            "cached": "bool",
            "attempts": "int64",
            "ttft_s": "float64",
        }.items()
    }
)


def _consensus(
    plan: Plan,
    outputs: pd.DataFrame,
    candidates: Mapping[int, list[Candidate]],
    followups: dict[int, FollowUpCall],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    row_costs: dict[int, list[float]] = {i: [] for i in range(len(plan.prompts))}
    for row, cost in zip(outputs["row"].tolist(), outputs["cost_usd"].tolist(), strict=True):
        row_costs[row].append(cost)
    for row, fc in followups.items():
        if fc.outcome is not None:
            row_costs[row].append(fc.outcome.cost_usd)
    name = getattr(plan.strategy, "name", type(plan.strategy).__name__)
    n = len(plan.prompts)
    answers, notes, field_rows = [], [], []
    confidence, agreement, cost = (np.empty(n, dtype="float64") for _ in range(3))
    n_valid = np.empty(n, dtype="int64")
    calibrated = np.empty(n, dtype="bool")
    for row_number, prompt in enumerate(plan.prompts):
        verdict = consensus_mod.decide(
            plan.strategy,
            row_number,
            prompt,
            plan.seed,
            candidates.get(row_number, []),
            followups.get(row_number),
        )
        answers.append(verdict.answer)
        notes.append(verdict.note)
        confidence[row_number] = float(verdict.confidence)
        agreement[row_number] = float(verdict.agreement)
        n_valid[row_number] = int(verdict.n_valid)
        cost[row_number] = consensus_mod.cost_sum(row_costs[row_number])
        calibrated[row_number] = bool(verdict.calibrated)
        if verdict.fields:
            field_rows.append({"row": row_number, **verdict.fields})
    # The free-text columns are objects, missing is None (see _objects): inferred as pandas'
    # string dtype (Arrow when pyarrow is installed), a reply with a lone surrogate would fail
    # the whole run.
    columns: dict[str, Any] = {
        "row": np.arange(n, dtype="int64"),
        "answer": _objects(answers),
        "confidence": confidence,
        "agreement": agreement,
        "n_valid": n_valid,
        "strategy": pd.Series([name] * n, dtype="str"),
        "cost_usd": cost,
        "low_confidence": confidence < plan.confidence_threshold,
        "note": _objects(notes),
        "calibrated": calibrated,
    }
    consensus = pd.DataFrame(columns, copy=False)
    fields = (
        pd.DataFrame.from_records(field_rows).set_index("row") if field_rows else pd.DataFrame()
    )
    if plan.data is None:
        return consensus, fields
    inputs = plan.data.copy()
    inputs.columns = input_names(list(inputs.columns))
    # The frames are shown and written (CSV, reports): a key pasted into the data is not.
    hide = redactor()
    for position in range(inputs.shape[1]):
        column = inputs.iloc[:, position]
        if column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
            inputs.iloc[:, position] = column.map(lambda v: hide(v) if isinstance(v, str) else v)
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
