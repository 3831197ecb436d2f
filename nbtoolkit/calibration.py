"""Learning which panel to trust, from a run with known right answers.

``calibrate(result, gold="gold")`` measures each model (accuracy, cost, latency), derives
weights for ``weighted``, and recommends the panel and strategy with the best *held-out*
accuracy for its cost: every candidate (the best single model, votes over the top k, the
weighted vote, cascades) is fitted on some rows and scored on others, by k-fold
cross-validation, never on the rows it was fitted on. It says plainly when the best single
model beats every panel.

``rescore(result, strategy)`` recombines a finished run's answers with another strategy,
without a single new call (a cascade is replayed stage by stage over the recorded answers).

>>> cal = nbt.calibrate(res, gold="gold")                     # doctest: +SKIP
>>> cal.recommendation                                         # doctest: +SKIP
Cascade(order=['gpt-4o', 'claude-3-5-sonnet', ...], threshold=2)
>>> nbt.orchestrate(prompt, models, data=new_rows, strategy=cal.recommendation)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .errors import ConfigError
from .results import RunResult, data_column
from .strategies import Candidate, answer_key
from .strategies.cascade import Cascade
from .strategies.vote import FirstValid, Vote, Weighted


def _norm(value: Any) -> str:
    """Answers and gold compare as canonical numbers when they are numbers, else as text."""
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        value = item()  # a NumPy scalar from an array of gold answers
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\x00missing"
    return answer_key(value)


def _candidates(result: RunResult) -> dict[int, list[Candidate]]:
    position = {m: i for i, m in enumerate(result.models)}
    out = result.outputs
    # Neither a skipped nor a cancelled call was an answer the panel gave: not candidates.
    skipped = result.skipped_mask() | result.cancelled_mask()
    by_row: dict[int, list[Candidate]] = {}
    for row, model, sample, answer, valid, text, skip in zip(
        out["row"],
        out["model"],
        out["sample"],
        out["answer"],
        out["valid"],
        out["output"],
        skipped,
        strict=True,
    ):
        if skip:
            continue
        by_row.setdefault(int(row), []).append(
            Candidate(model, int(sample), answer, bool(valid), 1.0, position[model], text)
        )
    return by_row


def _gold(result: RunResult, gold: Any) -> dict[int, str]:
    if isinstance(gold, str):
        column = data_column(result, gold)
        if column is None:
            from .results import RESERVED_COLUMNS

            data = (
                [str(c) for c in result.input_columns]
                if result.input_columns
                else [
                    str(c).removesuffix("_input")
                    for c in result.consensus.columns
                    if c not in RESERVED_COLUMNS
                ]
            )
            from .suggest import did_you_mean

            raise ConfigError(
                f"gold={gold!r} is not a column of the run's data.{did_you_mean(gold, data)} "
                "Its columns: "
                f"{', '.join(data) or '(none: the run had no data=)'}"
            )
        values = list(result.consensus[column])
    else:
        values = list(gold)
    if len(values) != len(result.consensus):
        raise ConfigError(f"gold has {len(values)} values for {len(result.consensus)} rows")
    return {row: _norm(v) for row, v in zip(result.consensus["row"], values, strict=True)}


@dataclass
class _Scored:
    correct: int = 0
    rows: int = 0
    calls: int = 0
    costs: list[float] = field(default_factory=list)


def _play(strategy: Any, cands: list[Candidate]) -> tuple[Any, list[Candidate]]:
    """The strategy's answer on recorded candidates, and the candidates it would have asked."""
    stages = getattr(strategy, "stages", None)
    if not callable(stages):
        used = getattr(strategy, "models", None)
        subset = [c for c in cands if used is None or c.model in used]
        return strategy.combine(subset).answer, subset
    from .strategies.base import ModelInfo

    labels = sorted(
        {c.model for c in cands}, key=lambda m: min(c.position for c in cands if c.model == m)
    )
    infos = [ModelInfo(m, i, 1.0, math.nan) for i, m in enumerate(labels)]
    asked: list[Candidate] = []
    for stage in strategy.stages(infos):
        asked += [c for c in cands if c.model in stage]
        if strategy.settled(asked):
            break
    return strategy.combine(asked).answer, asked


def rescore(result: RunResult, strategy: Any, rows: Sequence[int] | None = None) -> pd.DataFrame:
    """Recombine a finished run with ``strategy``: answer, confidence and calls per row.

    No call is made; a cascade is replayed over the recorded answers, and ``calls`` says how
    many of them it would have needed.
    """
    from . import strategies

    chosen = strategies.get(strategy)
    by_row = _candidates(result)
    wanted = list(by_row) if rows is None else list(rows)
    records = []
    for row in wanted:
        cands = by_row.get(row, [])
        answer, asked = _play(chosen, cands)
        verdict = chosen.combine(asked)
        records.append(
            {
                "row": row,
                "answer": answer,
                "confidence": verdict.confidence,
                "agreement": verdict.agreement,
                "calls": len(asked),
            }
        )
    return pd.DataFrame.from_records(records).set_index("row")


