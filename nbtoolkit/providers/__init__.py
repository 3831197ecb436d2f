"""Every model call goes through ``complete``; this package is the only importer of litellm.

- ``registry``: which models are offline (``replay/``, ``sim/``, your own), litellm loaded once;
- ``keys``: which API key a call may send, and where;
- ``facts``: what litellm knows of a model (price, context window, tokens, schema support);
- ``failures``: retry hints and the one-line error texts of failed calls;
- ``offline``, ``sim``, ``recordings``: the offline providers themselves, answered in-process;
- ``resolve``: each model resolved once (transport, base URL, prices, context window);
- ``openai_http``: the lean aiohttp transport for OpenAI-compatible endpoints;
- ``proxy``: the LiteLLM proxy as a team's gateway (its URL, key and errors).
"""

from __future__ import annotations

import asyncio
import math
import warnings
from collections.abc import Callable
from typing import Any

from ..errors import redact
from ..spec import Model
from ..timing import mark_started
from . import offline as _offline
from .env_keys import key_lines, key_variables
from .facts import (
    check_model,
    context_window,
    count_tokens,
    price_known,
    price_per_token,
    supports_schema,
    warm_up,
)
from .failures import describe_error, retry_hint
from .keys import (
    KEY_VARIABLES,
    NO_KEY,
    OWN_HOSTS,
    api_base_of,
    api_key_for,
    own_endpoint,
)
from .proxy import Proxy, as_proxy, current_proxy, served_models, use_proxy
from .registry import (
    LOADING_NOTE,
    OfflineProvider,
    get_litellm,
    in_process,
    is_offline,
    litellm_id,
    loading_listener,
    offline_handler,
    register_offline,
)
from .reply import NoContentError, Reply
from .resolve import TRANSPORTS, Resolved, resolve, transports_of, use_transport

# The built-in offline providers (replay/, sim/) register like anyone's would; the registry
# itself knows none of them, so it imports nothing back.
_offline.register_builtins()

__all__ = [
    "KEY_VARIABLES",
    "LOADING_NOTE",
    "NO_KEY",
    "OWN_HOSTS",
    "TRANSPORTS",
    "NoContentError",
    "OfflineProvider",
    "Proxy",
    "Reply",
    "Resolved",
    "api_base_of",
    "api_key_for",
    "as_proxy",
    "call_params",
    "check_model",
    "close_sessions",
    "complete",
    "context_window",
    "count_tokens",
    "current_proxy",
    "describe_error",
    "get_litellm",
    "in_process",
    "is_offline",
    "key_lines",
    "key_variables",
    "litellm_id",
    "loading_listener",
    "open_sessions",
    "own_endpoint",
    "price_known",
    "price_per_token",
    "register_offline",
    "resolve",
    "retry_hint",
    "served_models",
    "supports_schema",
    "transports_of",
    "use_proxy",
    "use_transport",
    "warm_up",
]


def open_sessions(keep: bool = False) -> Any:
    """Start a run's pool of HTTP sessions (the lean transport's); see ``close_sessions``.
    ``keep``: the run is on nbtoolkit's own loop, whose sessions are kept between runs."""
    from . import openai_http

    return openai_http.open_sessions(keep)


async def close_sessions(pool: Any) -> None:
    """Close a run's HTTP sessions, on the run's loop, when the run ends."""
    from . import openai_http

    await openai_http.close_sessions(pool)


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


