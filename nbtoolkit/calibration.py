"""Learning which panel to trust, from a run with known right answers.

``calibrate(result, gold="gold")`` measures each model (accuracy, cost, latency), derives
weights for ``weighted``, and recommends the panel and strategy with the best *held-out*
accuracy for its cost: every candidate (the best single model, votes over the top k, the
weighted vote, cascades) is fitted on some rows and scored on others, by k-fold
cross-validation, never on the rows it was fitted on. It says plainly when the best single
model beats every panel.

It also fits a **confidence model** for the recommendation (``nbtoolkit.confidence``: a
logistic regression from features every strategy's verdict has to the probability the row
is right), the same way: fitted on four folds, scored on the fifth, so ``cal.ece``,
``cal.reliability()``, ``cal.selective()`` and ``cal.threshold_for(0.05)`` describe rows the
model never saw. The recommendation carries the model fitted on all rows (``Calibrated``),
so a run with ``strategy=cal.recommendation`` has calibrated ``confidence`` (the consensus's
``calibrated`` column says so) and ``confidence_threshold="auto:0.05"`` works. ``cal.paired``
is McNemar's test of the recommendation against the best single model on the held-out rows.

``rescore(result, strategy)`` recombines a finished run's answers with another strategy,
without a single new call (a cascade is replayed stage by stage over the recorded answers).

>>> cal = nbt.calibrate(res, gold="gold")                     # doctest: +SKIP
>>> cal.recommendation                                         # doctest: +SKIP
Calibrated(Cascade(order=['gpt-4o', 'claude-3-5-sonnet', ...], threshold=2))
>>> nbt.orchestrate(prompt, models, data=new_rows, strategy=cal.recommendation)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .calibration_result import Calibration
from .confidence import ConfidenceModel, features
from .errors import ConfigError
from .reliability import HeldOut, mcnemar
from .results import RunResult, data_column
from .strategies import Candidate, Verdict, answer_key
from .strategies.calibrated import Calibrated
from .strategies.cascade import Cascade
from .strategies.vote import FirstValid, Vote, Weighted


def _norm(value: Any) -> str:
    """Answers and gold compare as canonical numbers when they are numbers, else as text."""
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        value = item()  # a NumPy scalar from an array of gold answers
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return answer_key(value)


MISSING = "\x00missing"


def labelled_answer(gold: Any) -> bool:
    """A gold answer was given: not None, NaN, pd.NA or blank text (a row left unlabelled)."""
    return gold != MISSING and not (isinstance(gold, str) and not gold.strip())


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


def series_by_row(gold: pd.Series, rows: list[int], who: str) -> list[Any]:
    """A Series of gold answers read by its index, as pandas aligns (the run's row numbers,
    0..N-1 in data order); a row it lacks is unlabelled (None). ``ConfigError`` for an index
    with a label that is no row or a label twice: read by position, such a Series would
    score every answer against another row's gold."""
    index = list(gold.index)
    strangers = [label for label in index if label not in set(rows)]
    if strangers or len(set(index)) != len(index):
        problem = (
            f"labels that are not row numbers (e.g. {strangers[0]!r})"
            if strangers
            else "a label twice"
        )
        raise ConfigError(
            f"{who}: gold= is a Series whose index has {problem}; the run's rows are numbered "
            f"0 to {len(rows) - 1} in data order: pass gold.to_numpy() for answers in row "
            "order, or gold.reset_index(drop=True)"
        )
    by_label = dict(zip(index, gold.tolist(), strict=True))
    return [by_label.get(r) for r in rows]


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
    elif isinstance(gold, pd.Series):
        values = series_by_row(gold, list(result.consensus["row"]), "calibrate")
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


def _play(
    strategy: Any, cands: list[Candidate], panel: Sequence[str] | None = None
) -> tuple[Any, list[Candidate]]:
    """The strategy's answer on recorded candidates, and the candidates it would have asked."""
    verdict, asked = _replay(strategy, cands, panel)
    return verdict.answer, asked


def _replay(
    strategy: Any, cands: list[Candidate], panel: Sequence[str] | None = None
) -> tuple[Verdict, list[Candidate]]:
    """The strategy's verdict on recorded candidates, and the candidates it would have asked.
    ``panel``: the run's models, in order (default: those with a candidate in the row); a
    cascade plans its stages over all of them, also over a run where some were skipped."""
    stages = getattr(strategy, "stages", None)
    if not callable(stages):
        used = getattr(strategy, "models", None)
        subset = [c for c in cands if used is None or c.model in used]
        return strategy.combine(subset), subset
    from .strategies.base import ModelInfo

    labels = (
        list(panel)
        if panel is not None
        else sorted(
            {c.model for c in cands},
            key=lambda m: min(c.position for c in cands if c.model == m),
        )
    )
    infos = [ModelInfo(m, i, 1.0, math.nan) for i, m in enumerate(labels)]
    asked: list[Candidate] = []
    for stage in strategy.stages(infos):
        asked += [c for c in cands if c.model in stage]
        if strategy.settled(asked):
            break
    return strategy.combine(asked), asked


