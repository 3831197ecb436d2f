"""Submitting a job: plan the run as ``orchestrate`` would, write the request lines of every
model that has a batch API into batches within the provider's limits, and record each
batch in the job store before and after it is created."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from .. import providers
from ..errors import ConfigError, redact
from ..plan import Plan, plan_run
from ..providers import batches as provider_batches
from ..spec import Model
from ..store import open_cache
from .store import JobStore, Part, Request

__all__ = ["check_batchable", "line_of", "plan_of", "split", "submit_plan"]


def plan_of(prompt: str, models: Any, options: dict[str, Any]) -> Plan:
    """The run's plan, from ``orchestrate``'s keyword arguments (litellm's among them)."""
    from ..api import option_names

    named = set(option_names())
    # stream= is the live run's display, not part of the plan (check_batchable refuses it).
    given = {k: v for k, v in options.items() if k in named and k != "stream"}
    params = {k: v for k, v in options.items() if k not in named}
    if isinstance(given.get("progress"), str):
        given["progress"] = None  # a display mode, checked where it is shown
    return plan_run(prompt, models, params=params, **given)


def check_batchable(plan: Plan, options: dict[str, Any]) -> None:
    """Refuse, before anything is sent, what a batch cannot do."""
    if options.get("cache") == "replay-only":
        raise ConfigError(
            "cache='replay-only' sends nothing, so there is nothing to batch: drop batch=True "
            "(or use cache='use')"
        )
    if callable(getattr(plan.strategy, "stages", None)):
        raise ConfigError(
            f"strategy={getattr(plan.strategy, 'name', 'cascade')!r} asks its models one stage "
            "after another, and a batch sends every call at once: use another strategy "
            "(e.g. 'vote') with batch=True, or run it live"
        )
    if options.get("stream"):
        raise ConfigError(
            "stream= with batch=True: a batch's replies arrive all at once, so there is nothing "
            "to stream; drop one of them"
        )
    if providers.as_proxy(options.get("proxy")) is not None:  # given, or $NBTOOLKIT_PROXY_URL
        raise ConfigError(
            "batch=True through a LiteLLM proxy is not supported yet: run live through the "
            "proxy (drop batch=True), or submit the batch to the provider without proxy="
        )
    if options.get("max_cost_usd") is not None:
        raise ConfigError(
            "max_cost_usd cannot hold a batch back once it is sent: check the cost first with "
            "nbt.estimate(..., batch=True), then submit without max_cost_usd"
        )


def split(lines: list[bytes], max_requests: int, max_bytes: int) -> list[list[int]]:
    """Positions of ``lines`` grouped into batches of at most ``max_requests`` lines and
    ``max_bytes`` bytes; a single line over ``max_bytes`` is refused."""
    groups: list[list[int]] = []
    size = 0
    for i, line in enumerate(lines):
        if len(line) > max_bytes:
            raise ConfigError(
                f"one request is {len(line):,} bytes, over the batch file limit of "
                f"{max_bytes:,}: shorten the prompt or run it live"
            )
        if not groups or len(groups[-1]) >= max_requests or size + len(line) > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += len(line)
    return groups


async def submit_plan(
    plan: Plan,
    prompt: str,
    models: Sequence[Model | str] | Model | str,
    options: dict[str, Any],
    *,
    store: JobStore,
    max_requests: int | None = None,
) -> tuple[str, dict[str, str]]:
    """Create the job's batches; returns the job id and, by model label, why a model runs
    live instead. Nothing is sent for a call already in the cache."""
    check_batchable(plan, options)
    job = "nbtb-" + uuid.uuid4().hex[:12]
    live: dict[str, str] = {}
    cached = _cached_keys(plan, options)
    # Every model's lines and batches first: a request over a limit is refused before
    # anything is sent, never half-way through a job.
    planned: list[
        tuple[provider_batches.Target, Model, list[Any], list[bytes], list[list[int]]]
    ] = []
    for model in plan.models:
        where = provider_batches.target(model)
        if isinstance(where, str):
            live[model.label] = where
            continue
        leaders: dict[str, Any] = {}
        for call in plan.calls:
            if call.model is model and call.key and call.key not in cached:
                leaders.setdefault(call.key, call)  # duplicate rows: one line, one reply
        calls = list(leaders.values())
        if not calls:
            continue
        body = provider_batches.body_maker(where, model)
        lines = [line_of(f"{job}:{call.index}", body(call.messages, call.params)) for call in calls]
        limit_requests, limit_bytes = provider_batches.LIMITS
        groups = split(lines, min(max_requests or limit_requests, limit_requests), limit_bytes)
        planned.append((where, model, calls, lines, groups))
    store.add_job(job, {"prompt": prompt, "models": models, **options})
    try:
        await _send_all(job, planned, store)
    except asyncio.CancelledError:  # Ctrl-C mid-way: what was sent is the job's
        print(
            f"Stopped while submitting batch job {job}; what was sent goes on at the provider. "
            f"nbt.attach({job!r}).wait() collects it (a part never sent becomes error rows)",
            file=sys.stderr,
            flush=True,
        )
        raise
    return job, live


async def _send_all(job: str, planned: list[Any], store: JobStore) -> None:
    number = 0
    for where, model, calls, lines, groups in planned:
        for group in groups:
            part = Part(number, model.label, where.public(), None, None, "submitting", len(group))
            number += 1
            store.add_part(job, part)
            store.add_requests(
                job,
                [
                    Request(
                        f"{job}:{calls[i].index}",
                        part.part,
                        calls[i].row,
                        calls[i].position,
                        calls[i].sample,
                        calls[i].key,
                        prompt=_user_text(calls[i].messages),
                    )
                    for i in group
                ],
            )
            await send_part(job, part, where, b"".join(lines[i] for i in group), store)


def line_of(custom_id: str, body: dict[str, Any]) -> bytes:
    """One request line of a batch's input file (JSONL)."""
    line = {
        "custom_id": custom_id,
        "method": "POST",
        "url": provider_batches.ENDPOINT,
        "body": body,
    }
    return json.dumps(line, default=str, ensure_ascii=False).encode("utf-8") + b"\n"


async def send_part(
    job: str, part: Part, where: provider_batches.Target, data: bytes, store: JobStore
) -> None:
    """Upload one part's lines and create its batch; a refusal is the part's error."""
    try:
        part.file_id, part.batch_id = await provider_batches.submit(
            where, data, {"nbtoolkit_job": job, "part": str(part.part)}
        )
        part.status = "validating"
    except Exception as exc:
        part.status = "not_submitted"
        part.error = redact(providers.describe_error(exc))
    store.update_part(job, part)


def _cached_keys(plan: Plan, options: dict[str, Any]) -> set[str]:
    if options.get("cache", "use") != "use":
        return set()
    keys = [c.key for c in plan.calls if c.key]
    if not keys:
        return set()
    try:
        return set(open_cache(options.get("cache_path")).get_many(keys))
    except Exception:
        return set()  # an unreadable cache: the calls are batched; the run says so later


def _user_text(messages: list[dict[str, Any]]) -> str:
    text = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    return text if isinstance(text, str) else str(text)
