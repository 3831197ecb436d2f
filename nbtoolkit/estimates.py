"""What a run would cost, before it is made: calls, prompt tokens and a cost range per model.

>>> import nbtoolkit as nbt
>>> nbt.estimate("{question}\\nAnswer with a number.", ["gpt-4o-mini", "sim/swift-mini"],
...              data=questions, max_tokens=300)                      # doctest: +SKIP
Estimate: 80 calls to 2 models, 4,210 prompt tokens; cost $0.0012 to $0.0161
...

- Prompt tokens are counted with litellm's ``token_counter`` for the model (simulated models
  are counted the way they bill: about 4 characters per token).
- The upper bound takes every reply at ``max_tokens`` (a model's own ``max_tokens`` first;
  ``DEFAULT_MAX_TOKENS`` when none is set, and the estimate says so).
- The lower bound adds the typical reply length of that model's cached calls, when the cache
  has any; otherwise it counts the prompts only.
- A model whose price is unknown has a NaN cost (never 0) and is named in the notes.

Nothing is sent, cached or written. Strategies that stop early (a cascade) make fewer calls
and ones that ask a judge make more: the estimate counts the panel's calls, once per sample.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .budget import DEFAULT_MAX_TOKENS, prices
from .budget import prompt_tokens as _count
from .cache import Cache, cache_dir
from .formatting import format_cost
from .spec import Model, as_models
from .templating import Template, rows_of

__all__ = ["DEFAULT_MAX_TOKENS", "Estimate", "estimate"]


COLUMNS = [
    "calls",
    "prompt_tokens",
    "typical_completion_tokens",
    "max_tokens",
    "cost_low_usd",
    "cost_high_usd",
    "price_known",
]


def _bounds(
    price: tuple[float, float], prompt_tokens: int, calls: int, seen: float, cap: int
) -> tuple[float, float]:
    """The low and high cost: prompts (+ typical replies when known), prompts + max replies."""
    p_in, p_out = price
    low = prompt_tokens * p_in + (0.0 if math.isnan(seen) else calls * seen * p_out)
    return low, prompt_tokens * p_in + calls * cap * p_out


# After COLUMNS, with batch=True: whether the model goes as a batch, and its live cost.
BATCH_COLUMNS = ["batch", "live_cost_low_usd", "live_cost_high_usd"]


def _batch_ratio(model: Model, notes: list[str]) -> tuple[tuple[float, float], bool]:
    """The batch price over the live price (input, output), and whether the model can go as
    a batch at all; what is estimated or runs live is added to ``notes``."""
    from .providers import batches

    where = batches.target(model)
    if isinstance(where, str):
        notes.append(f"{model.label} runs live (live price): {where}.")
        return (1.0, 1.0), False
    batch_in, batch_out, estimated = batches.prices(model)
    live_in, live_out = batches.live_prices(model)
    if estimated:
        notes.append(
            f"{model.label}: litellm's table has no batch price; half the live price is "
            "assumed (an estimate)."
        )

    def ratio(batch: float, live: float) -> float:
        return batch / live if live and not math.isnan(live) and not math.isnan(batch) else 0.5

    return (ratio(batch_in, live_in), ratio(batch_out, live_out)), True


class Estimate(pd.DataFrame):
    """One row per model: ``calls, prompt_tokens, typical_completion_tokens, max_tokens,
    cost_low_usd, cost_high_usd, price_known``; ``.notes`` says what the numbers assume."""

    _metadata = ["notes"]

    @property
    def _constructor(self) -> type[Estimate]:
        return Estimate

    def summary(self) -> str:
        """One line: calls, prompt tokens and the total cost range."""
        low, high = self["cost_low_usd"], self["cost_high_usd"]
        calls, tokens = int(self["calls"].sum()), int(self["prompt_tokens"].sum())
        line = f"Estimate: {calls} calls to {len(self)} model(s), {tokens:,} prompt tokens; "
        if bool(self["price_known"].all()) and "live_cost_high_usd" in self.columns:
            live_low, live_high = self["live_cost_low_usd"].sum(), self["live_cost_high_usd"].sum()
            return line + (
                f"cost {_money(low.sum())} to {_money(high.sum())} as a batch, "
                f"{_money(live_low)} to {_money(live_high)} live "
                f"(saving up to {_money(live_high - high.sum())})"
            )
        if bool(self["price_known"].all()):
            return line + f"cost {_money(low.sum())} to {_money(high.sum())}"
        known = self["price_known"].astype(bool)
        unknown = ", ".join(str(m) for m in self.index[~known])
        if not known.any():
            # Nothing is priced: a "$0 to $0" lower bound would read as free.
            return line + f"cost unknown (no price known for {unknown})"
        return (
            line + f"cost at least {_money(low[known].sum())} to "
            f"{_money(high[known].sum())} without {unknown} (price unknown)"
        )

    def __repr__(self) -> str:
        shown = pd.DataFrame(self).copy()
        for column in _MONEY:
            if column in shown.columns:
                shown[column] = [_money(v) for v in shown[column]]
        notes = "".join(f"\n- {n}" for n in getattr(self, "notes", []) or [])
        with pd.option_context("display.width", 140, "display.max_columns", 20):
            return f"{self.summary()}\n{shown.to_string()}{notes}"

    def _repr_html_(self) -> str:
        import html

        shown = pd.DataFrame(self).copy()
        for column in _MONEY:
            if column in shown.columns:
                shown[column] = [_money(v) for v in shown[column]]
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in getattr(self, "notes", []) or [])
        return (
            f"<div><p><strong>{html.escape(self.summary())}</strong></p>{shown.to_html()}"
            f"<ul>{notes}</ul></div>"
        )


_MONEY = ("cost_low_usd", "cost_high_usd", "live_cost_low_usd", "live_cost_high_usd")


def _money(value: Any) -> str:
    return format_cost(value)


def typical_completion_tokens(cache_path: str | None = None) -> dict[str, float]:
    """The mean completion tokens of the cached calls, by model id (read only)."""
    path = cache_path or str(cache_dir() / "cache.sqlite")
    if not os.path.exists(path):
        return {}
    sums: dict[str, list[float]] = {}
    cache = Cache(path)
    try:
        for entry in cache.entries():
            if entry.completion_tokens is not None:
                sums.setdefault(entry.model, []).append(float(entry.completion_tokens))
    finally:
        cache.close()
    return {m: sum(v) / len(v) for m, v in sums.items()}


def estimate(
    prompt: str,
    models: Sequence[Model | str] | Model | str,
    *,
    data: pd.DataFrame | None = None,
    variables: Mapping[str, Any] | None = None,
    samples: int = 1,
    max_tokens: int | None = None,
    system: str | None = None,
    cache_path: str | None = None,
    batch: bool = False,
) -> Estimate:
    """Calls, prompt tokens and a cost range per model for ``orchestrate`` with these arguments.

    Nothing is sent. See the module docstring for what the bounds assume. ``batch=True``:
    the cost through the providers' batch APIs (``orchestrate(..., batch=True)``), with the
    live cost beside it (``live_cost_low_usd``, ``live_cost_high_usd``) and a ``batch``
    column saying which models go as a batch (the others run live, at the live price).
    """
    from .plan import check_options

    template = Template(prompt)
    check_options(
        data=data,
        variables=variables,
        samples=samples,
        max_tokens=max_tokens,
        system=system,
        cache_path=cache_path,
    )
    panel = as_models(models)
    variables = dict(variables or {})
    columns = [str(c) for c in data.columns] if data is not None else []
    template.check(set(columns) | set(variables))
    texts = [template.render(values, variables) for values in rows_of(data)]
    typical = typical_completion_tokens(cache_path)
    notes: list[str] = []
    records = []
    defaulted, no_history, unpriced = [], [], []
    for model in panel:
        head = [{"role": "system", "content": system}] if system else []
        tokens = sum(_count(model, head + [{"role": "user", "content": t}]) for t in texts)
        calls = len(texts) * samples
        prompt_tokens = tokens * samples
        cap = model.max_tokens or max_tokens
        if cap is None:
            cap = DEFAULT_MAX_TOKENS
            defaulted.append(model.label)
        seen = typical.get(model.id, math.nan)
        if math.isnan(seen) and not model.id.startswith(("sim/", "replay/")):
            # Offline answers are never cached (they cost nothing to make again): no history
            # is expected of them, so it is not news.
            no_history.append(model.label)
        price = prices(model)
        extra: dict[str, Any] = {}
        ratio, batched = _batch_ratio(model, notes) if batch else ((1.0, 1.0), False)
        if price is None:
            unpriced.append(model.label)
            low = high = live_low = live_high = math.nan
        else:
            live_low, live_high = _bounds(price, prompt_tokens, calls, seen, cap)
            low, high = _bounds(
                (price[0] * ratio[0], price[1] * ratio[1]), prompt_tokens, calls, seen, cap
            )
        if batch:
            extra = {
                "batch": batched,
                "live_cost_low_usd": live_low,
                "live_cost_high_usd": live_high,
            }
        records.append(
            {
                **extra,
                "model": model.label,
                "calls": calls,
                "prompt_tokens": prompt_tokens,
                "typical_completion_tokens": seen,
                "max_tokens": cap,
                "cost_low_usd": low,
                "cost_high_usd": high,
                "price_known": price is not None,
            }
        )
    if defaulted:
        notes.append(
            f"max_tokens is not set for {', '.join(defaulted)}: the upper bound assumes "
            f"{DEFAULT_MAX_TOKENS} completion tokens per call; pass max_tokens= to bound it."
        )
    if no_history:
        notes.append(
            f"No cached calls of {', '.join(no_history)}: their lower bound counts the "
            "prompts only."
        )
    if unpriced:
        notes.append(
            f"Price unknown for {', '.join(unpriced)}: their cost is NaN (unknown, not $0)."
        )
    if any(m.id.startswith("sim/") for m in panel):
        notes.append("Simulated models bill about one token per 4 characters, at simulated prices.")
    columns = ["model", *COLUMNS, *(BATCH_COLUMNS if batch else [])]
    frame = Estimate(pd.DataFrame.from_records(records, index="model", columns=columns))
    frame.notes = notes
    return frame