def rescore(result: RunResult, strategy: Any, rows: Sequence[int] | None = None) -> pd.DataFrame:
    """Recombine a finished run with ``strategy``: answer, confidence and calls per row.

    No call is made; a cascade is replayed over the recorded answers, and ``calls`` says how
    many of them it would have needed. ``calibrated``: whether ``confidence`` is a probability
    fitted by ``calibrate`` (a ``Calibrated`` strategy) or the strategy's own share.
    """
    from . import strategies

    chosen = strategies.get(strategy)
    by_row = _candidates(result)
    wanted = list(by_row) if rows is None else list(rows)
    records = []
    for row in wanted:
        cands = by_row.get(row, [])
        verdict, asked = _replay(chosen, cands, result.models)
        answer = verdict.answer
        records.append(
            {
                "row": row,
                "answer": answer,
                "confidence": verdict.confidence,
                "agreement": verdict.agreement,
                "calls": len(asked),
                "calibrated": verdict.calibrated,
            }
        )
    return pd.DataFrame.from_records(records).set_index("row")


def _log_odds(accuracy: float, n: int) -> float:
    # Laplace-smoothed log-odds: the optimal weight of an independent voter (Nitzan-Paroush).
    p = (accuracy * n + 1) / (n + 2)
    return max(0.0, math.log(p / (1 - p)))


