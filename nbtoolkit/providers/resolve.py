"""Each model resolved once: how it is called, where, and what litellm knows of it.

``resolve(model)`` turns a ``Model`` into a ``Resolved`` record, memoised per ``Model``
object: the planner, the runner, the transports, the budget and the estimates read it
instead of asking litellm again per call. An offline model (``replay/``, ``sim/``, your own)
never imports litellm to be resolved; its price is looked up only when asked for.

Which transport a model takes (``Resolved.transport``):

- ``"offline"``: answered on this machine (``replay/``, ``sim/``, a registered provider);
- ``"aiohttp"``: the lean aiohttp client (``openai_http``), for a model litellm itself sends to
  an OpenAI-compatible chat endpoint: provider ``openai``/``custom_openai``, one of
  ``litellm.openai_compatible_providers``, or a base URL in
  ``litellm.openai_compatible_endpoints``; or any provider whose litellm chat config speaks
  OpenAI's format to ``<api_base>/chat/completions`` when you give ``api_base``. It needs a
  base URL: the model's ``api_base``, the one litellm names for the provider, or the
  environment's (``OPENAI_BASE_URL``, ``<PROVIDER>_API_BASE``); OpenAI's own otherwise;
- ``"litellm"``: ``litellm.acompletion``, for everything else (Anthropic, Gemini, Bedrock...).

With a LiteLLM proxy set for the run (``proxy.use_proxy``), every model that is not offline
and has no ``api_base`` of its own takes ``"aiohttp"`` to the proxy, its id as the model name
on the wire (``Resolved.proxy`` says which proxy); its prices are still litellm's for that id.

``Model(transport="litellm")`` (or ``orchestrate(..., transport="litellm")`` for every model
left on ``"auto"``) forces the litellm path; ``"aiohttp"`` asks for the lean one and is refused
with one line when the model cannot take it.
"""

from __future__ import annotations

import contextvars
import functools
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..errors import ModelError
from ..spec import TRANSPORTS, Model
from .proxy import Proxy, current_proxy
from .registry import get_litellm, is_offline, litellm_id, quiet

__all__ = ["TRANSPORTS", "Resolved", "resolve", "run_transport", "transports_of", "use_transport"]

OPENAI_BASE = "https://api.openai.com/v1"

# The run's transport for models left on "auto" (orchestrate(transport=...)). A context
# variable: the run's tasks inherit it, and two runs on one loop do not see each other's.
run_transport: contextvars.ContextVar[str] = contextvars.ContextVar(
    "nbtoolkit_run_transport", default="auto"
)


def use_transport(transport: str) -> None:
    """Set the transport of this run's models left on ``"auto"`` (see ``run_transport``)."""
    run_transport.set(transport)


@dataclass(frozen=True, eq=False)
class Resolved:
    """What one model is, resolved once: read it, never ask litellm per call.

    Prices are USD per token (NaN: unknown, never 0); ``context_window`` is in tokens (None:
    unknown). ``api_base`` and ``wire_model`` are set for the ``"aiohttp"`` transport only.
    """

    model: Model
    offline: bool
    provider: str  # litellm's provider name; the prefix for an offline model
    litellm_id: str  # what litellm routes on (the model id for an offline model)
    transport: str  # "offline" | "aiohttp" | "litellm"
    api_base: str | None = None
    wire_model: str | None = None
    proxy: Proxy | None = None  # set when the calls go through a LiteLLM proxy

    @functools.cached_property
    def prices(self) -> tuple[float, float, float]:
        """USD per input token, per output token, per cached input token (NaN unknown)."""
        return _prices(self.model)

    @property
    def price_known(self) -> bool:
        return not math.isnan(self.prices[0])

    @functools.cached_property
    def context_window(self) -> int | None:
        if self.offline:
            return None
        try:
            info = get_litellm().get_model_info(self.litellm_id)
        except Exception:
            return None
        limit = info.get("max_input_tokens") if isinstance(info, dict) else None
        return int(limit) if limit else None

    @functools.cached_property
    def schema(self) -> bool:
        """Whether litellm knows this model takes a JSON schema as ``response_format``."""
        if self.offline:
            return False
        try:
            return bool(get_litellm().supports_response_schema(model=self.litellm_id))
        except Exception:
            return False