async def complete(
    model: Model,
    messages: list[dict[str, Any]],
    kwargs: dict[str, Any],
    timeout: float | None,
    on_text: Callable[[str], None] | None = None,
) -> Reply:
    """One call: an offline model's in-process provider; else the model's transport
    (``resolve``): the lean HTTP client for an OpenAI-compatible endpoint, or
    ``litellm.acompletion``. Raises the provider's or the transport's exceptions as they are.

    ``on_text``: stream the reply, calling it with each piece of text as it arrives (a
    provider that cannot stream gives its whole reply as one piece). The returned ``Reply``
    is the whole reply, as without it; its usage is unknown when the stream did not say it.
    """
    handler = offline_handler(model.id)
    if handler is not None:
        mark_started()
        # An answer that never waits would hold the loop for the whole run: yield once, so a
        # Cancel, the progress display and the other calls get their turn.
        await asyncio.sleep(0)
        name = model.id.partition("/")[2]
        # A copy: one params dict serves every row of a model and sample.
        streams = on_text is not None and callable(getattr(handler, "stream", None))
        if streams:
            reply = await handler.stream(name, messages, dict(kwargs), on_text)  # type: ignore[attr-defined]
        else:
            reply = await handler.answer(name, messages, dict(kwargs))
        if not isinstance(reply, Reply) or not isinstance(reply.text, str):
            raise TypeError(
                f"the offline provider of {model.id.partition('/')[0]}/ answered "
                f"{type(reply).__name__}: answer() must return a providers.Reply with text"
            )
        reply.text = redact(reply.text)
        if on_text is not None and not streams:
            on_text(reply.text)  # a provider that cannot stream: its reply in one piece
        return reply
    record = resolve(model)
    if record.transport == "aiohttp":
        from . import openai_http

        return await openai_http.complete(record, messages, kwargs, timeout, on_text)  # type: ignore[no-any-return]
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
    if on_text is not None:
        return await _streamed(litellm, model, messages, call_kwargs, on_text)
    response = await litellm.acompletion(
        model=model.id if offline else litellm_id(model), messages=messages, **call_kwargs
    )
    check_content(response)
    reply = reply_of(model, response)
    reply.text = redact(reply.text)  # a server may echo a key back: it goes no further
    return reply


async def _streamed(
    litellm: Any,
    model: Model,
    messages: list[dict[str, Any]],
    call_kwargs: dict[str, Any],
    on_text: Callable[[str], None],
) -> Reply:
    """A call through litellm with ``stream=True``: each delta to ``on_text``, the pieces
    put back together by litellm's ``stream_chunk_builder``. Usage is asked for
    (``stream_options.include_usage``) and taken only from a chunk that carries it: the
    builder would otherwise count tokens itself, and a count we did not receive is unknown."""
    offline = is_offline(model.id)
    request = litellm.acompletion(
        model=model.id if offline else litellm_id(model),
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        **call_kwargs,
    )
    if _stream_ready:
        chunks, sent = await _consume(request, on_text)
    else:
        chunks, sent = await _first_stream(_consume(request, on_text))
    if not chunks:
        raise ValueError("the provider's stream ended with no chunk")
    built = litellm.stream_chunk_builder(chunks, messages=messages)
    check_content(built)
    if sent is None:
        built.usage = None  # not sent: unknown, not the builder's own count
    else:
        built.usage = sent
    reply = reply_of(model, built)
    reply.text = redact(reply.text)
    return reply


_stream_ready = False  # litellm's streaming path has been set up once in this process
_stream_setup: dict[int, asyncio.Lock] = {}  # by loop


async def _consume(request: Any, on_text: Callable[[str], None]) -> tuple[list[Any], Any]:
    """The chunks of a litellm stream, each delta given to ``on_text``; and the usage, if a
    chunk carried it (None otherwise)."""
    response = await request
    chunks: list[Any] = []
    sent: Any = None
    async for chunk in response:
        chunks.append(chunk)
        usage = getattr(chunk, "usage", None)
        if usage is not None and getattr(usage, "prompt_tokens", None):
            sent = usage
        choices = getattr(chunk, "choices", None) or []
        delta = getattr(choices[0], "delta", None) if choices else None
        piece = getattr(delta, "content", None)
        if piece:
            on_text(redact(piece))
    # litellm fills in a usage of its own count on the last chunk it yields when the provider
    # sent none; the chunks it received (its stream wrapper's ``chunks``) say which it was.
    received = getattr(response, "chunks", None)
    if isinstance(received, list):
        sent = None
        for chunk in received:
            usage = getattr(chunk, "usage", None)
            if usage is not None and getattr(usage, "prompt_tokens", None):
                sent = usage
    return chunks, sent


async def _first_stream(request: Any) -> Any:
    """The first streamed request of the process: litellm imports modules on that path whose
    pydantic models warn at import time (noise that is litellm's, like the warm-up's). One
    request at a time holds the filter, so no other task's warnings are lost meanwhile."""
    global _stream_ready
    lock = _stream_setup.setdefault(id(asyncio.get_running_loop()), asyncio.Lock())
    async with lock:
        if _stream_ready:
            return await request
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            response = await request
        _stream_ready = True
        return response


def check_content(response: Any) -> None:
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


def reply_of(model: Model, response: Any) -> Reply:
    """The ``Reply`` of a litellm response (usage unknown when not sent, never 0)."""
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
