"""An in-process offline provider as a ``litellm.CustomLLM``, so its calls can also go
through ``litellm.acompletion`` (the path a registered provider takes once litellm is loaded).

Takes litellm as it is given and imports nothing of the registry, so the registry can use it
without an import circle.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import RecordingsError

__all__ = ["as_custom_llm"]


def as_custom_llm(provider: Any) -> Any:
    """``provider`` as a ``litellm.CustomLLM``: the same answers through litellm's path.

    The reply states its own usage and price in ``_hidden_params["nbtoolkit"]``, because
    litellm cannot price a ``replay/`` or ``sim/`` model id.
    """
    import litellm

    class InProcessLLM(litellm.CustomLLM):  # type: ignore[misc]
        async def acompletion(
            self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any
        ) -> Any:
            reply = await provider.answer(model, messages, kwargs.get("optional_params") or {})
            usage = {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "cost_usd": reply.cost_usd,
                "latency_s": reply.latency_s,
            }
            return _response(litellm, model, reply.text, usage)

        def completion(self, *args: Any, **kwargs: Any) -> Any:
            raise RecordingsError("offline models are called through nbtoolkit.orchestrate")

    return InProcessLLM()


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
