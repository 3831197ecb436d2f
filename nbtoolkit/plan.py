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
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    StringConstraints,
    ValidationError,
    field_validator,
)

from . import extract as extract_mod
from . import providers, strategies
from .cache import MODES, KeyMaker
from .errors import ConfigError, ExtractorError, protect, protect_url
from .providers import recordings as recordings_mod
from .reliability import resolve_threshold
from .runner import Call
from .spec import (
    Flag,
    Model,
    Number,
    Text,
    Whole,
    as_model,
    as_models,
    check_litellm_params,
    invalid_argument,
)
from .templating import Template, rows_of

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
    # The run's cache keys, each messages list and parameters dict encoded once: for the keys
    # of offline calls too (duplicate rows, the manifest), which have none of their own.
    keys: KeyMaker = field(default_factory=KeyMaker)


PathLike = Text | InstanceOf[os.PathLike]  # type: ignore[type-arg]
# "auto:0.05": the threshold for that error, from the strategy's calibration (resolve_threshold).
AutoThreshold = Annotated[Text, StringConstraints(pattern=r"^\s*auto:")]


class RunOptions(BaseModel):
    """The arguments of ``orchestrate``, checked in one place before anything is sent: a
    wrong type or value is one ``ConfigError`` naming the argument and what it takes."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    data: InstanceOf[pd.DataFrame] | None = Field(
        None,
        description="a pandas DataFrame (one run per row), or None; for a list of dicts "
        "use pd.DataFrame(records)",
    )
    variables: InstanceOf[Mapping] | None = Field(  # type: ignore[type-arg]
        None, description="a dict of name -> value, or None"
    )
    strategy: Any = Field("vote", description="a strategy name such as 'vote', or a strategy")
    extract: Any = None
    samples: Whole = Field(1, ge=1, description="a whole number, 1 or more (asks per model)")
    temperature: Number | None = Field(None, ge=0, description="a number, 0 or more, or None")
    seed: Whole | None = Field(None, description="a whole number, or None")
    max_tokens: Whole | None = Field(None, gt=0, description="a whole number above 0, or None")
    concurrency: Whole = Field(16, ge=1, description="a whole number, 1 or more (calls at once)")
    timeout: Number | None = Field(
        None, gt=0, description="a positive number of seconds, or None for no limit"
    )
    retries: Whole = Field(2, ge=0, description="a whole number, 0 or more")
    cache: Literal["use", "refresh", "off", "replay-only"] = Field(
        "use", description="a cache mode: one of " + ", ".join(repr(m) for m in MODES)
    )
    recordings: PathLike | list[PathLike] | tuple[PathLike, ...] | None = Field(
        None, description="a recordings file path, a list of them, or None"
    )
    system: Text | None = Field(None, description="a string (the system message), or None")
    strict: Flag = Field(False, description="True or False")
    schema_: Any = Field(None, alias="schema", description="a pydantic model class, or None")
    repair: Whole = Field(0, ge=0, description="a whole number of re-asks, 0 or more")
    repair_token_budget: Whole = Field(
        8000, ge=0, description="a whole number of tokens, 0 or more"
    )
    max_cost_usd: Number | None = Field(
        None, ge=0, description="0 or more dollars (a finite number), or None for no budget"
    )
    confidence_threshold: Annotated[Number, Field(ge=0, le=1)] | AutoThreshold = Field(
        0.5, description="a number from 0 to 1, or 'auto:<target error>' such as 'auto:0.05'"
    )
    progress: Callable[..., Any] | None = Field(None, description="a function, or None")
    audit: Flag | PathLike = Field(
        True, description="True, False, or the path of the audit log to write"
    )
    cache_path: PathLike | None = Field(None, description="a file path, or None")
    on_start: Callable[..., Any] | None = Field(None, description="a function, or None")
    transport: Literal["auto", "litellm", "aiohttp"] = Field(
        "auto",
        description="how calls are carried: 'auto', 'litellm' or 'aiohttp' (for the models "
        "left on transport='auto')",
    )
    cache_url: Text | None = Field(
        None, description="a Redis URL such as 'redis://host:6379/0', or None"
    )
    proxy: Any = Field(None, description="a LiteLLM proxy's URL, a nbtoolkit.Proxy, or None")

    @field_validator("strategy")
    @classmethod
    def _some_strategy(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("no strategy")
        return value

    @field_validator("schema_")
    @classmethod
    def _pydantic_class(cls, value: Any) -> Any:
        if value is not None and not (
            isinstance(value, type) and hasattr(value, "model_json_schema")
        ):
            raise ValueError("not a pydantic model class")
        return value


def check_options(**options: Any) -> RunOptions:
    """Check ``orchestrate``'s arguments; raises ``ConfigError`` naming the first wrong one."""
    try:
        checked = RunOptions(**options)
    except ValidationError as exc:
        message = invalid_argument(exc, RunOptions)
        raise ConfigError(message) from None
    data = checked.data
    if data is not None and not data.columns.is_unique:
        twice = sorted({str(c) for c in data.columns[data.columns.duplicated()]})
        raise ConfigError(
            f"data= has two columns named {', '.join(map(repr, twice))}: a prompt's {{name}} "
            "could not tell them apart; rename one (df.columns = [...])"
        )
    return checked


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
    confidence_threshold: float | str = 0.5,
    params: dict[str, Any] | None = None,
    **checked_only: Any,
) -> Plan:
    """Check every argument and build the calls; raises ``ConfigError`` subclasses only.

    ``checked_only``: the rest of ``orchestrate``'s arguments (``progress``, ``audit``,
    ``cache_path``, ``on_start``, ``repair_token_budget``), checked here with the others.
    """
    template = Template(prompt)
    opts = check_options(
        data=data,
        variables=variables,
        strategy=strategy,
        extract=extract,
        samples=samples,
        temperature=temperature,
        seed=seed,
        max_tokens=max_tokens,
        concurrency=concurrency,
        timeout=timeout,
        retries=retries,
        cache=cache,
        recordings=recordings,
        system=system,
        strict=strict,
        schema=schema,
        repair=repair,
        max_cost_usd=max_cost_usd,
        confidence_threshold=confidence_threshold,
        **checked_only,
    )
    # After the type checks, so a wrong type is named as such; before any call is planned.
    check_encodable(prompt, data, variables, system)
    providers.use_transport(opts.transport)  # for this run's models left on "auto"
    proxy = providers.as_proxy(opts.proxy)
    providers.use_proxy(proxy)  # resolve() sends this run's online models through it
    samples, seed = opts.samples, opts.seed
    temperature, max_tokens = opts.temperature, opts.max_tokens
    check_litellm_params(params or {}, "orchestrate()", also=RunOptions.model_fields)
    panel = as_models(models)
    if schema is not None:
        extract = schema if extract is None else [*_as_list(extract), schema]
    extractor = build_extractor(extract)
    chosen = _strategy(strategy, extractor)
    threshold = resolve_threshold(confidence_threshold, chosen)
    variables = dict(variables or {})
    columns = [str(c) for c in data.columns] if data is not None else []
    template.check(set(columns) | set(variables))

    everyone = [*panel, *(as_model(f) for m in panel for f in m.fallbacks)]
    if getattr(chosen, "model", None) is not None:
        everyone.append(as_model(chosen.model))
    # Whatever authenticates a call is hidden wherever it shows up again, also without its
    # name beside it (a server echoing a header's value in its reply).
    run_headers = (params or {}).get("extra_headers")
    for value in run_headers.values() if isinstance(run_headers, dict) else ():
        protect(str(value))
    for model in everyone:
        if model.api_key_env:
            protect(os.environ.get(model.api_key_env))
        own = model.litellm_kwargs()
        for value in (own.get("extra_headers") or {}).values():
            protect(str(value))
        protect_url(own.get("api_base"))
    store_key = None
    if any(m.id.startswith("replay/") for m in everyone):
        paths = recordings_mod.resolve_paths(recordings)
        if paths:
            store_key = recordings_mod.load(paths).key
    options = {"recordings": recordings}
    notes: list[str] = []
    if proxy is None:
        # Every missing key in one line (read from litellm's files, milliseconds) before
        # check_model names them one model at a time; through a proxy, the proxy's key counts.
        from .providers.env_keys import check_keys

        check_keys(everyone)
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

    rows = rows_of(data)
    instruction = (
        SCHEMA_INSTRUCTION.format(schema=json.dumps(schema.model_json_schema(), indent=1))  # type: ignore[attr-defined]
        if schema is not None
        else ""
    )
    prompts: list[str] = []
    calls: list[Call] = []
    # A call's parameters depend on its model and sample, not its row: built once and
    # shared (read-only) by the rows, so each is encoded once for the cache keys too.
    per_model = [
        (
            position,
            model,
            not providers.is_offline(model.id),
            [
                providers.call_params(
                    model, run_params, sample=sample, seed=seed, store_key=store_key, schema=schema
                )
                for sample in range(samples)
            ],
        )
        for position, model in enumerate(panel)
    ]
    keys = KeyMaker()
    for row_number, values in enumerate(rows):
        _check_missing(template, values, row_number)
        text = template.render(values, variables)
        prompts.append(text)
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": text + instruction}
        ]
        for position, model, live, samples_params in per_model:
            for sample, params in enumerate(samples_params):
                call = Call(len(calls), row_number, model, position, sample, messages, params)
                if live:
                    call.key = keys.key(model.id, messages, params, sample, model.label)
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
        confidence_threshold=threshold,
        notes=notes,
        keys=keys,
    )


