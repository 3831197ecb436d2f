"""A failed call: whether it is worth a retry, how long the server asked us to wait, and
one readable line for its error row (``describe_error``)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import json
import math
import re
from typing import Any

from ..errors import NbtoolkitError, clip
from ..spec import Model

__all__ = ["describe_error", "retry_hint"]


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
    # A LiteLLM proxy's refusals (openai_http): asking again gives the same answer.
    "BudgetExceededError",
    "ModelNotAllowedError",
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
