"""What ``FakeOpenAIServer`` can do wrong (``Fault``), and the small helpers its replies use."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "ALL_FAULTS",
    "CHAT_PATHS",
    "ERROR_BODIES",
    "MODELS_PATHS",
    "RANDOM_FAULTS",
    "Fault",
    "FaultKind",
    "FaultSpec",
    "Reply",
    "echo",
    "format_seconds",
    "messages_of",
    "text_of",
    "to_fault",
]


class Fault(str, enum.Enum):
    """The kinds of fault ``FakeOpenAIServer`` can produce; plain strings are accepted too."""

    RATE_LIMIT = "429"
    """Status 429 with a ``Retry-After`` header and an OpenAI-style error body."""
    SERVER_ERROR = "500"
    """Status 500 with an OpenAI-style error body."""
    UNAVAILABLE = "503"
    """Status 503 with an OpenAI-style error body."""
    HANG = "hang"
    """No answer for ``hang_seconds`` (or until ``stop()``), then the connection is closed."""
    RESET = "reset"
    """The connection is reset (TCP RST) without any response."""
    MALFORMED = "malformed"
    """Status 200 with a body that is not valid JSON."""
    EMPTY_CHOICES = "empty_choices"
    """Status 200 with a valid completion object whose ``choices`` is empty."""
    NULL_CONTENT = "null_content"
    """Status 200 with one choice whose message ``content`` is null (as a refusal)."""
    BAD_REQUEST = "400"
    """Status 400 with an OpenAI-style ``invalid_request_error`` body (not worth a retry)."""
    UNAUTHORIZED = "401"
    """Status 401 with an OpenAI-style ``invalid_api_key`` body."""
    CONTEXT_LENGTH = "context_length"
    """Status 400 with OpenAI's ``context_length_exceeded`` body."""
    ODD_SHAPE = "odd_shape"
    """Status 200 with the reply in an unusual body: no ``id``/``created``/``object``,
    unknown fields and values of unexpected types around the choice (as some gateways send)."""
    STREAM_CUT = "stream_cut"
    """A streamed reply cut off halfway: the first half of its pieces, then the connection is
    reset (no ``[DONE]``, no end of the chunked body). Asked without streaming: a reset."""

    def __str__(self) -> str:
        return self.value


FaultKind = Fault | str
Reply = str | Callable[[dict[str, Any]], str]
FaultSpec = Mapping[int, FaultKind] | Callable[[int, dict[str, Any]], FaultKind | None]

ALL_FAULTS: tuple[str, ...] = tuple(f.value for f in Fault)
#: What random faults (``fault_rate``) are drawn from unless ``fault_kinds`` says otherwise:
#: the transient ones, which a retry can get past.
RANDOM_FAULTS: tuple[str, ...] = (
    "429",
    "500",
    "503",
    "hang",
    "reset",
    "malformed",
    "empty_choices",
    "null_content",
)
CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
MODELS_PATHS = frozenset({"/v1/models", "/models"})

ERROR_BODIES: dict[Fault, tuple[int, dict[str, Any]]] = {
    Fault.RATE_LIMIT: (
        429,
        {
            "message": "Rate limit reached (fake server). Please try again later.",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        },
    ),
    Fault.SERVER_ERROR: (
        500,
        {
            "message": "The server had an error while processing your request (fake server).",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    ),
    Fault.BAD_REQUEST: (
        400,
        {
            "message": "Invalid value for 'temperature' (fake server).",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": None,
        },
    ),
    Fault.UNAUTHORIZED: (
        401,
        {
            "message": "Incorrect API key provided (fake server).",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        },
    ),
    Fault.CONTEXT_LENGTH: (
        400,
        {
            "message": "This model's maximum context length is 8192 tokens. However, your "
            "messages resulted in 9000 tokens (fake server).",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        },
    ),
    Fault.UNAVAILABLE: (
        503,
        {
            "message": "The server is overloaded or not ready yet (fake server).",
            "type": "server_error",
            "param": None,
            "code": "service_unavailable",
        },
    ),
}


def to_fault(kind: FaultKind) -> Fault:
    try:
        return Fault(kind)
    except ValueError:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {ALL_FAULTS}") from None


def text_of(content: Any) -> str:
    # Multimodal messages carry a list of parts; only the text parts count as words.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str))
    return "" if content is None else str(content)


def messages_of(request: dict[str, Any]) -> list[dict[str, Any]]:
    messages = request.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, dict)]


def echo(request: dict[str, Any]) -> str:
    users = [m for m in messages_of(request) if m.get("role") == "user"]
    return "echo: " + (text_of(users[-1].get("content")) if users else "")


def format_seconds(seconds: float) -> str:
    # "1" rather than "1.0": some clients parse Retry-After as an integer.
    return f"{seconds:g}"
