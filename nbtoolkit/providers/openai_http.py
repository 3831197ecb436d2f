"""The lean transport: one aiohttp request per call to an OpenAI-compatible chat endpoint.

litellm spends 5 to 17 ms of CPU on each ``acompletion`` (a thread hop, logging and cost
callbacks, price-table scans); this path spends well under one. What litellm decides stays
litellm's, asked once per model or per set of parameters: the provider, the model name on
the wire, the mapping of parameters (``get_optional_params``), prices (``resolve``). The
rest is the same as the litellm path: key handling (``keys.api_key_for``), the runner's
retries and timeouts, the error kinds and texts (``failures.describe_error`` reads these
exceptions as it reads litellm's), redaction, cache keys and audit records.

Sessions: one pooled ``aiohttp.ClientSession`` per (base URL, key). On nbtoolkit's own
loop (``orchestrate``'s, which lives for the process) they are kept between runs, as litellm
keeps its clients, so a run skips the previous run's TCP and TLS handshakes; they are closed
at exit. A run on another loop (``aorchestrate`` under ``asyncio.run``) opens its own and
closes them when it ends (``open_sessions``/``close_sessions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from ..errors import redact
from ..timing import RequestTimeout, run_marked
from .keys import api_key_for
from .registry import get_litellm, quiet
from .reply import NoContentError, Reply
from .resolve import Resolved, env_key

__all__ = [
    "APIConnectionError",
    "APIError",
    "HTTPStatusError",
    "SessionPool",
    "close_sessions",
    "complete",
    "open_sessions",
]


# An idle connection is closed after this many seconds, so a kept one is reused only soon
# after its last reply: one idle for minutes may have been dropped silently by a NAT or a load
# balancer, and a request on it would fail or hang. Under the 5 s after which uvicorn (vLLM,
# the LiteLLM proxy) and Node.js servers close an idle connection, so the client closes first
# and never writes to a connection the server is closing (httpx, litellm's client, keeps 5 s).
KEEPALIVE_S = 4.0

# A request's time limit when the run sets none: litellm's own default (its
# ``request_timeout``), so a connection dropped without a word ends as a timeout in the
# end on either path, instead of waiting forever on this one.
DEFAULT_TIMEOUT_S = 6000.0


class SessionPool:
    """The aiohttp sessions of one run, by (base URL, key); ``close()`` ends them all, but
    for those kept between runs (``keep=True``: see the module's docstring)."""

    def __init__(self, keep: bool = False) -> None:
        self._sessions: _Sessions = _KEPT if keep else _Sessions()
        self.keep = keep
        # Read from the environment once per run: HTTPS_PROXY may change between runs.
        self.proxies: dict[str, str | None] = {}
        self.closed = False
        self._token: contextvars.Token[SessionPool | None] | None = None

    def get(self, base: str, key: str | None) -> Any:
        if base not in self.proxies:
            self.proxies[base] = _env_proxy(base)
        session = self._sessions.get((base, key))
        if session is None or session.closed:
            import aiohttp

            headers = {"Content-Type": "application/json"}
            if key:
                headers["Authorization"] = f"Bearer {key}"
            session = aiohttp.ClientSession(
                # The runner bounds the calls in flight; the connector must not queue them too.
                connector=aiohttp.TCPConnector(
                    limit=0, ttl_dns_cache=300, keepalive_timeout=KEEPALIVE_S
                ),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None),
            )
            self._sessions.put((base, key), session)
        return session

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._token is not None:
            token, self._token = self._token, None
            # Closed from another context: there is nothing to restore there.
            with contextlib.suppress(ValueError):
                _pool.reset(token)
        if not self.keep:
            await self._sessions.close()
        else:
            await _KEPT.leave()


class _Sessions:
    """Sessions by (base URL, key), the least recently used closed past ``limit`` (a notebook
    that tries many local servers, or keys, does not gather connections without end)."""

    def __init__(self, limit: int = 16) -> None:
        self._by_key: OrderedDict[tuple[str, str | None], Any] = OrderedDict()
        self._evicted: list[Any] = []
        self.limit = limit
        # Runs using these sessions now (pipeline steps side by side, threads): a session
        # pushed out may still carry another run's requests, so it is closed only once
        # none is left.
        self.users = 0

    def join(self) -> None:
        self.users += 1

    async def leave(self) -> None:
        self.users = max(0, self.users - 1)
        if self.users == 0:
            await self.close_evicted()

    def get(self, key: tuple[str, str | None]) -> Any:
        session = self._by_key.get(key)
        if session is not None:
            self._by_key.move_to_end(key)
        return session

    def put(self, key: tuple[str, str | None], session: Any) -> None:
        self._by_key[key] = session
        self._by_key.move_to_end(key)
        while len(self._by_key) > self.limit:
            self._evicted.append(self._by_key.popitem(last=False)[1])

    async def close_evicted(self) -> None:
        evicted, self._evicted = self._evicted, []
        for session in evicted:
            await session.close()

    async def close(self) -> None:
        sessions = [*self._by_key.values(), *self._evicted]
        self._by_key.clear()
        self._evicted = []
        for session in sessions:
            await session.close()