def _check_missing(template: Template, values: dict[str, Any], row: int) -> None:
    """A missing value would reach the model as the text "nan": say so instead."""
    for name in template.fields:
        if name in values and _is_missing(values[name]):
            raise ConfigError(
                f"row {row}: column '{name}' is missing (NaN/None) and the prompt uses {{{name}}}: "
                f"fill it (data.fillna(...)) or drop those rows (data.dropna(subset=['{name}']))"
            )


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if type(value) is str:
        return False
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


def build_extractor(spec: Any) -> Any:
    """``extract.build_extractor``, with "did you mean" for a misspelt name
    (``extract="numbr"``): the one place every front end builds its answer reader."""
    try:
        return extract_mod.build_extractor(spec)
    except ExtractorError as exc:
        from .suggest import did_you_mean

        words = [w for w in (spec if isinstance(spec, list) else [spec]) if isinstance(w, str)]
        message = str(exc)
        bad = next((w for w in words if message.startswith(f"unknown extract={w!r}.")), None)
        if bad is None:
            raise
        head = f"unknown extract={bad!r}."
        hint = did_you_mean(bad.split(":")[0], extract_mod.names())
        if not hint:
            raise
        raise ExtractorError(head + hint + message[len(head) :]) from None


def _strategy(spec: Any, extractor: Callable[[Any], Any]) -> Any:
    chosen = strategies.get(spec)
    if hasattr(chosen, "extractor"):
        # An aggregator's reply is read like the panel's; a copy keeps the user's object as is.
        chosen = copy.copy(chosen)
        chosen.extractor = extractor
    return chosen


def _as_list(spec: Any) -> list[Any]:
    return list(spec) if isinstance(spec, (list, tuple)) else [spec]


def check_encodable(
    prompt: str, data: Any, variables: Mapping[str, Any] | None, system: str | None
) -> None:
    """Text that cannot be sent (not encodable as UTF-8: a lone surrogate such as "\\ud800")
    is refused before any call, naming where it is."""

    def bad(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False

    def refuse(where: str) -> None:
        raise ConfigError(
            f"{where} holds text that cannot be sent (not valid Unicode: a lone surrogate "
            "such as '\\ud800'); fix it, e.g. value.encode('utf-8', 'replace').decode()"
        )

    for name, value in (("prompt", prompt), ("system", system)):
        if bad(value):
            refuse(name)
    for name, value in (variables or {}).items():
        if bad(value):
            refuse(f"variables[{name!r}]")
    if isinstance(data, pd.DataFrame):
        for position, column in enumerate(data.columns):
            values = data.iloc[:, position]
            if values.dtype != object and not pd.api.types.is_string_dtype(values.dtype):
                continue
            for row, value in enumerate(values.tolist()):
                if bad(value):
                    refuse(f"data row {row} (index {data.index[row]!r}), column {column!r}")
