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
import functools
import json
import logging
import math
import os
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import MissingAPIKeyError, ModelError, NbtoolkitError, clip, redact
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


# The API key variables `nbtoolkit models` and `%orchestrate models` name (never their
# values): one list, so the two front ends show the same.
KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "MISTRAL_API_KEY",
    "COHERE_API_KEY",
    "GROQ_API_KEY",
    "TOGETHERAI_API_KEY",
    "OPENROUTER_API_KEY",
)


def key_variables() -> list[tuple[str, bool]]:
    """``(name, is set)`` for the well-known key variables, then any other ``*_API_KEY``
    in the environment; values are never returned."""
    names = list(KEY_VARIABLES) + sorted(
        k for k in os.environ if k.endswith("_API_KEY") and k not in KEY_VARIABLES
    )
    return [(name, bool(os.environ.get(name))) for name in names]


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
    base = _api_base(model.litellm_kwargs(), model)
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


def _price_entry(model: Model) -> dict[str, Any] | None:
    """litellm's price-table entry for the model when it states a real price, else None.

    An entry whose prices are all zero is a placeholder (``ollama/llama3`` has one,
    ``ollama_chat/llama3`` none): the same local model must not cost $0 under one prefix and
    NaN under another, so neither is a price. Declare a free model with
    ``Model(..., extra={"input_cost_per_token": 0, "output_cost_per_token": 0})``.
    """
    prefix, _, name = model.id.partition("/")
    cost = get_litellm().model_cost
    entry = cost.get(name) if prefix == "replay" else cost.get(model.id) or cost.get(name)
    if not entry or entry.get("input_cost_per_token") is None:
        return None
    prices = (entry.get("input_cost_per_token"), entry.get("output_cost_per_token"))
    if not any(p for p in prices if p is not None):
        return None
    return dict(entry)


def price_known(model: Model) -> bool:
    """Whether the model's own params or litellm's price table (a real, non-zero entry)
    price this model."""
    if "input_cost_per_token" in model.params or "input_cost_per_token" in model.extra:
        return True
    if model.id.partition("/")[0] == "sim":
        return True
    return _price_entry(model) is not None


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
    entry = _price_entry(model)
    if entry is None:
        return math.nan
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
        key = api_key_for(model, call_kwargs)
        if key is not None:
            call_kwargs["api_key"] = key
    if timeout is not None:
        call_kwargs["timeout"] = timeout
    response = await litellm.acompletion(
        model=model.id if offline else litellm_id(model), messages=messages, **call_kwargs
    )
    _check_content(response)
    reply = _reply(model, response)
    reply.text = redact(reply.text)  # a server may echo a key back: it goes no further
    return reply


# Where a provider's own key, read from its usual environment variable, may be sent: the
# provider's own API hosts ("." + suffix for per-customer hosts such as Azure's), over https.
OWN_HOSTS: dict[str, tuple[str, ...]] = {
    "openai": ("api.openai.com",),
    "text-completion-openai": ("api.openai.com",),
    "anthropic": ("api.anthropic.com",),
    "gemini": ("generativelanguage.googleapis.com",),
    "mistral": ("api.mistral.ai",),
    "cohere": ("api.cohere.ai", "api.cohere.com"),
    "cohere_chat": ("api.cohere.ai", "api.cohere.com"),
    "groq": ("api.groq.com",),
    "together_ai": ("api.together.xyz", "api.together.ai"),
    "deepseek": ("api.deepseek.com",),
    "xai": ("api.x.ai",),
    "openrouter": ("openrouter.ai",),
    "fireworks_ai": ("api.fireworks.ai",),
    "perplexity": ("api.perplexity.ai",),
    "azure": (".openai.azure.com", ".cognitiveservices.azure.com"),
    "azure_ai": (".services.ai.azure.com", ".models.ai.azure.com", ".inference.ai.azure.com"),
}
# What a host without a key of its own is sent. Not a secret: litellm would otherwise fill
# an empty or missing key from OPENAI_API_KEY (or the provider's variable), and the openai
# client refuses to send no key at all. A server without auth ignores it.
NO_KEY = "no-key-needed"


# Where litellm reads a provider's base URL from the environment when the call names none
# (``OPENAI_BASE_URL`` and the like): such a base is another host just as an api_base is.
_ENV_BASES: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "text-completion-openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
}