# The sessions kept between runs, used only on nbtoolkit's own loop (so only from its thread),
# and closed on it at exit (``loop.at_close``).
_KEPT = _Sessions()


def _env_proxy(base: str) -> str | None:
    """The proxy the environment names for ``base`` (HTTP(S)_PROXY, NO_PROXY), as litellm's
    httpx client reads it; looked up once per session, not per request (aiohttp's
    ``trust_env`` would do it on a worker thread for every request)."""
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


_pool: contextvars.ContextVar[SessionPool | None] = contextvars.ContextVar(
    "nbtoolkit_sessions", default=None
)


def open_sessions(keep: bool = False) -> SessionPool:
    """Start this run's session pool; the run's tasks (created after) share it. ``keep``:
    on nbtoolkit's own loop, use (and leave open) the sessions kept between runs."""
    if keep:
        from ..loop import at_close

        at_close(_KEPT.close)
        _KEPT.join()
    pool = SessionPool(keep=keep)
    pool._token = _pool.set(pool)
    return pool


async def close_sessions(pool: SessionPool) -> None:
    """Close the run's sessions (on its loop), so no "Unclosed client session" is left."""
    await pool.close()


# -- errors: the kinds litellm raises for the same server behaviour ----------------------------


class APIError(Exception):
    """A reply the client could not use (litellm's ``APIError``): retried."""

    status_code: int | None = None


class APIConnectionError(APIError):
    """The request did not get a reply: refused, reset, dropped. ``request.url`` says where."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.request = _Request(url)


class _Request:
    def __init__(self, url: str) -> None:
        self.url = url


class HTTPStatusError(APIError):
    """An error status; subclasses are named as litellm names them (``RateLimitError``...)."""

    def __init__(self, message: str, status: int, headers: Any) -> None:
        super().__init__(message)
        self.status_code = status
        self.litellm_response_headers = headers  # read by failures.retry_hint (Retry-After)


def _kind(name: str) -> type[HTTPStatusError]:
    return type(name, (HTTPStatusError,), {"__module__": __name__})


BadRequestError = _kind("BadRequestError")
AuthenticationError = _kind("AuthenticationError")
PermissionDeniedError = _kind("PermissionDeniedError")
NotFoundError = _kind("NotFoundError")
UnprocessableEntityError = _kind("UnprocessableEntityError")
RateLimitError = _kind("RateLimitError")
InternalServerError = _kind("InternalServerError")
ServiceUnavailableError = _kind("ServiceUnavailableError")
ContextWindowExceededError = _kind("ContextWindowExceededError")
ContentPolicyViolationError = _kind("ContentPolicyViolationError")
BadGatewayError = _kind("BadGatewayError")

_BY_STATUS = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    500: InternalServerError,
    502: BadGatewayError,
    503: ServiceUnavailableError,
}
_CONTEXT_WORDS = ("context_length_exceeded", "maximum context length", "context window")


def _status_error(status: int, raw: bytes, headers: Any) -> HTTPStatusError:
    text = raw.decode("utf-8", "replace").strip()
    message = text
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    inner = error.get("message") if isinstance(error, dict) else error
    if isinstance(inner, str) and inner:
        message = inner
    kind = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else HTTPStatusError)
    lowered = text.lower()
    if status == 400 and any(w in lowered for w in _CONTEXT_WORDS):
        kind = ContextWindowExceededError
    elif status == 400 and "content_policy" in lowered:
        kind = ContentPolicyViolationError
    return kind(message or f"status {status}", status, headers)


BudgetExceededError = _kind("BudgetExceededError")
ModelNotAllowedError = _kind("ModelNotAllowedError")
_PROXY_KINDS = {
    "BudgetExceededError": BudgetExceededError,
    "ModelNotAllowedError": ModelNotAllowedError,
    "RateLimitError": RateLimitError,
    "AuthenticationError": AuthenticationError,
}


def _proxy_error(record: Resolved, error: HTTPStatusError, raw: bytes) -> HTTPStatusError:
    """The proxy's own refusals (budget, model access, rate limit, key) as one line each;
    an error it passed on from a provider stays as that provider's."""
    from .failures import retry_hint
    from .proxy import explain

    assert record.proxy is not None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    inner = body.get("error") if isinstance(body, dict) else None
    kind = str(inner.get("type") or "") if isinstance(inner, dict) else ""
    status = int(error.status_code or 0)
    known = explain(
        status, kind, str(error), retry_hint(error)[1], record.proxy, record.model.label
    )
    if known is None:
        return error
    name, line = known
    return _PROXY_KINDS[name](line, status, error.litellm_response_headers)


