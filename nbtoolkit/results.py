"""``RunResult``: the frames a run returns, and the numbers people ask of them.

>>> res.outputs      # one row per (input row, model, sample)           # doctest: +SKIP
>>> res.consensus    # one row per input row                            # doctest: +SKIP
>>> res.totals()     # calls, errors, tokens, cost, wall time           # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from . import views
from .calls import FALLBACK, is_cancelled, is_skipped
from .formatting import format_cost
from .strategies.base import answer_key

OUTPUT_COLUMNS = [
    "row",
    "model",
    "sample",
    "output",
    "answer",
    "valid",
    "error",
    "latency_s",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "cached",
    "attempts",
    "ttft_s",  # seconds to the first streamed text (stream=True); NaN when not streamed
]
CONSENSUS_COLUMNS = ["row", "answer", "confidence", "agreement", "n_valid", "strategy", "cost_usd"]
# After the contract's columns: the flag under confidence_threshold, a strategy's note
# (e.g. "judge failed (...): fell back to vote"), and whether ``confidence`` is a probability
# fitted by ``calibrate`` (True) or the strategy's own share (False).
EXTRA_CONSENSUS_COLUMNS = ["low_confidence", "note", "calibrated"]
#: The consensus's own columns: an input column with one of these names gets ``_input``.
RESERVED_COLUMNS = frozenset(CONSENSUS_COLUMNS + EXTRA_CONSENSUS_COLUMNS)


@dataclass(frozen=True)
class CallCounts:
    """How a run's calls ended, counted in one pass by the masks' rules (``made_mask``...):
    the counts a run's warnings and checks need, without a frame per mask."""

    calls: int
    made: int
    failed: int
    skipped: int
    cancelled: int
    fallback: int
    first_failed: str | None  # the first failed call's error
    first_skipped: str | None  # the first skipped call's error ("Skipped: <why>")


def count_calls(outputs: pd.DataFrame) -> CallCounts:
    """``CallCounts`` of an outputs frame (``OUTPUT_COLUMNS``)."""
    missing = outputs["output"].isna().to_numpy()
    made = failed = skipped = cancelled = fallback = 0
    first_failed = first_skipped = None
    for absent, error in zip(missing, outputs["error"].tolist(), strict=True):
        if is_skipped(error):
            skipped += 1
            if skipped == 1:
                first_skipped = error
            continue
        if is_cancelled(error):
            cancelled += 1
            continue
        made += 1
        if absent:
            failed += 1
            if failed == 1:
                first_failed = error
        if isinstance(error, str) and error.startswith(FALLBACK):
            fallback += 1
    return CallCounts(
        len(missing), made, failed, skipped, cancelled, fallback, first_failed, first_skipped
    )


def agreement_counts(consensus: pd.DataFrame) -> dict[str, int]:
    """Rows by agreement: ``agree`` (two or more valid answers, all the same), ``disagree``
    (two or more, not all the same), ``one_answer`` and ``no_answer`` (fewer than two valid
    answers: neither agree nor disagree). The four add up to the rows; every sentence that
    counts agreement counts it from here."""
    n_valid = consensus["n_valid"].fillna(0)
    several = n_valid >= 2
    full = consensus["agreement"].fillna(0) >= 1.0
    return {
        "agree": int((several & full).sum()),
        "disagree": int((several & ~full).sum()),
        "one_answer": int((n_valid == 1).sum()),
        "no_answer": int((n_valid == 0).sum()),
    }


def agreement_sentence(counts: dict[str, int]) -> str:
    """``models disagree on 1 of 8 row(s), agree on 5; 2 with no valid answer`` from
    ``agreement_counts``: rows with fewer than two valid answers are named as such, never
    counted as agreeing or disagreeing."""
    rows = sum(counts.values())
    agree, disagree = counts["agree"], counts["disagree"]
    if agree == rows:
        text = f"models agree on all {rows} row(s)"
    elif disagree == rows:
        text = f"models disagree on all {rows} row(s)"
    elif disagree:
        text = f"models disagree on {disagree} of {rows} row(s), agree on {agree}"
    else:
        text = f"models agree on {agree} of {rows} row(s), disagree on none"
    neither = [
        f"{counts[key]} with {what}"
        for key, what in (("no_answer", "no valid answer"), ("one_answer", "one valid answer"))
        if counts[key]
    ]
    return text + (f"; {', '.join(neither)}" if neither else "")


