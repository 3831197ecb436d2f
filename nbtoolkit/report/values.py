"""The values a report's numbers are made of: missing or not, an answer as compared with
gold, a cost total that stays unknown when a part is, and the few words that name a run's
settings. Everything in ``nbtoolkit.report`` reads values through here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from ..calibration import MISSING, compared, labelled_answer, series_by_row
from ..errors import ConfigError, clip
from ..results import RunResult, data_column
from ..strategies import answer_key

__all__ = [
    "accuracy",
    "best_single",
    "calls_made",
    "compared",
    "cost_total",
    "describe_extract",
    "gold_answers",
    "gold_column",
    "gold_of",
    "jsonable",
    "missing",
    "norm",
    "price_note",
    "short",
    "strategy_label",
    "waits_note",
]


def missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def norm(value: Any) -> str:
    """Answers and gold compare as canonical numbers when they are numbers, else as text."""
    if missing(value):
        return MISSING
    return answer_key(value)


def short(answer: Any, limit: int = 60) -> str:
    if missing(answer):
        return "no answer"
    return clip(" ".join(str(answer).split()), limit, "…")


def cost_total(values: Iterable[float]) -> float:
    """The sum, or NaN when any part is unknown (an unknown price is not $0)."""
    values = list(values)
    return math.nan if any(missing(v) for v in values) else float(sum(values))


def jsonable(value: Any) -> Any:
    """``value`` with NaN as None and numpy scalars as Python ones, for notebook metadata."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return int(value)
    if hasattr(value, "item"):
        return jsonable(value.item())
    return None if missing(value) else str(value)


def price_note(runs: Sequence[tuple[str, RunResult]]) -> str:
    """`` at simulated prices`` when every model is simulated; which ones, when some are."""
    models = {m for _, r in runs for m in r.models}
    simulated = {m for _, r in runs for m in r.simulated}
    if not simulated:
        return ""
    if simulated >= models:
        return " at simulated prices"
    return f" (simulated prices for {', '.join(sorted(simulated))})"


def calls_made(res: RunResult) -> pd.DataFrame:
    """``res.outputs`` without the calls a strategy skipped or a stop cancelled: they were
    never made, so they cost nothing and took no time."""
    return res.outputs[res.made_mask()]


def strategy_label(res: RunResult) -> str:
    """The strategy as the manifest states it (its repr), or its name when the repr is an
    object address (which would differ on every run)."""
    text = str(res.meta.get("strategy", res.strategy))
    return res.strategy if " object at 0x" in text else text


def describe_extract(extract: Any) -> str:
    if extract is None or extract == [] or extract == "":
        return "the whole reply, whitespace collapsed"
    if isinstance(extract, (list, tuple)):
        return "extract=" + " then ".join(repr(s) for s in extract)
    return f"extract={getattr(extract, '__name__', extract)!r}"


def waits_note(res: RunResult) -> str:
    """Beside waits summed from recorded latencies: whose latencies were simulated."""
    if not res.simulated:
        return ""
    if set(res.simulated) >= set(res.models):
        return ", simulated latency"
    return f", simulated latency for {', '.join(res.simulated)}"


# ------------------------------------------------------------------------------ gold


def gold_column(res: RunResult, gold: str) -> str | None:
    """The consensus column holding the user's gold column ``gold`` (never the consensus's)."""
    return data_column(res, gold) if gold else None


def gold_of(res: RunResult, gold: str) -> pd.Series | None:
    """The gold answers by row (normalised), or None when the data has no such column."""
    column = gold_column(res, gold)
    if column is None:
        return None
    return labelled(pd.Series([norm(v) for v in res.consensus[column]], index=res.consensus["row"]))


def labelled(gold: pd.Series) -> pd.Series:
    """``gold`` without its unlabelled rows (None, NaN or blank): such a row says nothing
    about whether an answer was right, so it is scored neither right nor wrong."""
    return gold[[labelled_answer(g) for g in gold]]


def gold_answers(res: RunResult, gold: Any, *, who: str = "this chart") -> pd.Series:
    """The right answers by row (normalised, as ``gold_of``), from ``gold``: the name of a
    column of the run's data, a Series indexed by row, or a list in row order; unlabelled
    rows left out. ``ConfigError`` when there is no such column, the list's length is not
    the rows', a Series' index is not row numbers, or no row has a gold answer."""
    found = _gold_answers(res, gold, who)
    if not len(found):
        raise ConfigError(
            f"{who}: gold= gives no row an answer (every one is NaN, None or blank): "
            "nothing to score against"
        )
    return found


def _gold_answers(res: RunResult, gold: Any, who: str) -> pd.Series:
    rows = list(res.consensus["row"])
    if gold is None:
        raise ConfigError(
            f"{who} needs gold=: the name of the data's column of right answers, or the "
            "answers themselves (a Series indexed by row, or a list in row order)"
        )
    if isinstance(gold, str):
        found = gold_of(res, gold)
        if found is None:
            own = [c for c in res.consensus.columns if data_column(res, c) is not None]
            raise ConfigError(
                f"{who}: gold={gold!r} is not a column of the run's data "
                f"(its columns: {', '.join(map(str, own)) or 'none, it ran on one prompt'})"
            )
        return found
    if isinstance(gold, pd.Series):
        return labelled(pd.Series([norm(v) for v in series_by_row(gold, rows, who)], index=rows))
    answers = list(gold)
    if len(answers) != len(rows):
        raise ConfigError(
            f"{who}: gold= has {len(answers)} answer(s) but the run has {len(rows)} row(s); "
            "pass one per row, in row order (or a Series indexed by row)"
        )
    return labelled(pd.Series([norm(a) for a in answers], index=rows))


def accuracy(answers: pd.Series, gold: pd.Series) -> float:
    """The share of ``gold``'s rows whose answer (by row) matches."""
    if not len(gold):
        return math.nan
    by_row = answers.to_dict()  # a dict lookup per row, not a pandas one
    return sum(norm(by_row.get(r)) == g for r, g in gold.items()) / len(gold)


def best_single(res: RunResult, gold: pd.Series) -> tuple[str, float]:
    table = res.answers
    scores = {m: accuracy(table[m], gold) for m in res.models}
    best = max(res.models, key=lambda m: (scores[m], -res.models.index(m)))
    return best, scores[best]