_MEMO: OrderedDict[tuple[int, str, Proxy | None], tuple[Model, Resolved]] = OrderedDict()
_MEMO_SIZE = 1024
_lock = threading.Lock()


def resolve(model: Model, transport: str | None = None) -> Resolved:
    """The model's record, resolved on first use and memoised per ``Model`` object.

    ``transport`` overrides the run's (``run_transport``) for a model left on ``"auto"``.
    Raises ``ModelError`` for an id litellm cannot route, or ``transport="aiohttp"`` on a model
    the lean client cannot call.
    """
    wanted = model.transport if model.transport != "auto" else transport or run_transport.get()
    proxy = current_proxy()
    key = (id(model), wanted, proxy)
    found = _MEMO.get(key)
    if found is not None and found[0] is model:
        return found[1]
    with quiet():
        record = _resolve(model, wanted, proxy)
    with _lock:
        _MEMO[key] = (model, record)  # the model is kept alive, so its id is not reused
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    return record


def transports_of(models: list[Model]) -> dict[str, str]:
    """``{label: transport}`` for ``models`` and their fallbacks, as the run called them."""
    from ..spec import as_model

    out: dict[str, str] = {}
    for model in models:
        for one in (model, *(as_model(f) for f in model.fallbacks)):
            try:
                out.setdefault(one.label, resolve(one).transport)
            except ModelError:
                continue
    return out


def _resolve(model: Model, wanted: str, proxy: Proxy | None) -> Resolved:
    if is_offline(model.id):
        prefix = model.id.split("/", 1)[0]
        return Resolved(model, True, prefix, model.id, "offline")
    if proxy is not None and not _own_base(model):
        if wanted == "litellm":
            raise ModelError(
                f"{model.label}: transport='litellm' cannot go through the LiteLLM proxy at "
                f"{proxy.url} (the proxy is called over its OpenAI-compatible API); use "
                "transport='auto', or give the model an api_base of its own"
            )
        # The proxy routes on the id as the user wrote it (its model_name), whatever
        # provider litellm would pick for it here; it speaks OpenAI's format for all.
        return Resolved(model, False, "openai", model.id, "aiohttp", proxy.base, model.id, proxy)
    routed = litellm_id(model)
    provider, base = _route(model, routed)
    lean = (
        wanted != "litellm"
        and base is not None
        and not _litellm_only(model)
        and _openai_compatible(model, provider, base)
    )
    if wanted == "aiohttp" and not lean:
        raise ModelError(
            f"{model.label}: transport='aiohttp' needs an OpenAI-compatible endpoint, and litellm "
            f"sends provider '{provider}' another way; use transport='auto' or 'litellm'"
        )
    if not lean:
        return Resolved(model, False, provider, routed, "litellm")
    wire = get_litellm().get_llm_provider(routed)[0]
    record = Resolved(model, False, provider, routed, "aiohttp", str(base).rstrip("/"), wire)
    if _needs_env_key(model, str(base)) and env_key(record) is None:
        # The provider's own host, and no key we can find the way litellm would: litellm
        # knows where this provider keeps it (or says it is missing), so it makes the call.
        return Resolved(model, False, provider, routed, "litellm")
    return record


def _own_base(model: Model) -> bool:
    """Whether the model names where it is served (a model pointed at a server of its own
    keeps going there, proxy or not)."""
    return bool(model.api_base or model.extra.get("api_base") or model.params.get("api_base"))


def _needs_env_key(model: Model, base: str) -> bool:
    from .keys import own_endpoint

    return not model.api_key_env and own_endpoint(model, base)


# litellm's own keyword arguments that the lean client carries out the same way.
_CARRIED = {"api_base", "base_url", "input_cost_per_token", "output_cost_per_token"}


