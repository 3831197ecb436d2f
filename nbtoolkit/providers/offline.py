"""The built-in offline providers, ``replay/<name>`` and ``sim/<profile>``, answered in-process.

Each is an ``OfflineProvider`` (``async answer(name, messages, params) -> Reply``): a call is
one dictionary look-up (replay) or one pure function (sim), never a trip through
``litellm.acompletion``, whose per-call CPU would be most of an offline run. litellm is
imported only to count the tokens or price a recording that does not state them, for a
model litellm knows. ``as_custom_llm`` wraps a provider as a ``litellm.CustomLLM`` for the
callers that go through litellm (its warm-up, a test comparing both ways).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Callable
from typing import Any, Literal

from ..errors import CallError, ModelError, RecordingsError, clip
from . import recordings, sim
from .registry import get_litellm, register_offline
from .reply import Reply

# Simulated latencies are real sleeps, scaled so a demo feels alive without being slow.
SIM_TIME_SCALE_ENV = sim.TIME_SCALE_ENV
DEFAULT_SIM_TIME_SCALE = sim.DEFAULT_TIME_SCALE


def _prompt_of(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else str(content)
    return ""


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


class ReplayProvider:
    """Answers from recordings, matched on (model name, exact prompt text).

    The run's recordings are loaded and indexed once, at plan time (``params["nbt_store"]``
    names them); a call is a look-up in that index, with no file system access.
    """

    async def answer(
        self, name: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> Reply:
        store = _store(params.get("nbt_store"))
        prompt = _prompt_of(messages)
        record = store.get(name, prompt)
        if record is None:
            start = clip(" ".join(prompt.split()), 60)
            raise CallError(f"no recording of replay/{name} for the prompt starting {start!r}")
        prompt_tokens, completion_tokens, cost = _usage(name, messages, record)
        return Reply(record.output, prompt_tokens, completion_tokens, cost, record.latency_s)


def _store(key: str | None) -> recordings.RecordingStore:
    key = key or os.environ.get(recordings.ENV_VAR, "")
    store = recordings.loaded(key) if key else None
    if store is None:
        store = recordings.load(recordings.resolve_paths(key.split(os.pathsep) if key else None))
    return store


Usage = tuple[int | None, int | None, float]
# (model, messages, recorded output and usage) -> (prompt tokens, completion tokens, cost):
# counting with litellm takes far longer than the look-up; a re-run, another strategy on the
# same recordings or a sample of the same prompt asks the same again.
_USAGE: dict[tuple[Any, ...], Usage] = {}
_USAGE_LIMIT = 200_000


def _usage(model: str, messages: list[dict[str, Any]], record: recordings.Recording) -> Usage:
    """A recording's own usage, completed by litellm when it knows the model; unknown stays
    None (tokens) or NaN (cost), never an error."""
    prompt_tokens, completion_tokens = record.prompt_tokens, record.completion_tokens
    if prompt_tokens is not None and completion_tokens is not None and record.cost_usd is not None:
        return prompt_tokens, completion_tokens, float(record.cost_usd)
    key = (
        model,
        _messages_key(messages),
        record.output,
        prompt_tokens,
        completion_tokens,
        record.cost_usd,
    )
    found = _USAGE.get(key)
    if found is not None:
        return found
    litellm = get_litellm()
    cost = record.cost_usd
    if model in litellm.model_cost:
        if prompt_tokens is None:
            prompt_tokens = _count(litellm, model, messages=messages)
        if completion_tokens is None:
            completion_tokens = _count(litellm, model, text=record.output)
        if cost is None:
            cost = _price(litellm, model, prompt_tokens, completion_tokens)
    found = (prompt_tokens, completion_tokens, _nan_if_none(cost))
    if len(_USAGE) >= _USAGE_LIMIT:
        _USAGE.clear()
    _USAGE[key] = found
    return found


def _messages_key(messages: list[dict[str, Any]]) -> Any:
    try:
        key = tuple(tuple(m.items()) for m in messages)
        hash(key)
        return key
    except TypeError:  # a list content (images, parts): not hashable as it is
        return json.dumps(messages, sort_keys=True, default=str)


def _count(litellm: Any, model: str, **what: Any) -> int | None:
    try:
        return int(litellm.token_counter(model=model, **what))
    except Exception:
        return None  # a counter that cannot read this: unknown, not an error


def _price(
    litellm: Any, model: str, prompt_tokens: int | None, completion_tokens: int | None
) -> float:
    """USD of a replayed call by litellm's price table; NaN when it cannot be told."""
    if prompt_tokens is None or completion_tokens is None:
        return math.nan
    per_token = _PER_TOKEN.get(model)
    if per_token is None:
        per_token = _PER_TOKEN[model] = _per_token(litellm, model)
    if per_token is not False:
        return float(prompt_tokens * per_token[0] + completion_tokens * per_token[1])
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
        return float(prompt_cost + completion_cost)
    except Exception:
        return math.nan


