"""What a run is made of: frozen, validated options that reject unknown keys.

>>> Model("gpt-4o-mini", temperature=0.2, weight=2)
Model('gpt-4o-mini', temperature=0.2, weight=2.0)
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ModelError

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


def check_litellm_params(params: dict[str, Any], where: str) -> dict[str, Any]:
    """Reject keyword arguments that are not litellm parameters, naming the fix."""
    for key in params:
        if key in _OWNED:
            raise ModelError(f"{where}: '{key}' is not accepted: {_OWNED[key]}.")
        if key not in LITELLM_PARAMS:
            known = ", ".join(sorted(LITELLM_PARAMS))
            raise ModelError(
                f"{where}: unknown keyword argument '{key}'. Known litellm parameters: {known}; "
                "pass anything else as extra={...}."
            )
    return params


class Model(BaseModel):
    """One model of a panel: a litellm model id plus its own options.

    >>> Model("openai/my-local", api_base="http://127.0.0.1:8000/v1", api_key_env="LOCAL_KEY")
    Model('openai/my-local', api_base='http://127.0.0.1:8000/v1', api_key_env='LOCAL_KEY')
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    name: str | None = None  # how the model is labelled in frames; the id by default
    temperature: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, gt=0)
    api_base: str | None = None
    api_key_env: str | None = None
    weight: float = Field(default=1.0, ge=0)
    max_concurrency: int | None = Field(default=None, gt=0)
    timeout: float | None = Field(default=None, gt=0)
    fallbacks: tuple[Model | str, ...] = ()
    params: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    def __init__(self, id: str, /, **options: Any) -> None:
        known = set(type(self).model_fields) - {"id", "params"}
        params = dict(options.pop("params", {}) or {})
        for key in [k for k in options if k not in known]:
            params[key] = options.pop(key)
        check_litellm_params(params, f"Model({id!r})")
        # extra= is the escape hatch for litellm kwargs, but never for a key's value.
        if "api_key" in (options.get("extra") or {}):
            raise ModelError(
                f"Model({id!r}): extra={{'api_key': ...}} is not accepted: {_OWNED['api_key']}."
            )
        try:
            super().__init__(id=id, params=params, **options)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ModelError(f"Model({id!r}): {field}: {first['msg']}") from None

    @field_validator("id")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the model id is empty")
        return value

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
        shown = [repr(self.id)]
        for key, field in type(self).model_fields.items():
            value = getattr(self, key)
            if key != "id" and value != field.get_default(call_default_factory=True):
                shown.append(f"{key}={value!r}")
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
