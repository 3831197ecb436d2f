"""What a call may cost at most, before it is sent: the figure budgets reserve.

A call's worst case is its prompt tokens plus its ``max_tokens`` (the run's or the model's;
``DEFAULT_MAX_TOKENS`` when neither is set) at the model's input and output prices.
``max_cost_usd`` holds each call's worst case while it is in flight, so the spend stays within
the budget whenever prices and ``max_tokens`` are known, at any concurrency.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from . import providers
from .spec import Model

__all__ = ["DEFAULT_MAX_TOKENS", "Reservations", "prices", "prompt_tokens", "worst_case_cost"]

#: Completion tokens per call assumed for a worst case when no ``max_tokens`` is set.
DEFAULT_MAX_TOKENS = 1024


def prices(model: Model) -> tuple[float, float] | None:
    """USD per input token and per output token, or None when the price is not known."""
    for source in (model.params, model.extra):
        if "input_cost_per_token" in source:
            return float(source["input_cost_per_token"]), float(
                source.get("output_cost_per_token", 0)
            )
    prefix, _, name = model.id.partition("/")
    if prefix == "sim":
        from .providers import sim

        profile = sim.PROFILES.get(name)
        if profile is None:
            return None
        return profile.input_cost_per_token, profile.output_cost_per_token
    if not providers.price_known(model):
        return None
    table = providers.get_litellm().model_cost
    entry = table.get(name if prefix == "replay" else model.id) or table.get(name) or {}
    return float(entry.get("input_cost_per_token") or 0), float(
        entry.get("output_cost_per_token") or 0
    )


def prompt_tokens(model: Model, messages: list[dict[str, Any]]) -> int:
    if model.id.startswith("sim/"):
        from .providers import sim

        return sim.count_tokens(str(messages[-1]["content"]))
    litellm = providers.get_litellm()
    try:
        routed = model.id if providers.is_offline(model.id) else providers.litellm_id(model)
    except Exception:
        routed = model.id
    return int(litellm.token_counter(model=routed, messages=messages))


def worst_case_cost(model: Model, messages: list[dict[str, Any]], params: dict[str, Any]) -> float:
    """USD the call costs at most: prompt tokens plus ``max_tokens`` at the model's prices.

    NaN when the price is unknown. Without ``max_tokens`` the bound assumes
    ``DEFAULT_MAX_TOKENS`` completion tokens, and holds only for replies no longer than that.
    """
    price = prices(model)
    if price is None:
        return math.nan
    cap = params.get("max_completion_tokens") or params.get("max_tokens") or DEFAULT_MAX_TOKENS
    try:
        tokens = prompt_tokens(model, messages)
    except Exception:
        # A counter that cannot read these messages: about 4 characters per token, rounded up.
        tokens = sum(len(str(m.get("content") or "")) for m in messages) // 3 + 8
    return tokens * price[0] + int(cap) * price[1]


class Reservations:
    """Money held against ``max_cost_usd`` by the requests in flight, and money spent.

    Each request first holds its worst-case cost (``hold``) and releases it for what it
    really cost once answered (``settle``), so calls in flight cannot overspend together.
    """

    def __init__(self, max_cost_usd: float | None) -> None:
        self.max_cost_usd = max_cost_usd
        self.spent = 0.0
        self.held = 0.0
        self.holding = 0  # reservations in flight (a count: float sums drift)
        self._released: asyncio.Event | None = None  # set (and replaced) when money is released

    async def hold(
        self, model: Model, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> float | None:
        """Reserve the call's worst-case cost before it is sent; None when it can no longer
        fit in ``max_cost_usd``. An unknown price holds nothing, as its spend cannot be
        counted either.

        A call that would fit once the calls in flight have settled waits for them (they
        usually cost far less than their worst case) instead of being skipped."""
        if self.max_cost_usd is None:
            return 0.0
        worst = worst_case_cost(model, messages, params)
        if math.isnan(worst):
            worst = 0.0
        while self.spent + self.held + worst > self.max_cost_usd:
            if self.spent + worst > self.max_cost_usd or self.holding == 0:
                return None  # would not fit even with nothing in flight
            if self._released is None:
                self._released = asyncio.Event()
            await self._released.wait()
        self.held += worst
        self.holding += 1
        return worst

    def settle(self, held: float, cost: float) -> None:
        """Release a reservation for what the request really cost (NaN: keep it held)."""
        if self.max_cost_usd is None or math.isnan(cost):
            return
        self.held -= held
        self.holding -= 1
        self.spent += cost
        if self._released is not None:  # wake every call waiting for money to be released
            self._released.set()
            self._released = None
