"""What litellm knows of a model: whether it can be called, its price per token, its
context window, its token counter and whether it takes a JSON schema."""

from __future__ import annotations

import os
import warnings
from typing import Any

from ..errors import MissingAPIKeyError
from ..spec import Model
from .keys import api_base_of, own_endpoint
from .registry import check_offline, get_litellm, is_offline, litellm_id
from .resolve import resolve

__all__ = [
    "check_model",
    "context_window",
    "count_tokens",
    "price_known",
    "price_per_token",
    "supports_schema",
    "warm_up",
]


def check_model(model: Model, options: dict[str, Any]) -> None:
    """Raise before any call if ``model`` cannot be called (unknown id, missing API key)."""
    if is_offline(model.id):
        check_offline(model.id, options)
        return
    record = resolve(model)  # how it is called: a transport it cannot take is refused now
    if record.proxy is not None:
        record.proxy.check()  # the proxy holds the provider keys; ours is the virtual key
        return
    routed = litellm_id(model)
    if model.api_key_env:
        if not os.environ.get(model.api_key_env):
            raise MissingAPIKeyError(
                f"{model.label}: the environment variable {model.api_key_env} (api_key_env) is not set"
            )
        return
    base = api_base_of(model.litellm_kwargs(), model)
    if base and not own_endpoint(model, base):
        return  # a self-hosted endpoint (vLLM, Ollama, a proxy) often needs no key at all
    missing = get_litellm().validate_environment(routed).get("missing_keys") or []
    # *_API_BASE variables have defaults (Ollama's localhost) or come from api_base=.
    missing = [k for k in missing if not k.endswith(("_API_BASE", "_BASE_URL", "_ENDPOINT"))]
    if missing:
        names = " or ".join(missing)
        error = MissingAPIKeyError(
            f"{model.label} needs the environment variable {names}: set it "
            f"(os.environ['{missing[0]}'] = '...') or pass Model('{model.id}', api_key_env='NAME')"
        )
        error.model, error.variables = model.label, tuple(missing)
        raise error


def price_known(model: Model) -> bool:
    """Whether the model's own params or litellm's price table (a real, non-zero entry)
    price this model."""
    return resolve(model).price_known


_warm = False


async def warm_up() -> None:
    """Make one offline call, once per process, so litellm's lazy set-up (seconds on the
    first call) is not counted in the first real call's latency."""
    global _warm
    if _warm:
        return
    _warm = True
    # litellm's first call imports modules whose pydantic models warn at import time; that
    # noise is litellm's, not the user's, so it stays out of their cell.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        await get_litellm().acompletion(
            model="sim/swift-mini", messages=[{"role": "user", "content": "warm-up"}]
        )


def price_per_token(model: Model) -> float:
    """Input plus output price of one token, for ordering a cascade; NaN when unknown."""
    inp, out, _ = resolve(model).prices
    return inp + out


def context_window(model: Model) -> int | None:
    """The model's input limit in tokens from litellm's table, None when unknown."""
    return resolve(model).context_window


def count_tokens(model: Model, messages: list[dict[str, Any]]) -> int:
    """Prompt tokens of ``messages`` for ``model``, by litellm's counter."""
    return int(get_litellm().token_counter(model=litellm_id(model), messages=messages))


def supports_schema(model: Model) -> bool:
    """Whether litellm knows this model takes a JSON schema as ``response_format``."""
    return resolve(model).schema
