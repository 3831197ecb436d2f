"""What one successful call gave back, whichever way it was answered."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NoContentError", "Reply"]


@dataclass
class Reply:
    """What one successful call gave back.

    Token counts are None and ``cost_usd`` NaN when unknown (never 0); ``latency_s`` is set
    only by a provider that knows a better figure than the time the call took (a recording,
    a simulated latency).
    """

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float
    latency_s: float | None = None  # a recorded latency overrides the measured one
    # Seconds to the first streamed text: set by a provider that knows a better figure than
    # the one measured (a simulated model's); None when not streamed or not known.
    ttft_s: float | None = None


class NoContentError(ValueError):
    """A reply with a choice but no text: retried like empty ``choices``, never cached."""