# -- the call ----------------------------------------------------------------------------------

# Keyword arguments that steer the client, never part of the request body.
_CLIENT_ONLY = {"api_base", "base_url", "drop_params", "timeout", "api_key", "max_retries"}
_params_memo: OrderedDict[tuple[int, Any], tuple[dict[str, Any], dict[str, str]]] = OrderedDict()
_memo_lock = threading.Lock()


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def wire_params(record: Resolved, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The request body's parameters and the extra headers of a call, as litellm would send
    them (its ``get_optional_params``), memoised per model and set of parameters."""
    key = (id(record), _freeze(kwargs))
    found = _params_memo.get(key)
    if found is not None:
        return found
    litellm = get_litellm()
    from litellm.types.utils import all_litellm_params

    headers = {str(k): str(v) for k, v in (kwargs.get("extra_headers") or {}).items()}
    given = {
        k: v
        for k, v in kwargs.items()
        if k not in _CLIENT_ONLY
        and k != "extra_headers"
        and k not in all_litellm_params
        and not k.startswith("nbt_")
    }
    with quiet():
        optional = litellm.get_optional_params(
            model=record.wire_model,
            custom_llm_provider=record.provider,
            drop_params=kwargs.get("drop_params"),
            **given,
        )
    optional = dict(optional)
    optional.pop("stream", None)
    optional.update(optional.pop("extra_body", None) or {})  # as the openai client merges it
    result = (optional, headers)
    with _memo_lock:
        _params_memo[key] = result
        while len(_params_memo) > 512:
            _params_memo.popitem(last=False)
    return result


async def complete(
    record: Resolved,
    messages: list[dict[str, Any]],
    kwargs: dict[str, Any],
    timeout: float | None,
    on_text: Callable[[str], None] | None = None,
) -> Any:
    """One call to ``record.api_base``'s ``/chat/completions``; returns a ``providers.Reply``.

    Raises exceptions named as litellm's for the same server behaviour (``RateLimitError``
    with the server's ``Retry-After``, ``APIConnectionError``...), ``ValueError`` for a reply
    without choices, ``NoContentError`` for a choice without text.

    ``on_text``: ask for a stream (server-sent events, with ``stream_options.include_usage``)
    and give it each piece of text as it arrives; a stream cut off before its end raises
    ``APIConnectionError`` (retried). A server that answers with one JSON body anyway is read
    as usual, its text given as one piece.
    """
    import aiohttp

    params, headers = wire_params(record, kwargs)
    if on_text is not None:
        params = {**params, "stream": True, "stream_options": {"include_usage": True}}
    if record.proxy is not None:  # the virtual key, to the proxy only: never a provider's
        key = record.proxy.key()
    else:
        key = api_key_for(record.model, kwargs)
        if key is None:  # the provider's own host: its own key, as litellm reads it
            key = env_key(record)
    url = endpoint(str(record.api_base), "chat/completions")
    body = orjson.dumps({"model": record.wire_model, "messages": messages, **params})
    current = _pool.get()
    own = current is None or current.closed
    # A call outside a run: a session of its own, closed below.
    pool = SessionPool() if current is None or current.closed else current
    try:
        session = pool.get(str(record.api_base), key)
        run_marked(None)  # the request starts now: so does its timeout's clock
        try:
            async with session.post(
                url,
                data=body,
                headers=headers or None,
                proxy=pool.proxies.get(str(record.api_base)),
                timeout=aiohttp.ClientTimeout(total=timeout or DEFAULT_TIMEOUT_S),
            ) as response:
                status, reply_headers = response.status, response.headers
                sse = "text/event-stream" in response.headers.get("Content-Type", "")
                if on_text is not None and status < 400 and sse:
                    data = await _read_events(response, on_text, url)
                    return _reply(record, data)
                raw = await response.read()
        except asyncio.TimeoutError:
            raise RequestTimeout(timeout or DEFAULT_TIMEOUT_S) from None
        except aiohttp.ClientError as exc:
            raise APIConnectionError(f"{type(exc).__name__}: {exc}", url) from exc
    finally:
        if own:
            await pool.close()
    if status >= 400:
        error = _status_error(status, raw, reply_headers)
        raise error if record.proxy is None else _proxy_error(record, error, raw)
    reply = _reply(record, _loads(raw))
    if on_text is not None:
        on_text(reply.text)
    return reply


async def _read_events(response: Any, on_text: Callable[[str], None], url: str) -> Any:
    """Read a stream of server-sent events into the body one JSON reply would have had.

    Each ``data:`` line holds a chunk (``choices[0].delta.content``); the last may hold the
    ``usage``; ``data: [DONE]`` ends it. An ``error`` chunk raises ``APIError``; a stream that
    stops before ``[DONE]`` or a ``finish_reason`` was cut off: ``APIConnectionError``.
    """
    parts: list[str] = []
    usage: Any = None
    finish: Any = None
    role_only = False
    ended = False
    async for line in response.content:
        line = line.strip()
        if not line.startswith(b"data:"):
            continue  # blank separators, comments (": keep-alive"), event names
        payload = line[5:].strip()
        if payload == b"[DONE]":
            ended = True
            break
        chunk = _loads(payload)
        if not isinstance(chunk, dict):
            continue
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise APIError(f"the stream reported an error: {message}")
        if chunk.get("usage"):
            usage = chunk["usage"]
        choices = chunk.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        if not isinstance(first, dict):
            continue
        delta = first.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        piece = delta.get("content")
        if isinstance(piece, str) and piece:
            parts.append(piece)
            on_text(piece)
        elif "role" in delta:
            role_only = True
        if first.get("finish_reason"):
            finish = first["finish_reason"]
    if not ended and finish is None:
        got = sum(len(p) for p in parts)
        raise APIConnectionError(f"the stream was cut off before its end ({got} characters)", url)
    if not parts and not role_only and finish is None:
        return {"choices": [], "usage": usage}
    text = "".join(parts) if parts else None
    message = {"role": "assistant", "content": text}
    return {"choices": [{"message": message, "finish_reason": finish}], "usage": usage}


def endpoint(base: str, path: str) -> str:
    """``base`` + ``/path``, a query string kept after it (``http://h/v1?key=...`` ->
    ``http://h/v1/chat/completions?key=...``): a gateway that takes its key in the query."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(base)
    if not parts.query:
        return f"{base.rstrip('/')}/{path}"
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{path}"))


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson refuses what Python's json reads (a lone surrogate escaped as "\\ud800",
        # NaN): a reply that arrived is not lost to the faster parser.
        try:
            return json.loads(raw)
        except ValueError:
            pass
        raise APIError(f"the reply is not JSON ({exc})") from exc


def _reply(record: Resolved, data: Any) -> Any:
    """A ``Reply`` from a decoded body: unknown fields ignored, missing ones unknown."""
    choices = data.get("choices") if isinstance(data, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(first, dict):
        raise ValueError("the provider answered with no choices")
    message = first.get("message")
    message = message if isinstance(message, dict) else {}
    text = message.get("content")
    if text is None and isinstance(first.get("text"), str):
        text = first["text"]  # a completions-style choice: the text is still the reply
    if isinstance(text, list):  # content parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if text is None:
        why = []
        if message.get("refusal"):
            why.append(f"refusal: {str(message['refusal'])[:120]}")
        if message.get("tool_calls"):
            why.append("a tool call instead of text")
        if first.get("finish_reason"):
            why.append(f"finish_reason={first['finish_reason']}")
        detail = f" ({'; '.join(why)})" if why else ""
        raise NoContentError(f"the provider's reply has no message content{detail}")
    prompt, completion, cached = _usage(data.get("usage"))
    cost = math.nan
    if prompt is not None and completion is not None and record.price_known:
        inp, out, cache_read = record.prices
        cost = (prompt - cached) * inp + cached * cache_read + completion * out
    return Reply(redact(str(text)), prompt, completion, cost)


def _usage(usage: Any) -> tuple[int | None, int | None, int]:
    """``(prompt, completion, cached prompt)`` tokens; a usage without prompt tokens was not
    sent (a prompt is never zero tokens): unknown, never 0."""
    if not isinstance(usage, dict):
        return None, None, 0
    prompt, completion = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    if not prompt:
        return None, None, 0
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else None
    return prompt, completion, min(cached or 0, prompt)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if math.isfinite(value) else None
