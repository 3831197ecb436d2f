"""Provider batch APIs (OpenAI's Files + Batches shape) through litellm's batch functions.

``target(model)`` says whether and where a model's calls can go as a batch (or why they
run live); ``submit``, ``retrieve``, ``file_lines`` and ``cancel`` are litellm's
``acreate_file``/``acreate_batch``, ``aretrieve_batch``, ``afile_content`` and
``acancel_batch`` with the model's own base URL and key, never a key read by litellm from
the environment for another host. ``prices(model)`` is the batch price per token.
"""

from __future__ import annotations

import gc
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..spec import Model
from .keys import api_base_of, api_key_for
from .registry import get_litellm, is_offline, litellm_id, quiet
from .resolve import OPENAI_BASE, Resolved, env_key, resolve

__all__ = [
    "BATCH_PROVIDERS",
    "ENDPOINT",
    "LIMITS",
    "BatchState",
    "Target",
    "body_maker",
    "cancel",
    "file_lines",
    "live_prices",
    "prices",
    "release_clients",
    "retrieve",
    "submit",
    "target",
]

ENDPOINT = "/v1/chat/completions"
# litellm's batch functions take these with the OpenAI shape (input file of JSONL request
# lines, an output and an error file). Vertex and Bedrock need a bucket of the user's own.
BATCH_PROVIDERS = ("openai", "azure", "mistral", "xai", "hosted_vllm")
# Per batch: requests and input file bytes (OpenAI's published limits; the others are
# as large or larger, so these are safe for all).
LIMITS = (50_000, 200 * 1024 * 1024)
_NO_BATCH = {
    "anthropic": (
        "litellm has no Anthropic Message Batches support (litellm issue #17265), so these "
        "calls run live at the live price"
    ),
}


@dataclass(frozen=True)
class Target:
    """Where one model's batches go. ``api_key`` is never stored or shown (not in repr)."""

    provider: str
    api_base: str
    wire_model: str
    api_key: str | None = None

    def __repr__(self) -> str:
        return f"Target({self.provider!r}, {self.api_base!r}, {self.wire_model!r})"

    def public(self) -> dict[str, str]:
        return {"provider": self.provider, "api_base": self.api_base, "model": self.wire_model}


def target(model: Model) -> Target | str:
    """The model's batch target, or one line saying why its calls run live instead."""
    if is_offline(model.id):
        return "answered on this machine, so its calls run live (no batch API, no price to halve)"
    record = resolve(model)
    provider = record.provider
    if provider not in BATCH_PROVIDERS:
        return _NO_BATCH.get(
            provider,
            f"litellm has no batch API for provider '{provider}', so these calls run live",
        )
    kwargs = model.litellm_kwargs()
    with quiet():
        wire = get_litellm().get_llm_provider(litellm_id(model))[0]
    base = api_base_of(kwargs, model) or (OPENAI_BASE if provider == "openai" else None)
    if base is None:
        return f"no base URL for provider '{provider}' (set api_base=), so these calls run live"
    key = api_key_for(model, kwargs)
    if key is None:  # the provider's own host: its own key, read as litellm would
        key = env_key(Resolved(model, False, provider, record.litellm_id, "litellm"))
    return Target(provider, str(base).rstrip("/"), str(wire), key)


