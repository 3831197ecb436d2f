"""What a run is made of: frozen, validated options that reject unknown keys.

>>> Model("gpt-4o-mini", temperature=0.2, weight=2)
Model('gpt-4o-mini', temperature=0.2, weight=2.0)
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
)

from .errors import ModelError, clip, public


def _whole(value: Any) -> Any:
    # numpy's integers (a count taken from a DataFrame) are whole numbers too; bool is not.
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def _real(value: Any) -> Any:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value


def _flag(value: Any) -> Any:
    return bool(value) if type(value).__name__ == "bool_" else value  # numpy's bool


# The argument types of the public API: strict (the string "3" is not a number, 2.5 is not a
# whole number, True is neither), and NaN or infinity is no number of seconds or dollars.
Whole = Annotated[int, BeforeValidator(_whole), Strict()]
Number = Annotated[float, BeforeValidator(_real), Strict(), AllowInfNan(False)]
Flag = Annotated[bool, BeforeValidator(_flag), Strict()]
Text = Annotated[str, Strict()]


def invalid_argument(exc: ValidationError, model: type[BaseModel], where: str = "") -> str:
    """One line for the first error of ``exc``: ``[where: ]name=value: must be <what>``, the
    expectation taken from the field's description."""
    first = exc.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    field = model.model_fields.get(name) or next(
        (f for f in model.model_fields.values() if f.alias == name), None
    )
    expected = field.description if field is not None and field.description else first["msg"]
    value = first.get("input")
    shown = clip(repr(value), 80, "…") if _plain(value) else f"a {type(value).__name__}"
    prefix = f"{where}: " if where else ""
    return f"{prefix}{name}={shown}: must be {expected}"


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, tuple, dict, type))


# Types of the litellm parameters whose type is plain; a wrong one would fail every call.
class _TypedParams(BaseModel):
    model_config = ConfigDict(extra="allow")

    top_p: Number | None = Field(None, ge=0, le=1, description="a number between 0 and 1")
    top_k: Whole | None = Field(None, gt=0, description="a whole number above 0")
    presence_penalty: Number | None = Field(None, description="a number (-2 to 2)")
    frequency_penalty: Number | None = Field(None, description="a number (-2 to 2)")
    stop: Text | list[Text] | None = Field(None, description="a string or a list of strings")
    logprobs: Flag | None = Field(None, description="True or False")
    top_logprobs: Whole | None = Field(None, ge=0, description="a whole number, 0 or more")
    max_completion_tokens: Whole | None = Field(None, gt=0, description="a whole number above 0")
    user: Text | None = Field(None, description="a string")
    reasoning_effort: Text | None = Field(None, description="a string such as 'low'")
    parallel_tool_calls: Flag | None = Field(None, description="True or False")
    extra_headers: dict[Text, Text] | None = Field(
        None, description="a dict of header name -> value, both strings"
    )
    drop_params: Flag | None = Field(None, description="True or False")


# Keyword arguments litellm.acompletion takes that nbtoolkit passes through untouched.
# Anything else is a typo until proven otherwise; the rare exotic one goes in ``extra={...}``.
LITELLM_PARAMS = frozenset(
    {
        "top_p",
        "top_k",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "reasoning_effort",
        "thinking",
        "user",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_completion_tokens",
        "api_version",
        "extra_headers",
        "extra_body",
        "drop_params",
    }
)

#: How a model's calls are carried: "auto" (the lean aiohttp client for OpenAI-compatible
#: endpoints, litellm for the rest), "litellm" (always litellm.acompletion) or "aiohttp"
#: (the lean client; refused for a model that cannot take it). See providers/resolve.py.
TRANSPORTS = ("auto", "litellm", "aiohttp")
Transport = Literal["auto", "litellm", "aiohttp"]
_TRANSPORT_HELP = "one of 'auto', 'litellm' or 'aiohttp'"

# Parameters nbtoolkit owns itself; passing them as litellm params would fight the runner.
_OWNED = {
    "n": "use samples=N: each sample is its own cached call",
    "api_key": "set the key in an environment variable and pass api_key_env='NAME', "
    "so the key never lands in a cache, log or notebook",
    "stream": "nbtoolkit collects whole replies",
    "num_retries": "use retries=N",
    "max_retries": "use retries=N",
    "mock_response": "use a 'sim/...' model or recordings for offline runs",
}


def check_litellm_params(
    params: dict[str, Any], where: str, also: Iterable[str] = ()
) -> dict[str, Any]:
    """Reject keyword arguments that are not litellm parameters, naming the fix; ``also``:
    the caller's own arguments, suggested for a misspelt one ('temprature')."""
    for key in params:
        if key in _OWNED:
            raise ModelError(f"{where}: '{key}' is not accepted: {_OWNED[key]}.")
        if key not in LITELLM_PARAMS:
            from .suggest import did_you_mean

            known = ", ".join(sorted(LITELLM_PARAMS))
            raise ModelError(
                f"{where}: unknown keyword argument '{key}'."
                f"{did_you_mean(key, [*LITELLM_PARAMS, *also])} "
                f"Known litellm parameters: {known}; "
                "pass anything else as extra={...}."
            )
    try:
        _TypedParams(**params)
    except ValidationError as exc:
        raise ModelError(invalid_argument(exc, _TypedParams, where)) from None
    return params


