"""What another strategy or panel would have done on a run, from its recorded answers.

``replay(res, strategy)`` is ``rescore`` plus the money and the waiting: per row, the calls
the strategy would have needed, what they cost and how long the row waited for them. No
model is called.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .. import providers
from ..errors import StrategyError
from ..results import RunResult
from ..spec import Model
from ..strategies.cascade import Cascade
from ..strategies.medoid import Medoid
from ..strategies.vote import FirstValid, Vote, Weighted
from .values import calls_made, cost_total, norm

__all__ = [
    "Replayed",
    "changed",
    "cheapest_first",
    "models_of",
    "replay",
    "restricted",
    "used_strategy",
]


def models_of(res: RunResult) -> list[Model]:
    """The run's models, rebuilt from its manifest."""
    out = []
    for dump in res.meta.get("models", []):
        options = {k: v for k, v in dump.items() if k not in ("id", "fallbacks")}
        try:
            out.append(Model(dump["id"], **options))
        except Exception:
            out.append(Model(dump["id"]))
    if not out:
        out = [Model(m) for m in res.models]
    return out


def cheapest_first(res: RunResult, labels: Sequence[str]) -> list[str]:
    price = {m.label: providers.price_per_token(m) for m in models_of(res)}

    def key(label: str) -> tuple[bool, float, int]:
        p = price.get(label, math.nan)
        return (math.isnan(p), 0.0 if math.isnan(p) else p, labels.index(label))

    return sorted(labels, key=key)


def used_strategy(res: RunResult) -> Any | None:
    """The strategy the run used, rebuilt from its record (a calibrated one with its fitted
    model); None when it is not recorded or cannot be rebuilt here (a custom strategy not
    registered in this process)."""
    from ..strategies.records import of_run

    try:
        return of_run(res)
    except (StrategyError, KeyError, TypeError, ValueError):
        return None


def restricted(res: RunResult, labels: Sequence[str]) -> Any:
    """The run's kind of strategy over ``labels`` only (a vote for kinds that need calls)."""
    labels = list(labels)
    if res.strategy == "cascade":
        return Cascade(order=cheapest_first(res, labels), threshold=2)
    if res.strategy == "medoid":
        return Medoid(models=labels)
    if res.strategy == "first_valid":
        return FirstValid(models=labels)
    if res.strategy == "weighted":
        # The weights the run voted with (calibrate's fitted ones, kept in its record), else
        # each Model(weight=...).
        used = used_strategy(res)
        recorded = getattr(getattr(used, "strategy", used), "weights", None)
        weights = (
            dict(recorded)
            if isinstance(recorded, dict)
            else {m.label: m.weight for m in models_of(res)}
        )
        return Weighted(weights={m: weights.get(m, 1.0) for m in labels})
    return Vote(models=labels)


# ---------------------------------------------------------------------------- replay


@dataclass
class Replayed:
    """A strategy replayed over a run's recorded answers: per row answer, calls, cost, wait."""

    answers: pd.Series
    calls: pd.Series
    cost: pd.Series
    wait: pd.Series


def _per_call(
    res: RunResult,
) -> tuple[dict[Any, dict[str, float]], dict[Any, dict[str, float]], int, set[str]]:
    """Per row, per model: the cost of its calls (NaN when any is unknown: an unknown price
    is not $0) and its longest call, as plain dicts read once per row and model below; and
    the models with any call made (a row without one of theirs is NaN: not known)."""
    out = calls_made(res)
    keys = [out["row"], out["model"]]
    cost_usd = out["cost_usd"].astype("float64")
    unknown = cost_usd.isna().groupby(keys).any()
    cost = cost_usd.groupby(keys).sum().where(~unknown)
    wait = out["latency_s"].astype("float64").groupby(keys).max()
    samples = int(res.outputs["sample"].max()) + 1 if len(res.outputs) else 1
    return _nested(cost), _nested(wait), samples, {str(m) for m in out["model"].unique()}


def _nested(series: pd.Series) -> dict[Any, dict[str, float]]:
    table: dict[Any, dict[str, float]] = {}
    for (row, model), value in zip(series.index, series.tolist(), strict=True):
        table.setdefault(row, {})[str(model)] = value
    return table


def replay(res: RunResult, strategy: Any) -> Replayed:
    from ..calibration import rescore

    scored = rescore(res, strategy)
    cost, wait, samples, made = _per_call(res)
    nan = math.nan
    costs, waits = {}, {}
    stages = getattr(strategy, "stages", None)
    for row, calls in scored["calls"].items():
        row_wait, row_cost = wait.get(row, {}), cost.get(row, {})
        if callable(stages):
            order = list(strategy.order or res.models)
            asked = order[: max(1, math.ceil(int(calls) / samples))]
            first = asked[: max(1, math.ceil(strategy.threshold))]
            lat = [row_wait.get(m, nan) for m in asked if m in made]
            head = [row_wait.get(m, nan) for m in first if m in made]
            waits[row] = max(head, default=math.nan) + sum(lat[len(head) :])
        else:
            asked = list(getattr(strategy, "models", None) or res.models)
            waits[row] = max((row_wait.get(m, nan) for m in asked if m in made), default=nan)
        costs[row] = cost_total(row_cost.get(m, nan) for m in asked if m in made)
    return Replayed(
        answers=scored["answer"],
        calls=scored["calls"],
        cost=pd.Series(costs, dtype="float64"),
        wait=pd.Series(waits, dtype="float64"),
    )


def changed(a: pd.Series, b: pd.Series) -> int:
    first, second = a.to_dict(), b.to_dict()
    return sum(norm(first.get(r)) != norm(second.get(r)) for r in a.index)
