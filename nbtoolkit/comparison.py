"""What changed between two runs of the same rows: ``nbt.compare(before, after)``.

>>> diff = nbt.compare(nbt.load("monday.nbt"), res)                # doctest: +SKIP
>>> diff                # the summary, then the rows whose answer changed   # doctest: +SKIP
>>> diff.frame          # every row, side by side                           # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from .errors import ConfigError
from .formatting import format_cost
from .strategies.base import answer_key

if TYPE_CHECKING:
    from .results import RunResult

__all__ = ["Comparison", "compare"]

#: The columns of ``Comparison.frame``, one row per input row.
COLUMNS = [
    "row",
    "answer_before",
    "answer_after",
    "changed",
    "confidence_before",
    "confidence_after",
    "cost_usd_before",
    "cost_usd_after",
]


@dataclass
class Comparison:
    """Two runs of the same rows side by side.

    ``frame``: one row per input row (``COLUMNS``; ``changed`` is True where the consensus
    answers differ by value, so ``4`` and ``"4.0"`` are the same answer). ``models_added`` /
    ``models_removed``: labels in one run only. ``model_changes``: per model in both runs,
    how many rows its answer changed on.
    """

    frame: pd.DataFrame
    models_added: list[str] = field(default_factory=list)
    models_removed: list[str] = field(default_factory=list)
    model_changes: dict[str, int] = field(default_factory=dict)
    cost_before: float = math.nan
    cost_after: float = math.nan
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> pd.DataFrame:
        """The rows whose consensus answer changed."""
        return self.frame[self.frame["changed"]]

    def summary(self) -> list[str]:
        """The comparison in a few lines of words."""
        n, k = len(self.frame), int(self.frame["changed"].sum())
        lines = [f"answers changed on {k} of {n} row(s)"]
        if self.models_added or self.models_removed:
            parts = [f"+{m}" for m in self.models_added] + [f"-{m}" for m in self.models_removed]
            lines.append("models: " + ", ".join(parts))
        moved = {m: c for m, c in self.model_changes.items() if c}
        if moved:
            lines.append(
                "answers changed per model: " + ", ".join(f"{m} {c}" for m, c in moved.items())
            )
        lines.append(f"cost {format_cost(self.cost_before)} -> {format_cost(self.cost_after)}")
        return lines + self.notes

    def __repr__(self) -> str:
        table = self.changed.to_string(index=False) if len(self.changed) else "(no answer changed)"
        return "Comparison: " + "; ".join(self.summary()) + "\n" + table

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self.summary())
        shown = self.changed if len(self.changed) else self.frame.head(0)
        return (
            f"<div class='nbtoolkit-compare'><ul>{items}</ul>"
            f"{shown.to_html(index=False, escape=True, na_rep='—')}</div>"
        )


def compare(before: RunResult, after: RunResult) -> Comparison:
    """Compare two runs of the same input rows (e.g. yesterday's saved run and today's).

    Rows are matched by their ``row`` number. Raises ``ConfigError`` when the runs have
    different numbers of rows; a different prompt template is said in ``notes``.
    """
    a, b = before.consensus, after.consensus
    if len(a) != len(b):
        raise ConfigError(
            f"compare needs two runs of the same rows: the first has {len(a)} row(s), the "
            f"second {len(b)}"
        )
    left = a.set_index("row")
    right = b.set_index("row").reindex(left.index)
    changed = [_key(x) != _key(y) for x, y in zip(left["answer"], right["answer"], strict=True)]
    frame = pd.DataFrame(
        {
            "row": left.index,
            "answer_before": left["answer"].to_numpy(),
            "answer_after": right["answer"].to_numpy(),
            "changed": changed,
            "confidence_before": left["confidence"].to_numpy(dtype=float),
            "confidence_after": right["confidence"].to_numpy(dtype=float),
            "cost_usd_before": left["cost_usd"].to_numpy(dtype=float),
            "cost_usd_after": right["cost_usd"].to_numpy(dtype=float),
        },
        columns=COLUMNS,
    )
    both = [m for m in before.models if m in after.models]
    answers_a, answers_b = before.answers, after.answers
    model_changes = {
        m: sum(
            _key(x) != _key(y)
            for x, y in zip(
                answers_a[m].reindex(left.index), answers_b[m].reindex(left.index), strict=True
            )
        )
        for m in both
    }
    notes = []
    if before.prompt != after.prompt:
        notes.append("the prompt templates differ")
    return Comparison(
        frame=frame,
        models_added=[m for m in after.models if m not in before.models],
        models_removed=[m for m in before.models if m not in after.models],
        model_changes=model_changes,
        cost_before=float(before.totals()["cost_usd"]),
        cost_after=float(after.totals()["cost_usd"]),
        notes=notes,
    )


def _key(answer: Any) -> str | None:
    try:
        if answer is None or (isinstance(answer, float) and math.isnan(answer)):
            return None
    except TypeError:
        pass
    return answer_key(answer)
