"""Every model call goes through ``litellm.acompletion``; this package is its only importer.

Offline providers (``replay/<name>``, ``sim/<profile>``) are registered through litellm's own
``custom_provider_map``, so a replayed or simulated call takes the same path as a live one.
Register your own the same way with ``register_offline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import logging
import math
import os
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import MissingAPIKeyError, ModelError, NbtoolkitError
from ..spec import Model

__all__ = [
    "Reply",
    "check_model",
    "complete",
    "get_litellm",
    "is_offline",
    "price_known",
    "register_offline",
    "retry_hint",
]

# name -> zero-argument factory returning a litellm CustomLLM; built lazily with litellm.
_OFFLINE: dict[str, Callable[[], Any]] = {}
# name -> validator(model name, run options) raising ModelError for an unknown name.
_OFFLINE_CHECKS: dict[str, Callable[[str, dict[str, Any]], None]] = {}

_lock = threading.Lock()
_litellm: Any = None


def register_offline(
    prefix: str,
    factory: Callable[[], Any],
    check: Callable[[str, dict[str, Any]], None] | None = None,
) -> None:
    """Register an offline provider answering ``<prefix>/<name>`` models.

    ``factory`` returns a ``litellm.CustomLLM``; it is called after litellm is imported.
    """
    _OFFLINE[prefix] = factory
    if check is not None:
        _OFFLINE_CHECKS[prefix] = check
    if _litellm is not None:
        _install(_litellm, prefix)


def _install(litellm: Any, prefix: str) -> None:
    litellm.custom_provider_map = [
        item for item in litellm.custom_provider_map if item["provider"] != prefix
    ] + [{"provider": prefix, "custom_handler": _OFFLINE[prefix]()}]
    # litellm reads the map when it sets up a call's provider list; refresh it now.
    litellm.utils.custom_llm_setup()


def get_litellm() -> Any:
    """Import and configure litellm once: local price table, quiet logs, offline providers."""
    global _litellm
    if _litellm is not None:
        return _litellm
    with _lock:
        if _litellm is None:
            # Offline, litellm would first try to download its price table.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            litellm.suppress_debug_info = True  # its "Provider List: ..." lines in every cell
            litellm.telemetry = False
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
            _register_builtins()
            for prefix in _OFFLINE:
                _install(litellm, prefix)
            _litellm = litellm
    return _litellm


def _register_builtins() -> None:
    from . import offline

    offline.register_builtins()


def is_offline(model_id: str) -> bool:
    """True for models answered on this machine (replay, sim, or a registered provider)."""
    if not _OFFLINE:
        _register_builtins()
    return model_id.split("/", 1)[0] in _OFFLINE


# Bare model ids litellm no longer lists, whose provider is plain from the name.
_PREFIX_PROVIDERS = [
    (re.compile(r"^claude-"), "anthropic"),
    (re.compile(r"^gemini-"), "gemini"),
    (re.compile(r"^(mistral|ministral|codestral|open-mistral|pixtral)-"), "mistral"),
    (re.compile(r"^command-"), "cohere_chat"),
]


def litellm_id(model: Model) -> str:
    """The model string litellm routes on (a provider prefix added when litellm needs one)."""
    litellm = get_litellm()
    try:
        litellm.get_llm_provider(model.id)
        return model.id
    except Exception:
        pass
    for pattern, provider in _PREFIX_PROVIDERS:
        if pattern.match(model.id):
            return f"{provider}/{model.id}"
    raise ModelError(
        f"unknown model '{model.id}': litellm cannot tell which provider serves it. Prefix it with "
        f"the provider, e.g. 'openai/{model.id}' (with api_base=... for a local server), or use "
        "'sim/oracle-large' to try things offline."
    )


def check_model(model: Model, options: dict[str, Any]) -> None:
    """Raise before any call if ``model`` cannot be called (unknown id, missing API key)."""
    prefix, _, name = model.id.partition("/")
    if is_offline(model.id):
        if prefix in _OFFLINE_CHECKS:
            _OFFLINE_CHECKS[prefix](name, options)
        return
    routed = litellm_id(model)
    if model.api_key_env:
        if not os.environ.get(model.api_key_env):
            raise MissingAPIKeyError(
                f"{model.label}: the environment variable {model.api_key_env} (api_key_env) is not set"
            )
        return
    if model.api_base:
        return  # a self-hosted endpoint (vLLM, Ollama, a proxy) often needs no key at all
    missing = get_litellm().validate_environment(routed).get("missing_keys") or []
    # *_API_BASE variables have defaults (Ollama's localhost) or come from api_base=.
    missing = [k for k in missing if not k.endswith(("_API_BASE", "_BASE_URL", "_ENDPOINT"))]
    if missing:
        names = " or ".join(missing)
        raise MissingAPIKeyError(
            f"{model.label} needs the environment variable {names}: set it "
            f"(os.environ['{missing[0]}'] = '...') or pass Model('{model.id}', api_key_env='NAME')"
        )


def price_known(model: Model) -> bool:
    """Whether litellm's price table (or the model's own params) prices this model."""
    if "input_cost_per_token" in model.params or "input_cost_per_token" in model.extra:
        return True
    prefix, _, name = model.id.partition("/")
    if prefix == "sim":
        return True
    if prefix == "replay":
        return name in get_litellm().model_cost
    cost = get_litellm().model_cost
    entry = cost.get(model.id) or cost.get(name)
    return bool(entry and entry.get("input_cost_per_token") is not None)


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
    prefix, _, name = model.id.partition("/")
    if prefix == "sim":
        from . import sim

        profile = sim.PROFILES.get(name)
        if profile is None:
            return math.nan
        return profile.input_cost_per_token + profile.output_cost_per_token
    for source in (model.params, model.extra):
        if "input_cost_per_token" in source:
            return float(source["input_cost_per_token"]) + float(
                source.get("output_cost_per_token", 0)
            )
    if not price_known(model):
        return math.nan
    cost = get_litellm().model_cost
    entry = cost.get(name if prefix == "replay" else model.id) or cost.get(name) or {}
    return float(entry.get("input_cost_per_token") or 0) + float(
        entry.get("output_cost_per_token") or 0
    )


def context_window(model: Model) -> int | None:
    """The model's input limit in tokens from litellm's table, None when unknown."""
    if is_offline(model.id):
        return None
    try:
        info = get_litellm().get_model_info(litellm_id(model))
    except Exception:
        return None
    limit = info.get("max_input_tokens") if isinstance(info, dict) else None
    return int(limit) if limit else None


def count_tokens(model: Model, messages: list[dict[str, Any]]) -> int:
    """Prompt tokens of ``messages`` for ``model``, by litellm's counter."""
    return int(get_litellm().token_counter(model=litellm_id(model), messages=messages))