def _api_base(kwargs: dict[str, Any], model: Model | None = None) -> str | None:
    """Where the call goes: its ``api_base``, else the base the environment sets for the
    model's provider (``OPENAI_BASE_URL``, ``<PROVIDER>_API_BASE``...), else None."""
    base = kwargs.get("api_base") or kwargs.get("base_url")
    if base:
        return str(base)
    if model is None:
        return None
    provider = _provider_of(model.id)
    if not provider:
        return None
    upper = provider.upper()
    names = _ENV_BASES.get(provider, (f"{upper}_API_BASE", f"{upper}_BASE_URL"))
    found = next((os.environ[n] for n in names if os.environ.get(n)), None)
    return found


def own_endpoint(model: Model, api_base: str) -> bool:
    """Whether ``api_base`` is the model's provider's own API (where its key may go)."""
    from urllib.parse import urlsplit

    parts = urlsplit(api_base)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host:
        return False
    provider = _provider_of(model.id)
    return any(
        host.endswith(own) if own.startswith(".") else host == own
        for own in OWN_HOSTS.get(provider, ())
    )


@functools.lru_cache(maxsize=512)
def _provider_of(model_id: str) -> str:
    try:
        return str(get_litellm().get_llm_provider(litellm_id(Model(model_id)))[1])
    except Exception:
        return ""


def api_key_for(model: Model, kwargs: dict[str, Any]) -> str | None:
    """The API key a live call sends: the variable the user named (``api_key_env``) to
    wherever the model points; else None (litellm takes the provider's key from the
    environment) when the call goes to the provider's own endpoint; else ``NO_KEY``.

    So ``OPENAI_API_KEY`` goes to api.openai.com and nowhere else: not to a self-hosted
    server, a proxy, or a fallback on another host, whatever their ``api_base``, and not to
    a host that ``OPENAI_BASE_URL`` (or ``<PROVIDER>_API_BASE``) names either.
    """
    if model.api_key_env:
        return os.environ[model.api_key_env]
    base = _api_base(kwargs, model)
    if base is None or own_endpoint(model, base):
        return None
    return NO_KEY


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
    prompt_tokens, completion_tokens = _sent_usage(response)
    cost = math.nan
    if prompt_tokens is not None and price_known(model):
        cost = _nan_if_none(hidden.get("response_cost"))
        if math.isnan(cost):
            try:
                cost = float(get_litellm().completion_cost(completion_response=response))
            except Exception:
                cost = math.nan
    return Reply(text, prompt_tokens, completion_tokens, cost)


def _sent_usage(response: Any) -> tuple[int | None, int | None]:
    """The token counts the provider sent, or ``(None, None)`` when it sent none.

    litellm fills in a ``Usage`` of zeros when a reply has no ``usage`` (local servers, some
    proxies, streams), leaving no other trace; a prompt is never zero tokens, so a usage
    with no prompt tokens was not sent, and its tokens and cost are unknown, not 0.
    """
    usage = getattr(response, "usage", None)
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    if not prompt:
        return None, None
    return int(prompt), None if completion is None else int(completion)