def _model_table(
    result: RunResult, by_row: dict[int, list[Candidate]], gold: dict[int, str], rows: list[int]
) -> pd.DataFrame:
    out = result.outputs[result.outputs["row"].isin(rows) & (result.outputs["sample"] == 0)]
    # One pass over the candidates and one grouping of the frame, not one per model.
    asked: dict[str, int] = dict.fromkeys(result.models, 0)
    right: dict[str, int] = dict.fromkeys(result.models, 0)
    for r in rows:
        for c in by_row.get(r, []):
            if c.sample == 0:
                asked[c.model] += 1
                right[c.model] += c.valid and _norm(c.answer) == gold[r]
    by_model = {str(m): g for m, g in out.groupby("model", sort=False, observed=True)}
    stats = []
    for model in result.models:
        mine = by_model.get(model, out.iloc[:0])
        correct, n = right[model], asked[model]
        cost = mine["cost_usd"]
        stats.append(
            {
                "model": model,
                "accuracy": correct / n if n else math.nan,
                "valid": float(mine["valid"].mean()) if len(mine) else math.nan,
                "cost_per_row": float(cost.mean())
                if len(cost) and cost.notna().all()
                else math.nan,
                "latency_s": float(mine["latency_s"].median()) if len(mine) else math.nan,
                "rows": n,
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

    The recommendation is a ``Calibrated`` strategy: its confidence is the probability from
    a ``ConfidenceModel`` fitted on all ``rows``. The same model fitted fold by fold gives the
    held-out measures: ``held_out`` (per row), ``ece``, ``reliability()``, ``selective()``,
    ``threshold_for(target_error)``, ``paired`` (McNemar). Raises ``ConfigError`` for an
    unknown gold column, a gold of the wrong length, or fewer rows than ``folds``.
    """
    gold_by_row = _gold(result, gold)
    by_row = _candidates(result)
    use = sorted(by_row) if rows is None else sorted(int(r) for r in rows)
    # A row without a gold answer cannot say whether the panel was right: scoring it as a
    # miss would make every model look worse and the thresholds stricter than they are.
    unlabelled = [r for r in use if not labelled_answer(gold_by_row.get(r, MISSING))]
    use = [r for r in use if r not in set(unlabelled)]
    if len(use) < folds:
        left = (
            f" ({len(unlabelled)} more have no gold answer: NaN, None or blank)"
            if unlabelled
            else ""
        )
        raise ConfigError(
            f"calibrate needs at least {folds} rows with a gold answer, got {len(use)}{left}"
        )
    table = _model_table(result, by_row, gold_by_row, use)
    weights, order = _fit(table)

    shuffled = list(use)
    random.Random(seed).shuffle(shuffled)
    chunks = [shuffled[i::folds] for i in range(folds)]
    scores: dict[str, _Scored] = {}
    fits: list[_FoldFit] = []
    for k in range(folds):
        test = chunks[k]
        train = [r for j, chunk in enumerate(chunks) if j != k for r in chunk]
        fold_table = _model_table(result, by_row, gold_by_row, train)
        w, o = _fit(fold_table)
        fits.append(_FoldFit(k, test, train, w, o, _accuracies(fold_table)))
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
    fold_models, held_out = _held_out_confidence(by_row, gold_by_row, fits, best_name, weights)
    chosen = _families(weights, order)[best_name]()
    model = _fit_confidence(chosen, by_row, gold_by_row, use, _accuracies(table), order[0])
    measured = HeldOut(tuple(held_out["confidence"]), tuple(bool(c) for c in held_out["correct"]))
    recommendation = Calibrated(chosen, model, measured)
    if best_name != "single best model":
        paired = mcnemar(
            held_out["correct"],
            held_out["single_correct"],
            "the recommendation",
            "the best single model",
        )
    else:  # the test that says something: the best model against the best panel
        panel = str(candidates.drop(index=best_name)["accuracy"].idxmax())
        paired = mcnemar(
            held_out["correct"],
            _held_out_correct(by_row, gold_by_row, fits, panel, weights),
            "the best single model",
            f"the best panel ({panel})",
        )
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
    if unlabelled:
        message += f" ({len(unlabelled)} rows without a gold answer were left out.)"
    return Calibration(
        per_model=table,
        weights=weights,
        order=order,
        candidates=candidates,
        recommendation=recommendation,
        best_single=best_single,
        single_beats_panels=beats,
        message=message,
        confidence_model=model,
        held_out=held_out,
        fold_models=fold_models,
        paired=paired,
    )


@dataclass
class _FoldFit:
    """One fold: its test rows, the rows fitted on, and what was fitted on them."""

    fold: int
    test: list[int]
    train: list[int]
    weights: dict[str, float]
    order: list[str]
    accuracy: dict[str, float]


def _accuracies(table: pd.DataFrame) -> dict[str, float]:
    return {str(m): float(a) for m, a in table["accuracy"].fillna(0.0).items()}


def _outcomes(
    strategy: Any,
    by_row: dict[int, list[Candidate]],
    gold: dict[int, str],
    rows: list[int],
    accuracy: dict[str, float],
    best: str,
) -> tuple[list[list[float]], list[bool], list[Any], list[float]]:
    """Per row: the confidence features, whether the strategy was right, its answer and its
    own confidence, as the strategy would have played on the recorded answers."""
    x: list[list[float]] = []
    right: list[bool] = []
    answers: list[Any] = []
    own: list[float] = []
    for r in rows:
        verdict, asked = _replay(strategy, by_row.get(r, []))
        answer = verdict.answer
        x.append(features(asked, answer, accuracy, best))
        right.append(answer is not None and _norm(answer) == gold[r])
        answers.append(answer)
        own.append(float(verdict.confidence))
    return x, right, answers, own


def _fit_confidence(
    strategy: Any,
    by_row: dict[int, list[Candidate]],
    gold: dict[int, str],
    rows: list[int],
    accuracy: dict[str, float],
    best: str,
) -> ConfidenceModel:
    x, right, answers, _ = _outcomes(strategy, by_row, gold, rows, accuracy, best)
    # A row with no answer has confidence 0 by definition: it teaches the model nothing.
    keep = [i for i, a in enumerate(answers) if a is not None]
    return ConfidenceModel.fit(
        [x[i] for i in keep],
        [right[i] for i in keep],
        accuracy=accuracy,
        best=best,
        rows=[rows[i] for i in keep],
    )


def _held_out_confidence(
    by_row: dict[int, list[Candidate]],
    gold: dict[int, str],
    fits: list[_FoldFit],
    name: str,
    named: dict[str, float],
) -> tuple[list[ConfidenceModel], pd.DataFrame]:
    """The candidate ``name``'s calibrated confidence on each fold's test rows, from a
    confidence model fitted on the other folds only (their rows, their labels, their
    per-model accuracies), and the best single model's outcome on the same rows."""
    models: list[ConfidenceModel] = []
    records = []
    for fit in fits:
        strategy = _families(fit.weights, fit.order, named=named)[name]()
        best = fit.order[0]
        model = _fit_confidence(strategy, by_row, gold, fit.train, fit.accuracy, best)
        models.append(model)
        x, right, answers, own = _outcomes(strategy, by_row, gold, fit.test, fit.accuracy, best)
        for i, r in enumerate(fit.test):
            records.append(
                {
                    "row": r,
                    "fold": fit.fold,
                    "answer": answers[i],
                    "confidence": model.probability_of(x[i]) if answers[i] is not None else 0.0,
                    "strategy_confidence": own[i],
                    "correct": right[i],
                }
            )
    frame = pd.DataFrame.from_records(records).set_index("row").sort_index()
    frame["single_correct"] = _held_out_correct(by_row, gold, fits, "single best model", named)
    return models, frame


def _held_out_correct(
    by_row: dict[int, list[Candidate]],
    gold: dict[int, str],
    fits: list[_FoldFit],
    name: str,
    named: dict[str, float],
) -> pd.Series:
    """Whether candidate ``name``, fitted on the other folds, was right on each test row."""
    right: dict[int, bool] = {}
    for fit in fits:
        strategy = _families(fit.weights, fit.order, named=named)[name]()
        for r in fit.test:
            answer, _ = _play(strategy, by_row.get(r, []))
            right[r] = answer is not None and _norm(answer) == gold[r]
    return pd.Series(right, dtype=bool).sort_index()


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
