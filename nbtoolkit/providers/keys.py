"""API keys: which variables hold them, and where each may be sent (never to another host).

A provider's key, read from its usual environment variable, goes only to that provider's own
API hosts over https; a self-hosted server, a proxy or a host that ``OPENAI_BASE_URL`` names
gets the user's named ``api_key_env`` or the placeholder ``NO_KEY``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from ..spec import Model
from .registry import get_litellm, litellm_id

__all__ = [
    "KEY_VARIABLES",
    "NO_KEY",
    "OWN_HOSTS",
    "api_base_of",
    "api_key_for",
    "env_base_names",
    "own_endpoint",
    "own_host",
]

# The best-known API key variables, listed first by `nbtoolkit models` and
# `%orchestrate models` (the rest come from litellm's own files: ``env_keys.key_variables``).
KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "MISTRAL_API_KEY",
    "COHERE_API_KEY",
    "GROQ_API_KEY",
    "TOGETHERAI_API_KEY",
    "OPENROUTER_API_KEY",
)


# Where a provider's own key, read from its usual environment variable, may be sent: the
# provider's own API hosts ("." + suffix for per-customer hosts such as Azure's), over https.
OWN_HOSTS: dict[str, tuple[str, ...]] = {
    "openai": ("api.openai.com",),
    "text-completion-openai": ("api.openai.com",),
    "anthropic": ("api.anthropic.com",),
    "gemini": ("generativelanguage.googleapis.com",),
    "mistral": ("api.mistral.ai",),
    "cohere": ("api.cohere.ai", "api.cohere.com"),
    "cohere_chat": ("api.cohere.ai", "api.cohere.com"),
    "groq": ("api.groq.com",),
    "together_ai": ("api.together.xyz", "api.together.ai"),
    "deepseek": ("api.deepseek.com",),
    "xai": ("api.x.ai",),
    "openrouter": ("openrouter.ai",),
    "fireworks_ai": ("api.fireworks.ai",),
    "perplexity": ("api.perplexity.ai",),
    "azure": (".openai.azure.com", ".cognitiveservices.azure.com"),
    "azure_ai": (".services.ai.azure.com", ".models.ai.azure.com", ".inference.ai.azure.com"),
}
# What a host without a key of its own is sent. Not a secret: litellm would otherwise fill
# an empty or missing key from OPENAI_API_KEY (or the provider's variable), and the openai
# client refuses to send no key at all. A server without auth ignores it.
NO_KEY = "no-key-needed"


# Where litellm reads a provider's base URL from the environment when the call names none
# (``OPENAI_BASE_URL`` and the like): such a base is another host just as an api_base is.
_ENV_BASES: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "text-completion-openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
}


def api_base_of(kwargs: dict[str, Any], model: Model | None = None) -> str | None:
    """Where the call goes: its ``api_base``, else the base the environment sets for the
    model's provider (``OPENAI_BASE_URL``, ``<PROVIDER>_API_BASE``...), else None."""
    base = kwargs.get("api_base") or kwargs.get("base_url")
    if base:
        return str(base)
    if model is None:
        return None
    provider = _provider_of(model.id)
    if not provider:
        return None
    return next((os.environ[n] for n in env_base_names(provider) if os.environ.get(n)), None)


def env_base_names(provider: str) -> tuple[str, ...]:
    """The variables litellm reads ``provider``'s base URL from when a call names none."""
    upper = provider.upper()
    return _ENV_BASES.get(provider, (f"{upper}_API_BASE", f"{upper}_BASE_URL"))


def own_endpoint(model: Model, api_base: str) -> bool:
    """Whether ``api_base`` is the model's provider's own API (where its key may go)."""
    return own_host(_provider_of(model.id), api_base)


def own_host(provider: str, api_base: str) -> bool:
    """Whether ``api_base`` is ``provider``'s own API, over https (see ``OWN_HOSTS``)."""
    from urllib.parse import urlsplit

    parts = urlsplit(api_base)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host:
        return False
    return any(
        host.endswith(own) if own.startswith(".") else host == own
        for own in OWN_HOSTS.get(provider, ())
    )


@functools.lru_cache(maxsize=512)
def _provider_of(model_id: str) -> str:
    try:
        return str(get_litellm().get_llm_provider(litellm_id(Model(model_id)))[1])
    except Exception:
        return ""


def api_key_for(model: Model, kwargs: dict[str, Any]) -> str | None:
    """The API key a live call sends: the variable the user named (``api_key_env``) to
    wherever the model points; else None (litellm takes the provider's key from the
    environment) when the call goes to the provider's own endpoint; else ``NO_KEY``.

    So ``OPENAI_API_KEY`` goes to api.openai.com and nowhere else: not to a self-hosted
    server, a proxy, or a fallback on another host, whatever their ``api_base``, and not to
    a host that ``OPENAI_BASE_URL`` (or ``<PROVIDER>_API_BASE``) names either.
    """
    if model.api_key_env:
        return os.environ[model.api_key_env]
    base = api_base_of(kwargs, model)
    if base is None or own_endpoint(model, base):
        return None
    return NO_KEY