def _nan_if_none(value: Any) -> float:
    """A float, NaN for None or for a value that is not a number (unknown, never 0)."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


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


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(out) < 10 and current not in out:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


_CONNECT_TYPES = {"ConnectError", "ClientConnectorError", "ConnectionRefusedError", "gaierror"}
_DROPPED_TYPES = {"ConnectionResetError", "ServerDisconnectedError", "RemoteProtocolError"}


def _request_url(chain: list[BaseException]) -> str:
    for c in reversed(chain):
        if type(c).__module__.split(".")[0] == "litellm":
            continue  # litellm's wrappers hold a stand-in request (api.openai.com), not the real one
        try:
            found = str(c.request.url)  # type: ignore[attr-defined]
        except Exception:
            continue
        return found.split("?")[0]  # a query may carry a key (Azure's api-key=)
    host = re.search(r"Cannot connect to host (\S+)", " ".join(str(c) for c in chain))
    return host.group(1) if host else ""


def _transport_failure(chain: list[BaseException]) -> str | None:
    """``Cannot connect: ...`` (or a dropped connection, a reply that is not JSON) when the
    chain says so, with the URL and what to check; else None."""
    names = {t.__name__ for c in chain for t in type(c).__mro__}
    text = " ".join(str(c) for c in chain)
    url = _request_url(chain)
    where = url or "the server"
    if names & _CONNECT_TYPES or "Cannot connect to host" in text:
        if "ConnectionRefusedError" in names:
            what = "refused the connection (nothing listens there)"
        elif "gaierror" in names or re.search(r"name or service not known|nodename", text, re.I):
            what = "is on a host name that could not be resolved"
        else:
            what = "could not be reached"
        return (
            f"Cannot connect: {where} {what}; check that the server is running and that "
            "api_base (scheme, host, port and path, e.g. http://127.0.0.1:8000/v1) is right"
        )
    if names & {"APITimeoutError", "TimeoutException", "ReadTimeout", "Timeout"}:
        limit = re.search(r"timeout value=([\d.]+)", text)
        within = f" within {float(limit.group(1)):g} s" if limit else " within the timeout"
        return f"Timeout: {where} sent no reply{within}; raise timeout= if the model is slow"
    if names & _DROPPED_TYPES:
        return (
            f"Connection dropped: {where} closed the connection without a reply; check the "
            "server's log (a crash, an overloaded server or a proxy in between)"
        )
    if "JSONDecodeError" in names:
        return (
            f"Bad reply: {where} answered with a body that is not JSON; check that api_base "
            "points at an OpenAI-compatible API (often it needs /v1 at the end)"
        )
    return None


def _body_message(message: str) -> str:
    """The ``error.message`` of a JSON error body quoted whole in a message, else the message."""
    start = message.find("{")
    if start < 0:
        return message
    try:
        body = json.loads(message[start:])
    except ValueError:
        return message
    error = body.get("error") if isinstance(body, dict) else None
    inner = error.get("message") if isinstance(error, dict) else error
    if isinstance(inner, str) and inner:
        return (message[:start].rstrip(" :-") + ": " + inner).lstrip(": ")
    return message


# litellm wraps a provider's error in its own and repeats the class name, sometimes twice
# ("litellm.InternalServerError: InternalServerError: OpenAIException - ..."): one prefix is
# enough. Object reprs (an SSL context's address) and "Handle with `X`" are noise to a user.
_NOISE = (
    (re.compile(r"\blitellm\."), ""),
    (re.compile(r"\s*ssl:<[^>]*>"), ""),
    (re.compile(r"\s*Handle with `\w+`\.?"), ""),
    (re.compile(r"^\w+(?:Exception|Error) - "), ""),
)


def describe_error(exc: BaseException, model: Model | None = None) -> str:
    """One readable line for an error row: ``Kind: message``, with the kind named once.

    A connection that could not be made reads ``Cannot connect: URL ...; check ...``; a
    request that ran out of time ``Timeout: URL sent no reply within N s; ...``, the URL being
    the model's ``api_base`` (or its id) when the exception does not carry one.
    """
    if isinstance(exc, asyncio.TimeoutError):
        limit = getattr(exc, "timeout", None)
        within = f" within {limit:g} s" if isinstance(limit, (int, float)) else " in time"
        where = (model.api_base or model.id) if model is not None else "the server"
        # The URL is redacted before the cut: it may carry user:pass@ credentials.
        return clip(
            f"Timeout: {where} sent no reply{within}; raise timeout= if the model is slow", 300
        )
    exc = _own_error(exc) or exc
    transport = _transport_failure(_chain(exc))
    if transport is not None:
        return clip(transport, 300)
    name = type(exc).__name__
    kinds = {cls.__name__ for cls in type(exc).__mro__} | {name}
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    changed = True
    while changed:
        before = message
        for pattern, repl in _NOISE:
            message = pattern.sub(repl, message).strip()
        head = re.match(r"(\w+):\s*", message)
        if head and (head.group(1) in kinds or head.group(1).endswith(("Error", "Exception"))):
            if head.group(1) != name and name in ("Exception", "RuntimeError"):
                name = head.group(1)  # a bare wrapper: the inner kind says more
            message = message[head.end() :]
        changed = message != before
    message = _body_message(message)
    # Redacted before it is cut short: a key cut in half would no longer be recognised.
    return clip(f"{name}: {message}", 300) if message else name