def _log_odds(accuracy: float, n: int) -> float:
    # Laplace-smoothed log-odds: the optimal weight of an independent voter (Nitzan-Paroush).
    p = (accuracy * n + 1) / (n + 2)
    return max(0.0, math.log(p / (1 - p)))


@dataclass
class Calibration:
    """What ``calibrate`` learned; ``recommendation`` goes straight to ``strategy=``."""

    per_model: pd.DataFrame
    weights: dict[str, float]
    order: list[str]
    candidates: pd.DataFrame
    recommendation: Any
    best_single: str
    single_beats_panels: bool
    message: str

    # The per-model accuracy is in-sample (every row, the rows the weights are fitted on);
    # the candidates' is held out. Each table says which, so the two never read as one.
    PER_MODEL_LABEL = "per model, in-sample (accuracy on all rows, not held out)"
    CANDIDATES_LABEL = "candidates, held-out accuracy (k-fold cross-validation)"

    def _shown(self, table: pd.DataFrame) -> pd.DataFrame:
        from .formatting import format_cost  # small costs with significant digits; NaN: unknown

        shown = table.round(4)
        shown["cost_per_row"] = [format_cost(c) for c in table["cost_per_row"]]
        return shown

    def __repr__(self) -> str:
        with pd.option_context("display.width", 120):
            return (
                f"Calibration: {self.message}\n\n{self.PER_MODEL_LABEL}:\n"
                f"{self._shown(self.per_model)}\n\n"
                f"{self.CANDIDATES_LABEL}:\n{self._shown(self.candidates)}"
            )

    def _repr_html_(self) -> str:
        import html

        return (
            f"<div><p><strong>{html.escape(self.message)}</strong></p>"
            f"<h4>{html.escape(self.PER_MODEL_LABEL.capitalize())}</h4>"
            f"{self._shown(self.per_model).to_html()}"
            f"<h4>{html.escape(self.CANDIDATES_LABEL.capitalize())}</h4>"
            f"{self._shown(self.candidates).to_html()}</div>"
        )


def _model_table(
    result: RunResult, by_row: dict[int, list[Candidate]], gold: dict[int, str], rows: list[int]
) -> pd.DataFrame:
    out = result.outputs[result.outputs["row"].isin(rows) & (result.outputs["sample"] == 0)]
    stats = []
    for model in result.models:
        mine = out[out["model"] == model]
        correct = 0
        asked = 0
        for r in rows:
            for c in by_row.get(r, []):
                if c.model == model and c.sample == 0:
                    asked += 1
                    correct += c.valid and _norm(c.answer) == gold[r]
        cost = mine["cost_usd"]
        stats.append(
            {
                "model": model,
                "accuracy": correct / asked if asked else math.nan,
                "valid": float(mine["valid"].mean()) if len(mine) else math.nan,
                "cost_per_row": float(cost.mean())
                if len(cost) and cost.notna().all()
                else math.nan,
                "latency_s": float(mine["latency_s"].median()) if len(mine) else math.nan,
                "rows": asked,
            }
        )
    return pd.DataFrame(stats).set_index("model")


def _fit(table: pd.DataFrame) -> tuple[dict[str, float], list[str]]:
    weights = {
        m: _log_odds(a, int(n))
        for m, a, n in zip(table.index, table["accuracy"].fillna(0), table["rows"], strict=True)
    }
    order = list(table["accuracy"].fillna(-1).sort_values(ascending=False, kind="stable").index)
    return weights, order


def _families(
    weights: dict[str, float], order: list[str], named: dict[str, float] | None = None
) -> dict[str, Callable[[], Any]]:
    """The candidates, by name. ``named``: the weights fitted on all rows, which name the
    weighted vote in every fold, so a fold's name is the one the recommendation carries."""
    n = len(order)
    # A model with weight 0 is never asked (Weighted leaves it out): the name counts the
    # models the vote calls, so it agrees with calls_per_row.
    positive = sum(w > 0 for w in (named if named is not None else weights).values())
    weighted = (
        f"weighted vote over all {n}"
        if positive == n
        else f"weighted vote over the {positive} with weight > 0"
    )
    families: dict[str, Callable[[], Any]] = {
        "single best model": lambda: FirstValid(models=[order[0]]),
        f"vote over all {n}": lambda: Vote(),
        weighted: lambda: Weighted(weights=dict(weights)),
    }
    for k in (3, 5, 7):
        if 2 < k < n:
            families[f"vote over the top {k}"] = lambda k=k: Vote(models=order[:k])  # type: ignore[misc]
    if n >= 2:
        families["cascade, best first, 2 agree"] = lambda: Cascade(order=list(order), threshold=2)
    if n >= 3:
        families["cascade, best first, 3 agree"] = lambda: Cascade(order=list(order), threshold=3)
    return families