def data_column(result: RunResult, name: Any) -> Any | None:
    """The column of ``result.consensus`` that holds the user's data column ``name``, or None.

    An input column named like one of the consensus's own (``answer``, ``row``,
    ``confidence``...) is stored as ``<name>_input`` (``<name>_input2``... when the data has
    that name too); ``name`` itself then means the consensus's value and must never be read
    as the user's data (gold scored against the consensus would read 100 %).
    """
    consensus = result.consensus
    if result.input_columns:
        stored = result.input_columns.get(name)
    else:
        stored = f"{name}_input" if name in RESERVED_COLUMNS else name
    return stored if stored is not None and stored in consensus.columns else None


@dataclass
class RunResult:
    """Every model's output and the consensus of a run, as pandas DataFrames."""

    outputs: pd.DataFrame
    consensus: pd.DataFrame
    run_id: str
    models: list[str]
    strategy: str
    prompt: str
    wall_s: float
    cancelled: bool = False
    simulated: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    strategy_calls: pd.DataFrame = field(default_factory=pd.DataFrame)
    field_agreement: pd.DataFrame = field(default_factory=pd.DataFrame)
    meta: dict[str, Any] = field(default_factory=dict)
    # The user's data column names -> their names in ``consensus`` (see ``data_column``).
    input_columns: dict[Any, Any] = field(default_factory=dict)

    def skipped_mask(self) -> pd.Series:
        """True for the calls a strategy or the budget did not need to make."""
        return self.outputs["error"].map(is_skipped).astype(bool)

    def cancelled_mask(self) -> pd.Series:
        """True for the calls a cancel stopped (or never started): not failures."""
        return self.outputs["error"].map(is_cancelled).astype(bool)

    def made_mask(self) -> pd.Series:
        """True for the calls that were made (not skipped, not cancelled): what was paid for."""
        return ~self.skipped_mask() & ~self.cancelled_mask()

    def failed_mask(self) -> pd.Series:
        """True for the calls that were made and failed (not skipped, not cancelled)."""
        return self.outputs["output"].isna() & self.made_mask()

    def fallback_mask(self) -> pd.Series:
        """True for the calls a fallback model answered after the model itself failed."""
        return self.outputs["error"].fillna("").str.startswith(FALLBACK)

    def call_kinds(self) -> pd.DataFrame:
        """One row per call (aligned with ``outputs``), boolean columns ``model, made,
        skipped, cancelled, failed, unreadable, valid, retried, fallback``: the one place
        that says what happened to each call, for every count on screen and in reports."""
        out = self.outputs
        return pd.DataFrame(
            {
                "model": out["model"],
                "made": self.made_mask(),
                "skipped": self.skipped_mask(),
                "cancelled": self.cancelled_mask(),
                "failed": self.failed_mask(),
                "unreadable": self.invalid_mask(),
                "valid": out["valid"].astype(bool),
                "retried": out["attempts"] > 1,
                "fallback": self.fallback_mask(),
            }
        )

    def invalid_mask(self) -> pd.Series:
        """True for the replies that came back but could not be read as an answer."""
        return self.outputs["output"].notna() & ~self.outputs["valid"].astype(bool)

    @property
    def errors(self) -> pd.DataFrame:
        """The rows of ``outputs`` whose call failed (no reply at all)."""
        return self.outputs[self.failed_mask()]

    @property
    def skipped(self) -> pd.DataFrame:
        """The rows of ``outputs`` a strategy or the budget did not need to call."""
        return self.outputs[self.skipped_mask()]

    @property
    def answers(self) -> pd.DataFrame:
        """One row per input row, one column per model: who answered what, side by side."""
        first = self.outputs[self.outputs["sample"] == 0]
        table = first.pivot(index="row", columns="model", values="answer")
        return table.reindex(columns=self.models)

    def disagreements(self) -> pd.DataFrame:
        """The consensus rows where two or more valid answers were not all the same (a row
        with fewer than two valid answers is not a disagreement)."""
        c = self.consensus
        return c[(c["n_valid"].fillna(0) >= 2) & (c["agreement"] < 1.0)]

    def totals(self) -> dict[str, Any]:
        """Calls, failures, tokens, cost (NaN if any price is unknown) and wall time.

        ``calls`` are the calls made; ``failed`` (no reply), ``invalid`` (a reply that could
        not be read), ``skipped`` (not needed) and ``cancelled`` (stopped by a cancel) never
        overlap, and only ``failed`` and ``invalid`` are among ``calls``.
        ``unknown_cost_calls`` counts the calls made whose cost is unknown (no price, or no
        ``usage`` in the reply); ``unknown_token_calls`` those whose token counts are:
        ``prompt_tokens`` and ``completion_tokens`` are then the sums of the known counts, a
        lower bound (``formatting.format_tokens`` writes them so).
        """
        out = self.outputs
        if not self.strategy_calls.empty:
            out = pd.concat([out, self.strategy_calls], ignore_index=True)
        error = out["error"]
        unmade = error.map(is_skipped).astype(bool) | error.map(is_cancelled).astype(bool)
        cost = out["cost_usd"][~unmade]
        failed = out["output"].isna() & ~unmade
        return {
            "calls": int((~unmade).sum()),
            "failed": int(failed.sum()),
            "skipped": int(error.map(is_skipped).sum()),
            "cancelled": int(error.map(is_cancelled).sum()),
            "invalid": int(self.invalid_mask().sum()),
            "cached": int(out["cached"].sum()),
            "prompt_tokens": int(out["prompt_tokens"].sum(skipna=True)),
            "completion_tokens": int(out["completion_tokens"].sum(skipna=True)),
            "cost_usd": float(cost.sum()) if cost.notna().all() else math.nan,
            "known_cost_usd": float(cost.sum(skipna=True)),
            "spent_usd": float(cost[~out["cached"].astype(bool)[~unmade]].sum(skipna=True)),
            "wall_s": self.wall_s,
            "unknown_cost_calls": int(cost.isna().sum()),
            "unknown_token_calls": int(
                (out["prompt_tokens"].isna() & out["output"].notna() & ~unmade).sum()
            ),
        }

    def per_model(self) -> pd.DataFrame:
        """Per model: calls made, valid share of them, failures, median latency, tokens, cost.

        Skipped and cancelled calls were not made: they are in none of the columns.
        """
        made = self.outputs[~self.skipped_mask() & ~self.cancelled_mask()]
        grouped = made.groupby("model", sort=False)
        table = pd.DataFrame(
            {
                "calls": grouped.size(),
                "valid": grouped["valid"].mean(),
                "failed": self.failed_mask()[made.index].groupby(made["model"], sort=False).sum(),
                "latency_s": grouped["latency_s"].median(),
                "prompt_tokens": grouped["prompt_tokens"].sum(),
                "completion_tokens": grouped["completion_tokens"].sum(),
                "_unknown_tokens": (made["prompt_tokens"].isna() & made["output"].notna())
                .groupby(made["model"], sort=False)
                .any(),
                "cost_usd": grouped["cost_usd"].apply(
                    lambda s: float(s.sum()) if s.notna().all() else math.nan
                ),
            }
        )
        table = table.reindex(self.models)
        # A model none of whose calls was made spent nothing: 0 calls, tokens and dollars.
        unasked = table["calls"].isna()
        for column in ("calls", "failed", "prompt_tokens", "completion_tokens", "cost_usd"):
            table.loc[unasked, column] = 0
        table["calls"] = table["calls"].astype(int)
        table["failed"] = table["failed"].astype(int)
        # Like cost_usd: a reply without usage makes its model's token sums unknown (<NA>),
        # never a smaller number that reads as exact.
        unknown = table.pop("_unknown_tokens").fillna(False).astype(bool)
        for column in ("prompt_tokens", "completion_tokens"):
            tokens = table[column].astype("Int64")
            tokens[unknown] = pd.NA
            table[column] = tokens
        return table

    def summary_line(self) -> str:
        """One line: rows x models, strategy, calls (failed, invalid, cached...), cost, time."""
        t = self.totals()
        cost = format_cost(t["cost_usd"])
        parts = [
            f"{len(self.consensus)} row(s) x {len(self.models)} model(s)",
            f"strategy={self.strategy}",
            f"{t['calls']} calls ({t['failed']} failed, {t['invalid']} invalid, {t['cached']} cached"
            + (f", {t['skipped']} skipped" if t["skipped"] else "")
            + (f", {t['cancelled']} cancelled" if t["cancelled"] else "")
            + ")",
            f"cost {cost}",
            f"{self.wall_s:.2f}s wall-clock",
        ]
        if self.cancelled:
            parts.append("CANCELLED: the calls not finished are rows marked 'Cancelled'")
        return "RunResult: " + ", ".join(parts)

    def agreement_matrix(self) -> pd.DataFrame:
        """Models x models: the share of rows where both gave the same valid answer."""
        return agreement_matrix(self)

    def save(self, path: Any, *, overwrite: bool = False) -> Any:
        """Keep the run in the folder ``path`` (``run.nbt``); ``nbt.load(path)`` gives it
        back equal. The frames are JSON Lines pandas reads directly (see
        ``nbtoolkit.saving``). Returns the folder's ``Path``."""
        from .saving import save

        return save(self, path, overwrite=overwrite)

    def to_excel(self, path: Any) -> None:
        """One workbook for a colleague without Python: sheets ``consensus``, ``outputs``,
        ``per_model`` and ``run`` (the summary line and warnings). Needs openpyxl."""
        run = pd.DataFrame({"run": [self.summary_line(), *self.warnings]})
        with pd.ExcelWriter(path) as book:
            self.consensus.to_excel(book, sheet_name="consensus", index=False)
            self.outputs.to_excel(book, sheet_name="outputs", index=False)
            self.per_model().to_excel(book, sheet_name="per_model")
            run.to_excel(book, sheet_name="run", index=False)

    @property
    def plot(self) -> Any:
        """The run's charts as matplotlib figures: ``res.plot.agreement()``, ... (see
        ``nbtoolkit.report.figures.Plots``). matplotlib is imported when a chart is drawn."""
        return views.get("plot")(self)

    # The tables live in the glue (nbtoolkit.jupyter.display); views hands them over, so
    # this module and that one never import each other.
    def __repr__(self) -> str:
        return str(views.get("text")(self))

    def _repr_html_(self) -> str:
        return str(views.get("html")(self))


