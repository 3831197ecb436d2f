"""Collecting a finished batch: every request line becomes a reply or an error with the
provider's reason, stored with the job and (replies only) written to the cache at once, so
a re-run or a ``replay-only`` report gives the same numbers without a call."""

from __future__ import annotations

import math
from typing import Any

from ..cache import Entry
from ..calls import Outcome
from ..errors import redact
from ..providers import batches as provider_batches
from ..spec import Model
from .store import JobStore, Part, Request

__all__ = ["as_outcome", "collect_part", "read_lines"]


def _reason(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        message = error.get("message") or "no message"
        return f"{message} ({code})" if code else str(message)
    return str(body)[:300]


def read_lines(
    part: Part,
    requests: dict[str, Request],
    output: list[dict[str, Any]],
    errors: list[dict[str, Any]],
    prices: tuple[float, float],
    live_prices: tuple[float, float],
) -> list[Request]:
    """Fill each request of ``part`` from the batch's output and error lines."""
    where = f"batch {part.batch_id}"
    done: list[Request] = []
    for line in [*output, *errors]:
        request = requests.get(str(line.get("custom_id")))
        if request is None or request.part != part.part:
            continue  # not this part's: a line from another job can never be taken for ours
        response = line.get("response") or {}
        status = response.get("status_code")
        body = response.get("body")
        if line.get("error"):
            request.error = f"BatchRequestFailed: {_reason({'error': line['error']})}, {where}"
        elif status != 200 or not isinstance(body, dict):
            request.error = f"BatchRequestFailed: status {status}: {_reason(body)}, {where}"
        else:
            choices = body.get("choices") or []
            message = choices[0].get("message") if choices else None
            content = message.get("content") if isinstance(message, dict) else None
            if content is None:
                request.error = (
                    f"NoContentError: the provider's reply has no message content, {where}"
                )
            else:
                request.output = redact(str(content))
                usage = body.get("usage") or {}
                prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
                # A usage without prompt tokens was not sent (see providers._sent_usage).
                if prompt:
                    request.prompt_tokens = int(prompt)
                    request.completion_tokens = int(completion or 0)
                    request.cost_usd = _cost(prices, request)
                    request.live_cost_usd = _cost(live_prices, request)
        done.append(request)
    seen = {r.custom_id for r in done}
    for request in requests.values():
        if request.part == part.part and request.custom_id not in seen:
            why = part.error or "the provider returned no line for this request"
            kind = "".join(w.capitalize() for w in part.status.split("_"))
            request.error = f"Batch{kind}: {why}, {where}"
            done.append(request)
    return done


def _cost(prices: tuple[float, float], request: Request) -> float | None:
    value = prices[0] * (request.prompt_tokens or 0) + prices[1] * (request.completion_tokens or 0)
    return None if math.isnan(value) else value


async def collect_part(
    job: str,
    part: Part,
    model: Model,
    target: provider_batches.Target,
    state: provider_batches.BatchState,
    store: JobStore,
    cache: Any,
    cache_mode: str,
) -> None:
    """Read an ended batch's files, store every request's fate, cache the replies."""
    output = (
        await provider_batches.file_lines(target, state.output_file_id)
        if state.output_file_id
        else []
    )
    errors = (
        await provider_batches.file_lines(target, state.error_file_id)
        if state.error_file_id
        else []
    )
    requests = {r.custom_id: r for r in store.requests(job, part.part)}
    batch_in, batch_out, _ = provider_batches.prices(model)
    live = provider_batches.live_prices(model)
    done = read_lines(part, requests, output, errors, (batch_in, batch_out), live)
    store.record(job, done)
    if cache is not None and cache_mode in ("use", "refresh"):
        for request in done:
            if request.output is None:
                continue  # errors are never cached
            try:
                cache.put(
                    Entry(
                        key=request.key,
                        model=model.id,
                        prompt=request.prompt,
                        output=request.output,
                        prompt_tokens=request.prompt_tokens,
                        completion_tokens=request.completion_tokens,
                        cost_usd=request.cost_usd,
                        latency_s=None,
                    )
                )
            except Exception as exc:
                part.error = f"replies not cached: {redact(str(exc))[:200]}"
                break
    part.collected = True
    store.update_part(job, part)


def as_outcome(request: Request) -> Outcome:
    """A collected request as the runner's outcome: sent once, billed at the batch price."""
    return Outcome(
        output=request.output,
        error=request.error if request.output is None else None,
        latency_s=math.nan,  # a batch has no per-request latency
        prompt_tokens=request.prompt_tokens,
        completion_tokens=request.completion_tokens,
        cost_usd=(
            request.cost_usd
            if request.cost_usd is not None
            else (0.0 if request.output is None else math.nan)
        ),
        attempts=1,
    )