def _litellm_only(model: Model) -> bool:
    """Whether the model asks litellm for something only litellm does (``mock_response``,
    ``custom_llm_provider``, ...): then litellm makes its calls."""
    from litellm.types.utils import all_litellm_params

    return any(k in all_litellm_params and k not in _CARRIED for k in model.litellm_kwargs())


def _route(model: Model, routed: str) -> tuple[str, str | None]:
    """litellm's provider for the model, and the base URL a lean call would go to (None:
    not known without litellm's own code)."""
    from .keys import api_base_of

    kwargs = model.litellm_kwargs()
    try:
        _, provider, _, default_base = get_litellm().get_llm_provider(
            routed, api_base=kwargs.get("api_base") or kwargs.get("base_url")
        )
    except Exception:
        return "", None
    base = api_base_of(kwargs, model) or default_base
    if base is None and provider == "openai":
        base = OPENAI_BASE
    return str(provider), (str(base) if base else None)


def _openai_compatible(model: Model, provider: str, base: str) -> bool:
    litellm = get_litellm()
    named = (
        provider in ("openai", "custom_openai")
        or provider in litellm.openai_compatible_providers
        or any(e.split("://")[-1].rstrip("/") in base for e in litellm.openai_compatible_endpoints)
    )
    try:
        from litellm.llms.openai.chat.gpt_transformation import OpenAIGPTConfig
        from litellm.utils import ProviderConfigManager

        config = ProviderConfigManager.get_provider_chat_config(
            model=model.id, provider=litellm.LlmProviders(provider)
        )
        if config is None:
            return False
        url = config.get_complete_url(
            api_base=base, api_key=None, model=model.id, optional_params={}, litellm_params={}
        )
    except Exception:
        return False
    speaks = isinstance(config, OpenAIGPTConfig) and url == base.rstrip("/") + "/chat/completions"
    given = bool(model.api_base or model.extra.get("api_base") or model.params.get("api_base"))
    return speaks and (named or given)


def _prices(model: Model) -> tuple[float, float, float]:
    nan = math.nan
    for source in (model.params, model.extra):
        if "input_cost_per_token" in source:
            inp = float(source["input_cost_per_token"])
            return inp, float(source.get("output_cost_per_token", 0)), inp
    prefix, _, name = model.id.partition("/")
    if prefix == "sim":
        from . import sim

        profile = sim.PROFILES.get(name)
        if profile is None:
            return nan, nan, nan
        return profile.input_cost_per_token, profile.output_cost_per_token, nan
    entry = _price_entry(model)
    if entry is None:
        return nan, nan, nan
    inp = float(entry.get("input_cost_per_token") or 0)
    cached = entry.get("cache_read_input_token_cost")
    return inp, float(entry.get("output_cost_per_token") or 0), inp if cached is None else cached


def _price_entry(model: Model) -> dict[str, Any] | None:
    """litellm's price-table entry for the model when it states a real price, else None.

    An entry whose prices are all zero is a placeholder (``ollama/llama3`` has one,
    ``ollama_chat/llama3`` none): the same local model must not cost $0 under one prefix and
    NaN under another, so neither is a price. Declare a free model with
    ``Model(..., extra={"input_cost_per_token": 0, "output_cost_per_token": 0})``.
    """
    prefix, _, name = model.id.partition("/")
    cost = get_litellm().model_cost
    entry = cost.get(name) if prefix == "replay" else cost.get(model.id) or cost.get(name)
    if not entry or entry.get("input_cost_per_token") is None:
        return None
    prices = (entry.get("input_cost_per_token"), entry.get("output_cost_per_token"))
    if not any(p for p in prices if p is not None):
        return None
    return dict(entry)


def env_key(record: Resolved) -> str | None:
    """The provider's own key from its usual variable, as litellm would read it, for a call
    to the provider's own host; None when it is not set."""
    if record.provider == "openai":
        return os.environ.get("OPENAI_API_KEY") or None
    try:
        key = get_litellm().get_llm_provider(record.litellm_id)[2]
    except Exception:
        return None
    return str(key) if key else None