# What an environment variable's name looks like; api_key_env takes a name, never a key.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Model(BaseModel):
    """One model of a panel: a litellm model id plus its own options.

    >>> Model("openai/my-local", api_base="http://127.0.0.1:8000/v1", api_key_env="LOCAL_KEY")
    Model('openai/my-local', api_base='http://127.0.0.1:8000/v1', api_key_env='LOCAL_KEY')
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Text = Field(
        min_length=1,
        description="a litellm model id without spaces, e.g. 'gpt-4o-mini' or 'openai/my-model'",
    )
    # How the model is labelled in frames; the id by default.
    name: Text | None = Field(default=None, description="a string, or None")
    temperature: Number | None = Field(default=None, ge=0, description="a number, 0 or more")
    max_tokens: Whole | None = Field(default=None, gt=0, description="a whole number above 0")
    api_base: Text | None = Field(
        default=None, description="the endpoint's URL, e.g. 'http://localhost:8000/v1'"
    )
    api_key_env: Text | None = Field(
        default=None,
        description="the NAME of the environment variable holding the key (e.g. 'MY_KEY'), "
        "never the key itself",
    )
    weight: Number = Field(default=1.0, ge=0, description="a number, 0 or more")
    max_concurrency: Whole | None = Field(
        default=None, gt=0, description="a whole number above 0, or None"
    )
    timeout: Number | None = Field(default=None, gt=0, description="seconds above 0, or None")
    fallbacks: tuple[Model | Text, ...] = Field(
        default=(), description="a list of model ids or Model objects"
    )
    # How the calls are carried (not part of a cache key: either way gives the same reply).
    transport: Transport = Field(default="auto", description=_TRANSPORT_HELP)
    params: dict[Text, Any] = Field(default_factory=dict, description="a dict")
    extra: dict[Text, Any] = Field(default_factory=dict, description="a dict")

    def __init__(self, id: str, /, **options: Any) -> None:
        known = set(type(self).model_fields) - {"id", "params"}
        given = options.pop("params", {}) or {}
        if not isinstance(given, Mapping):
            raise ModelError(
                f"Model({id!r}): params= takes a dict of litellm parameters such as "
                f"{{'top_p': 0.9}}, not {type(given).__name__}"
            )
        params = dict(given)
        for key in [k for k in options if k not in known]:
            params[key] = options.pop(key)
        check_litellm_params(params, f"Model({id!r})", also=Model.model_fields)
        # extra= is the escape hatch for litellm kwargs, but never for a key's value.
        if "api_key" in (options.get("extra") or {}):
            raise ModelError(
                f"Model({id!r}): extra={{'api_key': ...}} is not accepted: {_OWNED['api_key']}."
            )
        try:
            super().__init__(id=id, params=params, **options)
        except ValidationError as exc:
            raise ModelError(invalid_argument(exc, type(self), f"Model({id!r})")) from None

    @field_validator("id")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value or any(c.isspace() for c in value):
            raise ValueError("a model id has no spaces")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("not a variable name")
        return value

    @field_validator("api_base")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"(?i)^https?://[^/\s]+", value.strip()):
            raise ValueError("not an http(s) URL")
        return value.strip() if value is not None else None

    @property
    def label(self) -> str:
        """The name shown in result frames."""
        return self.name or self.id

    def litellm_kwargs(self) -> dict[str, Any]:
        """This model's own litellm keyword arguments (not the run's defaults)."""
        kwargs: dict[str, Any] = {}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        if self.api_base is not None:
            kwargs["api_base"] = self.api_base
        kwargs.update(self.params)
        kwargs.update(self.extra)
        return kwargs

    def __repr__(self) -> str:
        # Shown in notebooks and logs: header values are hidden and every text redacted
        # (a token in extra_headers, credentials in api_base).
        shown = [repr(public(self.id))]
        for key, field in type(self).model_fields.items():
            value = getattr(self, key)
            if key != "id" and value != field.get_default(call_default_factory=True):
                shown.append(f"{key}={public(value)!r}")
        return f"Model({', '.join(shown)})"


def as_model(model: Model | str) -> Model:
    """Accept a litellm id string or a ``Model``."""
    if isinstance(model, Model):
        return model
    if isinstance(model, str):
        return Model(model)
    raise ModelError(
        f"models must be litellm model ids (str) or nbtoolkit.Model objects, not {type(model).__name__}"
    )


def as_models(models: Any) -> tuple[Model, ...]:
    """Normalise the ``models=`` argument, rejecting empty lists and duplicate labels."""
    if isinstance(models, (str, Model)):
        models = [models]
    if models is None or len(models) == 0:
        raise ModelError(
            "models is empty: name at least one, e.g. models=['sim/oracle-large', 'sim/swift-mini']"
        )
    result = tuple(as_model(m) for m in models)
    seen: set[str] = set()
    for m in result:
        if m.label in seen:
            raise ModelError(
                f"model '{m.label}' is listed twice: to ask it several times use samples=N, "
                "or give the copies different names with Model(id, name=...)"
            )
        seen.add(m.label)
    return result