def _model_answers(result: RunResult) -> dict[str, dict[int, str]]:
    """Per model, per input row: the model's answer (its most frequent valid one over samples;
    of equally frequent ones, the earliest sample's)."""
    out: dict[str, dict[int, str]] = {m: {} for m in result.models}
    valid = result.outputs[result.outputs["valid"].astype(bool)]
    # One pass over plain lists: a pandas group per (model, row) made showing a result of
    # thousands of rows take longer than running it.
    order = valid.sort_values(["model", "row", "sample"], kind="stable")
    counts: dict[tuple[str, int], dict[str, int]] = {}
    for model, row, answer in zip(
        order["model"].tolist(), order["row"].tolist(), order["answer"].tolist(), strict=True
    ):
        tally = counts.setdefault((str(model), int(row)), {})
        key = answer_key(answer)
        tally[key] = tally.get(key, 0) + 1
    for (model, row), tally in counts.items():
        best = max(tally.values())
        out.setdefault(model, {})[row] = next(k for k, n in tally.items() if n == best)
    return out


def agreement_matrix(result: RunResult) -> pd.DataFrame:
    """How often each pair of models gave the same answer to the same input row.

    A square DataFrame (models x models) of shares in [0, 1], over the rows where both models
    gave a valid answer; NaN where they have no such row in common. With several samples a
    model's answer to a row is its most frequent one.

    >>> agreement_matrix(res).round(2)                                  # doctest: +SKIP
    """
    answers = _model_answers(result)
    models = list(result.models)
    table = pd.DataFrame(math.nan, index=models, columns=models, dtype="float64")
    for a in models:
        for b in models:
            shared = answers[a].keys() & answers[b].keys()
            if shared:
                same = sum(answers[a][r] == answers[b][r] for r in shared)
                table.loc[a, b] = same / len(shared)
    table.index.name = "model"
    table.columns.name = "model"
    return table


def load(path: Any) -> RunResult:
    """The ``RunResult`` saved at ``path`` by ``res.save(path)``, equal to the one saved.

    Raises ``ConfigError`` when ``path`` is not a saved run (no ``result.json``, another
    format, or a frame file missing). The files are read in ``nbtoolkit.saving``.
    """
    from .saving import read

    return RunResult(**read(path))
