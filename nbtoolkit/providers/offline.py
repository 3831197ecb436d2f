"""litellm ``CustomLLM`` handlers for ``replay/<name>`` and ``sim/<profile>``.

Imported only once litellm is (``providers.get_litellm``). The handlers report their own
usage and price in ``response._hidden_params["nbtoolkit"]``, because litellm cannot price a
``replay/`` or ``sim/`` model id.
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any

from ..errors import CallError, ModelError, RecordingsError, clip
from . import recordings, sim
from .registry import register_offline

# Simulated latencies are real sleeps, scaled so a demo feels alive without being slow.
SIM_TIME_SCALE_ENV = sim.TIME_SCALE_ENV
DEFAULT_SIM_TIME_SCALE = sim.DEFAULT_TIME_SCALE


def _prompt_of(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else str(content)
    return ""


def _response(litellm: Any, model: str, text: str, usage: dict[str, Any]) -> Any:
    response = litellm.ModelResponse(
        choices=[{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        model=model,
        usage={
            "prompt_tokens": usage.get("prompt_tokens") or 0,
            "completion_tokens": usage.get("completion_tokens") or 0,
            "total_tokens": (usage.get("prompt_tokens") or 0)
            + (usage.get("completion_tokens") or 0),
        },
    )
    response._hidden_params["nbtoolkit"] = usage
    # litellm would price the reply again (its slowest step per call); it takes a stamped
    # cost as final. NaN, not 0, when unknown: a 0 sends litellm into a zero-cost diagnosis.
    cost = usage.get("cost_usd")
    response._hidden_params["response_cost"] = math.nan if cost is None else cost
    return response


def _make_replay_handler() -> Any:
    import litellm

    class ReplayLLM(litellm.CustomLLM):  # type: ignore[misc]
        """Answers from recordings, matched on (model name, exact prompt text)."""

        async def acompletion(
            self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any
        ) -> Any:
            optional = kwargs.get("optional_params") or {}
            key = optional.get("nbt_store") or os.environ.get(recordings.ENV_VAR, "")
            store = recordings.load(
                recordings.resolve_paths(key.split(os.pathsep) if key else None)
            )
            prompt = _prompt_of(messages)
            record = store.get(model, prompt)
            if record is None:
                start = clip(" ".join(prompt.split()), 60)
                raise CallError(f"no recording of replay/{model} for the prompt starting {start!r}")
            usage = {
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": record.completion_tokens,
                "cost_usd": record.cost_usd,
                "latency_s": record.latency_s,
            }
            _fill_usage(litellm, model, messages, record.output, usage)
            return _response(litellm, model, record.output, usage)

        def completion(self, *args: Any, **kwargs: Any) -> Any:
            raise RecordingsError("replay models are called through nbtoolkit.orchestrate")

    return ReplayLLM()


def _fill_usage(
    litellm: Any, model: str, messages: list[dict[str, Any]], output: str, usage: dict[str, Any]
) -> None:
    """Count and price a replayed call with litellm when it knows the model; else leave NaN."""
    if model not in litellm.model_cost:
        if usage["cost_usd"] is None:
            usage["cost_usd"] = math.nan
        return
    if usage["prompt_tokens"] is None:
        usage["prompt_tokens"] = litellm.token_counter(model=model, messages=messages)
    if usage["completion_tokens"] is None:
        usage["completion_tokens"] = litellm.token_counter(model=model, text=output)
    if usage["cost_usd"] is None:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model,
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
        )
        usage["cost_usd"] = prompt_cost + completion_cost


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


def _make_sim_handler() -> Any:
    import litellm

    class SimLLM(litellm.CustomLLM):  # type: ignore[misc]
        """Simulated models: deterministic replies with configured accuracy, latency, price."""

        async def acompletion(
            self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any
        ) -> Any:
            optional = kwargs.get("optional_params") or {}
            reply = sim.simulate(
                model,
                _prompt_of(messages),
                seed=optional.get("seed"),
                sample=int(optional.get("nbt_sample") or 0),
                temperature=optional.get("temperature"),
            )
            scale = sim.time_scale()
            if scale > 0:
                await asyncio.sleep(reply.latency_s * scale)
            usage = {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "cost_usd": reply.cost_usd,
                # The profile's latency, not the scaled sleep: deterministic, so replays of a
                # report give the same numbers, and it says how slow such a model would be.
                "latency_s": reply.latency_s,
            }
            return _response(litellm, model, reply.text, usage)

    return SimLLM()


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
    register_offline("replay", _make_replay_handler, _check_replay)
    register_offline("sim", _make_sim_handler, _check_sim)