def supports_schema(model: Model) -> bool:
    """Whether litellm knows this model takes a JSON schema as ``response_format``."""
    try:
        return bool(get_litellm().supports_response_schema(model=litellm_id(model)))
    except Exception:
        return False


def call_params(
    model: Model,
    run_params: dict[str, Any],
    *,
    sample: int,
    seed: int | None = None,
    store_key: str | None = None,
    schema: type | None = None,
) -> dict[str, Any]:
    """The litellm keyword arguments of one call: the run's, then the model's own."""
    params = {**run_params, **model.litellm_kwargs()}
    offline = is_offline(model.id)
    if schema is not None and not offline and supports_schema(model):
        params.setdefault("response_format", schema)
    if seed is not None and not offline:
        # Many providers have no seed; litellm drops it there instead of failing.
        params["drop_params"] = True
    if store_key and model.id.startswith("replay/"):
        params["nbt_store"] = store_key
    if offline:
        params["nbt_sample"] = sample
    return params


@dataclass
class Reply:
    """What one successful call gave back."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float
    latency_s: float | None = None  # a recorded latency overrides the measured one


async def complete(
    model: Model, messages: list[dict[str, Any]], kwargs: dict[str, Any], timeout: float | None
) -> Reply:
    """One call through ``litellm.acompletion``; raises litellm's exceptions as they are."""
    litellm = get_litellm()
    call_kwargs = dict(kwargs)
    offline = is_offline(model.id)
    if not offline:
        call_kwargs["max_retries"] = 0  # the runner retries, with backoff and Retry-After
        if model.api_key_env:
            call_kwargs["api_key"] = os.environ[model.api_key_env]
        elif model.api_base and "api_key" not in call_kwargs:
            call_kwargs["api_key"] = _env_key_or_placeholder(model)
    if timeout is not None:
        call_kwargs["timeout"] = timeout
    response = await litellm.acompletion(
        model=model.id if offline else litellm_id(model), messages=messages, **call_kwargs
    )
    _check_content(response)
    return _reply(model, response)


class NoContentError(ValueError):
    """A reply with a choice but no text: retried like empty ``choices``, never cached."""