def body_maker(
    target: Target, model: Model
) -> Callable[[list[dict[str, Any]], dict[str, Any]], dict[str, Any]]:
    """``body(messages, params)``: one request line's body, as the model's live call would
    send it (litellm's parameter mapping, memoised per parameters dict: a run's rows share
    them)."""
    from .openai_http import wire_params

    record = Resolved(
        model,
        False,
        target.provider,
        litellm_id(model),
        "aiohttp",
        target.api_base,
        target.wire_model,
    )

    def body(messages: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        optional, _ = wire_params(record, params)
        return {"model": target.wire_model, "messages": messages, **optional}

    return body


def release_clients() -> None:
    """Put right litellm's leak: for every batch or file call it builds an OpenAI client it
    never closes, whose sockets would each warn (ResourceWarning) when garbage-collected at
    some later, unrelated moment. Collected here, at once: call it after a round of calls
    (a full collection takes about half a second with litellm loaded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _auth(target: Target) -> dict[str, Any]:
    # Always given: left out, litellm would fill them from OPENAI_API_KEY / OPENAI_BASE_URL.
    return {
        "custom_llm_provider": target.provider,
        "api_base": target.api_base,
        "api_key": target.api_key or "no-key-needed",
    }


async def submit(target: Target, lines: bytes, metadata: dict[str, str]) -> tuple[str, str]:
    """Upload ``lines`` (JSONL) and create a batch of them; returns ``(file_id, batch_id)``."""
    litellm = get_litellm()
    with quiet():
        uploaded = await litellm.acreate_file(
            file=("nbtoolkit-batch.jsonl", lines), purpose="batch", **_auth(target)
        )
        batch = await litellm.acreate_batch(
            completion_window="24h",
            endpoint=ENDPOINT,
            input_file_id=uploaded.id,
            metadata=metadata,
            **_auth(target),
        )
    return str(uploaded.id), str(batch.id)


@dataclass(frozen=True)
class BatchState:
    """What a provider says of one batch."""

    status: str
    total: int
    completed: int
    failed: int
    output_file_id: str | None
    error_file_id: str | None
    errors: str | None  # why the whole batch failed, when it did

    @property
    def ended(self) -> bool:
        return self.status in ("completed", "failed", "expired", "cancelled")


async def retrieve(target: Target, batch_id: str) -> BatchState:
    litellm = get_litellm()
    with quiet():
        batch = await litellm.aretrieve_batch(batch_id=batch_id, **_auth(target))
    counts = getattr(batch, "request_counts", None)
    errors = getattr(batch, "errors", None)
    data = getattr(errors, "data", None) or (
        errors.get("data") if isinstance(errors, dict) else None
    )
    reasons = []
    for item in data or []:
        code = getattr(item, "code", None) or (item.get("code") if isinstance(item, dict) else None)
        text = getattr(item, "message", None) or (
            item.get("message") if isinstance(item, dict) else None
        )
        reasons.append(f"{code}: {text}" if code else str(text))
    return BatchState(
        status=str(batch.status),
        total=int(getattr(counts, "total", 0) or 0),
        completed=int(getattr(counts, "completed", 0) or 0),
        failed=int(getattr(counts, "failed", 0) or 0),
        output_file_id=getattr(batch, "output_file_id", None),
        error_file_id=getattr(batch, "error_file_id", None),
        errors="; ".join(reasons) or None,
    )


async def file_lines(target: Target, file_id: str) -> list[dict[str, Any]]:
    """The JSON lines of a batch's output or error file."""
    litellm = get_litellm()
    with quiet():
        content = await litellm.afile_content(file_id=file_id, **_auth(target))
    raw = content.content if hasattr(content, "content") else bytes(content)
    return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]


async def cancel(target: Target, batch_id: str) -> None:
    litellm = get_litellm()
    with quiet():
        await litellm.acancel_batch(batch_id=batch_id, **_auth(target))


def prices(model: Model) -> tuple[float, float, bool]:
    """USD per input and per output token in a batch, and whether that is an estimate.

    litellm's table states batch prices for many models (``input_cost_per_token_batches``,
    ``output_cost_per_token_batches``); otherwise half the live price, marked as an estimate
    (the providers' batch discount). An unknown live price stays unknown (NaN).
    """
    live_in, live_out, _ = resolve(model).prices
    entry = (
        None
        if is_offline(model.id) or "input_cost_per_token" in {**model.params, **model.extra}
        else _entry(model)
    )
    if entry is not None:
        inp, out = (
            entry.get("input_cost_per_token_batches"),
            entry.get("output_cost_per_token_batches"),
        )
        if inp is not None and out is not None:
            return float(inp), float(out), False
    if math.isnan(live_in):
        return math.nan, math.nan, False
    return live_in / 2, live_out / 2, True


def live_prices(model: Model) -> tuple[float, float]:
    """USD per input and per output token of a live call (NaN unknown)."""
    inp, out, _ = resolve(model).prices
    return inp, out


def _entry(model: Model) -> dict[str, Any] | None:
    name = model.id.partition("/")[2]
    cost = get_litellm().model_cost
    found = cost.get(model.id) or cost.get(litellm_id(model)) or cost.get(name)
    return found if isinstance(found, dict) else None