# model -> (USD per input token, per output token) when litellm prices it by those alone;
# False when a call must be priced by litellm itself (tiers, a price it cannot tell).
_PER_TOKEN: dict[str, tuple[float, float] | Literal[False]] = {}
_PROBES = ((1, 0), (0, 1), (1234, 567), (150_000, 9_000))


def _per_token(litellm: Any, model: str) -> tuple[float, float] | Literal[False]:
    """The model's per-token prices when litellm's own pricing is exactly linear in them
    (asked once per model: ``cost_per_token`` takes longer than the look-up it prices)."""
    entry = litellm.model_cost.get(model) or {}
    per_input, per_output = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
    if not isinstance(per_input, (int, float)) or not isinstance(per_output, (int, float)):
        return False
    try:
        for pt, ct in _PROBES:
            prompt_cost, completion_cost = litellm.cost_per_token(
                model=model, prompt_tokens=pt, completion_tokens=ct
            )
            if float(prompt_cost + completion_cost) != pt * per_input + ct * per_output:
                return False  # tiered (above 128k tokens) or otherwise not linear
    except Exception:
        # litellm lists some names it cannot price by themselves (jamba-1.5-large: "isn't
        # mapped yet" for the provider it infers): the table's own prices still say it.
        pass
    return float(per_input), float(per_output)


def _check_replay(name: str, options: dict[str, Any]) -> None:
    paths = recordings.resolve_paths(options.get("recordings"))
    if not paths:
        raise RecordingsError(
            f"replay/{name} needs recordings: pass recordings='answers.jsonl' "
            f"or set {recordings.ENV_VAR}"
        )
    store = recordings.load(paths)
    if name not in store.models:
        known = ", ".join(sorted(store.models)[:20]) or "(none)"
        raise ModelError(
            f"replay/{name}: the recordings hold no model '{name}'. They hold: {known}"
        )


class SimProvider:
    """Simulated models: deterministic replies with configured accuracy, latency, price."""

    async def answer(
        self, name: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> Reply:
        reply = _simulate(name, messages, params)
        scale = sim.time_scale()
        if scale > 0:
            await asyncio.sleep(reply.latency_s * scale)
        return _sim_reply(reply)

    async def stream(
        self,
        name: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        on_text: Callable[[str], None],
    ) -> Reply:
        """The same reply as ``answer``, a word at a time at the profile's speed (scaled by
        ``NBTOOLKIT_SIM_TIME_SCALE``): the first after ``sim.TTFT_SHARE`` of its latency."""
        reply = _simulate(name, messages, params)
        words = sim.pieces(reply.text)
        scale = sim.time_scale()
        first = reply.latency_s * sim.TTFT_SHARE
        gap = (reply.latency_s - first) / max(len(words) - 1, 1)
        for i, word in enumerate(words):
            # sleep(0) when not scaled: the other calls (and a Stop) still get their turn.
            await asyncio.sleep((first if i == 0 else gap) * scale)
            on_text(word)
        # The profile's time to first text, like its latency: the same on every re-run.
        return _sim_reply(reply, ttft_s=first)


def _simulate(name: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> sim.SimReply:
    return sim.simulate(
        name,
        _prompt_of(messages),
        seed=params.get("seed"),
        sample=int(params.get("nbt_sample") or 0),
        temperature=params.get("temperature"),
    )


def _sim_reply(reply: sim.SimReply, ttft_s: float | None = None) -> Reply:
    # The profile's latency, not the scaled sleep: deterministic, so replays of a report
    # give the same numbers, and it says how slow such a model would be.
    return Reply(
        reply.text,
        reply.prompt_tokens,
        reply.completion_tokens,
        _nan_if_none(reply.cost_usd),
        reply.latency_s,
        ttft_s,
    )


def _check_sim(name: str, options: dict[str, Any]) -> None:
    if name not in sim.PROFILES:
        from ..suggest import closest

        known = ", ".join(f"sim/{p}" for p in sim.PROFILES)
        # A typo is usually in the first word (sim/oracel): match it against "oracle" too.
        forms = {p: p for p in sim.PROFILES} | {p.split("-")[0]: p for p in sim.PROFILES}
        near = closest(name, forms) or closest(name.split("-")[0], forms)
        hint = f" Did you mean 'sim/{forms[near]}'?" if near else ""
        raise ModelError(f"unknown simulated model 'sim/{name}'.{hint} Known: {known}")


def register_builtins() -> None:
    register_offline("replay", ReplayProvider(), _check_replay)
    register_offline("sim", SimProvider(), _check_sim)