def calibrate(
    result: RunResult,
    gold: Any,
    *,
    rows: Sequence[int] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> Calibration:
    """Per-model accuracy, weights, and the best panel/strategy by held-out accuracy.

    ``gold`` is a column of the run's data (by name) or a sequence with one value per row;
    ``rows`` restricts the calibration to some rows (to keep others for a test).
    """
    gold_by_row = _gold(result, gold)
    by_row = _candidates(result)
    use = sorted(by_row) if rows is None else sorted(int(r) for r in rows)
    if len(use) < folds:
        raise ConfigError(f"calibrate needs at least {folds} rows with answers, got {len(use)}")
    table = _model_table(result, by_row, gold_by_row, use)
    weights, order = _fit(table)

    shuffled = list(use)
    random.Random(seed).shuffle(shuffled)
    chunks = [shuffled[i::folds] for i in range(folds)]
    scores: dict[str, _Scored] = {}
    chosen_single: list[str] = []
    for k in range(folds):
        test = chunks[k]
        train = [r for j, chunk in enumerate(chunks) if j != k for r in chunk]
        w, o = _fit(_model_table(result, by_row, gold_by_row, train))
        chosen_single.append(o[0])
        for name, make in _families(w, o, named=weights).items():
            strategy = make()
            score = scores.setdefault(name, _Scored())
            for r in test:
                answer, asked = _play(strategy, by_row.get(r, []))
                score.rows += 1
                score.correct += _norm(answer) == gold_by_row[r]
                score.calls += len(asked)
    cost_per_call = {m: table.loc[m, "cost_per_row"] for m in table.index}
    records = []
    for name, s in scores.items():
        records.append(
            {
                "candidate": name,
                "accuracy": s.correct / s.rows,
                "calls_per_row": s.calls / s.rows,
                "cost_per_row": _family_cost(name, cost_per_call, order, s.calls / s.rows),
            }
        )
    candidates = pd.DataFrame(records).set_index("candidate")
    candidates = candidates.sort_values(["accuracy", "calls_per_row"], ascending=[False, True])
    best_name = _pick(candidates)
    best_single = order[0]
    single_acc = candidates.loc["single best model", "accuracy"]
    panel_acc = candidates.drop(index="single best model")["accuracy"].max()
    beats = bool(single_acc >= panel_acc)
    recommendation = _families(weights, order)[best_name]()
    if beats:
        message = (
            f"The best single model ({best_single}, {single_acc:.0%} held out) is "
            f"{compared(single_acc, panel_acc, f'the best panel ({panel_acc:.0%} held out)')}: use it alone."
        )
    else:
        best_acc = candidates.loc[best_name, "accuracy"]
        message = (
            f"Recommended: {best_name} ({best_acc:.0%} held out, "
            f"{candidates.loc[best_name, 'calls_per_row']:.1f} calls per row), "
            f"{compared(best_acc, single_acc, f'the best single model {best_single} ({single_acc:.0%} held out)')}."
        )
    return Calibration(
        per_model=table,
        weights=weights,
        order=order,
        candidates=candidates,
        recommendation=recommendation,
        best_single=best_single,
        single_beats_panels=beats,
        message=message,
    )


def compared(share: float, other: float, what: str) -> str:
    """``better than WHAT, by N points`` / ``worse ...`` / ``as good as ...``, in whole points
    as the shares are shown, so the words agree with the numbers beside them."""
    gap = int(f"{share * 100:.0f}") - int(f"{other * 100:.0f}")
    if gap == 0:
        return f"as good as {what}"
    word = "better" if gap > 0 else "worse"
    return f"{word} than {what}, by {abs(gap)} point{'s' if abs(gap) != 1 else ''}"


def _pick(candidates: pd.DataFrame, tolerance: float = 0.0005) -> str:
    """The most accurate candidate; within ``tolerance`` of it, the one making fewest calls."""
    top = candidates["accuracy"].max()
    near = candidates[candidates["accuracy"] >= top - tolerance]
    return str(near.sort_values(["calls_per_row", "accuracy"], ascending=[True, False]).index[0])


def _family_cost(name: str, cost: dict[str, float], order: list[str], calls: float) -> float:
    known = [c for c in cost.values() if not math.isnan(c)]
    if len(known) != len(cost):
        return math.nan
    if name == "single best model":
        return cost[order[0]]
    mean = sum(known) / len(known)
    return mean * calls  # an estimate: an average call's price times the calls made