def _check_content(response: Any) -> None:
    # A 200 whose message content is null (a refusal, a tool call, a gateway under load) has
    # no answer in it: taking it for an empty answer would bill it, cache it and serve it on
    # every re-run.
    choices = getattr(response, "choices", None) or []
    if not choices:
        return  # _reply says "no choices"
    message = getattr(choices[0], "message", None)
    if getattr(message, "content", None) is not None:
        return
    why = []
    refusal = getattr(message, "refusal", None)
    if refusal:
        why.append(f"refusal: {str(refusal)[:120]}")
    if getattr(message, "tool_calls", None):
        why.append("a tool call instead of text")
    reason = getattr(choices[0], "finish_reason", None)
    if reason:
        why.append(f"finish_reason={reason}")
    detail = f" ({'; '.join(why)})" if why else ""
    raise NoContentError(f"the provider's reply has no message content{detail}")


def _env_key_or_placeholder(model: Model) -> str:
    # OpenAI-compatible clients refuse an empty key even when the server needs none.
    return os.environ.get("OPENAI_API_KEY") or "no-key-needed"


def _reply(model: Model, response: Any) -> Reply:
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise ValueError("the provider answered with no choices")
    text = choices[0].message.content
    if text is None:
        text = ""
    hidden = getattr(response, "_hidden_params", {}) or {}
    own = hidden.get("nbtoolkit")
    if own is not None:  # an offline provider states its own usage and price
        return Reply(
            text,
            own.get("prompt_tokens"),
            own.get("completion_tokens"),
            _nan_if_none(own.get("cost_usd")),
            own.get("latency_s"),
        )
    usage = getattr(response, "usage", None)
    prompt_tokens = getattr(usage, "prompt_tokens", None)
    completion_tokens = getattr(usage, "completion_tokens", None)
    cost = math.nan
    if price_known(model):
        cost = _nan_if_none(hidden.get("response_cost"))
        if math.isnan(cost):
            try:
                cost = float(get_litellm().completion_cost(completion_response=response))
            except Exception:
                cost = math.nan
    return Reply(text, prompt_tokens, completion_tokens, cost)


def _nan_if_none(value: Any) -> float:
    return math.nan if value is None else float(value)


# --- errors: which are worth a retry, and how long to wait ------------------------------------

_RETRYABLE = {
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "APIConnectionError",
    "Timeout",
    "APIError",
    "TimeoutError",
    "JSONDecodeError",
    "BadGatewayError",
}
_FINAL = {
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "BadRequestError",
    "ContextWindowExceededError",
    "ContentPolicyViolationError",
    "UnsupportedParamsError",
    "UnprocessableEntityError",
}


def _own_error(exc: BaseException) -> NbtoolkitError | None:
    """Our exception inside litellm's wrapper (a custom provider's errors get wrapped)."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        if isinstance(current, NbtoolkitError):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def retry_hint(exc: BaseException) -> tuple[bool, float | None]:
    """``(retryable, retry_after_seconds)`` for an exception raised by a call."""
    if _own_error(exc) is not None:
        return False, None  # a replay miss or an offline model's refusal: asking again won't help
    if isinstance(exc, asyncio.TimeoutError):
        return True, None
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & _FINAL:
        return False, None
    status = getattr(exc, "status_code", None)
    retryable = bool(names & _RETRYABLE) or (isinstance(status, int) and status >= 500)
    retryable = retryable or status == 429 or isinstance(exc, (ConnectionError, ValueError))
    return retryable, _retry_after(exc)


def _retry_after(exc: BaseException) -> float | None:
    """Seconds a server asked us to wait, in any of its forms: ``retry-after-ms`` (OpenAI),
    ``Retry-After`` as seconds or as an HTTP date; None when it says nothing usable."""
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ):
        if not headers:
            continue
        try:
            ms = _header(headers, "retry-after-ms")
            value = _header(headers, "retry-after")
        except AttributeError:
            continue
        if ms is not None:
            with contextlib.suppress(ValueError):
                return _finite(float(ms) / 1000.0)
        if value is None:
            continue
        with contextlib.suppress(ValueError):
            return _finite(float(value))
        with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
            when = email.utils.parsedate_to_datetime(str(value))
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.timezone.utc)
            return _finite((when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())
    return None


def _header(headers: Any, name: str) -> Any:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value


def _finite(seconds: float) -> float | None:
    # The cap (RetryPolicy.max_retry_after_s) is applied where the wait is made.
    return max(0.0, seconds) if math.isfinite(seconds) else None


def describe_error(exc: BaseException) -> str:
    """One readable line for an error row: the class name and the first line of its message."""
    if isinstance(exc, asyncio.TimeoutError):
        return "Timeout: no reply within the timeout"
    exc = _own_error(exc) or exc
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    message = message.replace("litellm.", "")
    name = type(exc).__name__
    if message.startswith(name):
        return message[:300]
    return f"{name}: {message}"[:300] if message else name
