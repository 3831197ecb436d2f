"""Checking a run's arguments and planning its calls, before anything is sent or written.

Every user mistake surfaces here as a ``ConfigError`` subclass with one line saying what to
fix; ``plan_run`` returns a ``Plan`` only when the whole run can go.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from . import extract as extract_mod
from . import providers, strategies
from .cache import call_key, check_mode
from .errors import ConfigError, protect
from .providers import recordings as recordings_mod
from .runner import Call
from .spec import Model, as_model, as_models, check_litellm_params
from .templating import Template

SCHEMA_INSTRUCTION = (
    "\n\nReply with only a JSON object that matches this JSON schema:\n```json\n{schema}\n```"
)


@dataclass
class Plan:
    """A checked run, ready to go: the calls and everything needed to read their results."""

    template: Template
    models: tuple[Model, ...]
    data: pd.DataFrame | None
    prompts: list[str]
    calls: list[Call]
    extractor: Callable[[Any], Any]
    strategy: Any
    strict: bool
    seed: int | None
    run_params: dict[str, Any]
    confidence_threshold: float
    store_key: str | None = None
    schema: type | None = None
    notes: list[str] = field(default_factory=list)


def plan_run(
    prompt: str,
    models: Sequence[Model | str] | Model | str,
    *,
    data: pd.DataFrame | None = None,
    variables: Mapping[str, Any] | None = None,
    strategy: Any = "vote",
    extract: Any = None,
    samples: int = 1,
    temperature: float | None = None,
    seed: int | None = None,
    max_tokens: int | None = None,
    concurrency: int = 16,
    timeout: float | None = None,
    retries: int = 2,
    cache: str = "use",
    recordings: Any = None,
    system: str | None = None,
    strict: bool = False,
    schema: type | None = None,
    repair: int = 0,
    max_cost_usd: float | None = None,
    confidence_threshold: float = 0.5,
    params: dict[str, Any] | None = None,
) -> Plan:
    """Check every argument and build the calls; raises ``ConfigError`` subclasses only."""
    check_litellm_params(params or {}, "orchestrate()")
    panel = as_models(models)
    template = Template(prompt)
    if data is not None and not isinstance(data, pd.DataFrame):
        raise ConfigError(
            f"data= must be a pandas DataFrame (one run per row), not {type(data).__name__}; "
            "for a list of dicts use pd.DataFrame(records)"
        )
    if variables is not None and not isinstance(variables, Mapping):
        raise ConfigError(
            f"variables= must be a dict of name -> value, not {type(variables).__name__}"
        )
    _positive("concurrency", concurrency)
    _positive("samples", samples)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries={retries!r} must be 0 or more")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"timeout={timeout} must be a positive number of seconds, or None")
    if max_cost_usd is not None and not max_cost_usd >= 0:
        raise ConfigError(f"max_cost_usd={max_cost_usd} must be 0 or more dollars")
    if not 0 <= confidence_threshold <= 1:
        raise ConfigError(f"confidence_threshold={confidence_threshold} must be between 0 and 1")
    if isinstance(repair, bool) or not isinstance(repair, int) or repair < 0:
        raise ConfigError(f"repair={repair!r} must be 0 or more re-asks")
    if schema is not None and not (
        isinstance(schema, type) and hasattr(schema, "model_json_schema")
    ):
        raise ConfigError(f"schema= must be a pydantic model class, not {schema!r}")
    check_mode(cache)
    if schema is not None:
        extract = schema if extract is None else [*_as_list(extract), schema]
    extractor = extract_mod.build_extractor(extract)
    chosen = _strategy(strategy, extractor)
    variables = dict(variables or {})
    columns = [str(c) for c in data.columns] if data is not None else []
    template.check(set(columns) | set(variables))

    everyone = [*panel, *(as_model(f) for m in panel for f in m.fallbacks)]
    if getattr(chosen, "model", None) is not None:
        everyone.append(as_model(chosen.model))
    for model in everyone:
        if model.api_key_env:
            protect(os.environ.get(model.api_key_env))
    store_key = None
    if any(m.id.startswith("replay/") for m in everyone):
        paths = recordings_mod.resolve_paths(recordings)
        if paths:
            store_key = recordings_mod.load(paths).key
    options = {"recordings": recordings}
    notes: list[str] = []
    for model in panel:
        providers.check_model(model, options)
        for fallback in model.fallbacks:
            providers.check_model(as_model(fallback), options)
    if getattr(chosen, "model", None) is not None:
        providers.check_model(as_model(chosen.model), options)
    if max_cost_usd is not None:
        unpriced = [m.label for m in panel if not providers.price_known(m)]
        if unpriced:
            notes.append(f"max_cost_usd cannot count {', '.join(unpriced)}: their price is unknown")

    run_params: dict[str, Any] = {}
    if temperature is not None:
        run_params["temperature"] = temperature
    if max_tokens is not None:
        run_params["max_tokens"] = max_tokens
    if seed is not None:
        run_params["seed"] = seed
    run_params.update(params or {})

    rows = data.to_dict("records") if data is not None else [{}]
    instruction = (
        SCHEMA_INSTRUCTION.format(schema=json.dumps(schema.model_json_schema(), indent=1))  # type: ignore[attr-defined]
        if schema is not None
        else ""
    )
    prompts: list[str] = []
    calls: list[Call] = []
    for row_number, row in enumerate(rows):
        values = {str(k): v for k, v in row.items()}
        _check_missing(template, values, row_number)
        text = template.render(values, variables)
        prompts.append(text)
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": text + instruction}
        ]
        for position, model in enumerate(panel):
            for sample in range(samples):
                params = providers.call_params(
                    model, run_params, sample=sample, seed=seed, store_key=store_key, schema=schema
                )
                call = Call(len(calls), row_number, model, position, sample, messages, params)
                if not providers.is_offline(model.id):
                    call.key = call_key(model.id, messages, params, sample, model.label)
                calls.append(call)
    _check_context(panel, calls)
    return Plan(
        store_key=store_key,
        schema=schema,
        template=template,
        models=panel,
        data=data,
        prompts=prompts,
        calls=calls,
        extractor=extractor,
        strategy=chosen,
        strict=strict,
        seed=seed,
        run_params=run_params,
        confidence_threshold=confidence_threshold,
        notes=notes,
    )


def _check_missing(template: Template, values: dict[str, Any], row: int) -> None:
    """A missing value would reach the model as the text "nan": say so instead."""
    for name in template.names:
        if name in values and _is_missing(values[name]):
            raise ConfigError(
                f"row {row}: column '{name}' is missing (NaN/None) and the prompt uses {{{name}}}: "
                f"fill it (data.fillna(...)) or drop those rows (data.dropna(subset=['{name}']))"
            )


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False  # a list or array cell: not a single missing value


def _check_context(panel: tuple[Model, ...], calls: list[Call]) -> None:
    """Refuse a prompt longer than a model's context window, before any call is paid for."""
    for model in panel:
        limit = providers.context_window(model)
        if limit is None:
            continue
        seen: set[int] = set()
        for call in calls:
            if call.model is not model or id(call.messages) in seen:
                continue
            seen.add(id(call.messages))
            chars = sum(len(str(m.get("content", ""))) for m in call.messages)
            if chars < limit:
                continue  # a token is at least one character: this one cannot be too long
            tokens = providers.count_tokens(model, call.messages)
            if tokens > limit:
                raise ConfigError(
                    f"row {call.row}: the prompt is {tokens} tokens, longer than {model.label}'s "
                    f"context window of {limit}: shorten it, or use a model with a longer window"
                )


def _strategy(spec: Any, extractor: Callable[[Any], Any]) -> Any:
    chosen = strategies.get(spec)
    if hasattr(chosen, "extractor"):
        # An aggregator's reply is read like the panel's; a copy keeps the user's object as is.
        chosen = copy.copy(chosen)
        chosen.extractor = extractor
    return chosen


def _as_list(spec: Any) -> list[Any]:
    return list(spec) if isinstance(spec, (list, tuple)) else [spec]


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name}={value!r} must be a positive whole number")
