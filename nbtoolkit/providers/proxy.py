"""The LiteLLM proxy as a team's gateway: where it is, which key to send, what its errors mean.

``orchestrate(..., proxy="http://proxy:4000")``, ``%config Orchestrate.proxy = "..."`` or
``NBTOOLKIT_PROXY_URL``: every model that is not answered on this machine (``sim/``,
``replay/``) and has no ``api_base`` of its own is sent to the proxy, its id as the proxy's
model name, over the OpenAI-compatible transport (``openai_http``). Prices still come from
litellm's table for that id. The proxy enforces what a team shares: its virtual keys,
budgets, model allowlists and rate limits (so a global concurrency limit across Dask workers
is the proxy's, not ours).

The virtual key is read from the variable that ``NBTOOLKIT_PROXY_KEY_ENV`` (or
``Proxy(key_env=...)``) names, ``LITELLM_PROXY_API_KEY`` by default (litellm's own name for
it); it is sent only to the proxy and never shown.
"""

from __future__ import annotations

import contextvars
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, MissingAPIKeyError, protect, redact

__all__ = [
    "DEFAULT_KEY_ENV",
    "ENV_KEY_ENV",
    "ENV_URL",
    "Proxy",
    "as_proxy",
    "current_proxy",
    "explain",
    "served_models",
    "use_proxy",
]

ENV_URL = "NBTOOLKIT_PROXY_URL"
ENV_KEY_ENV = "NBTOOLKIT_PROXY_KEY_ENV"
DEFAULT_KEY_ENV = "LITELLM_PROXY_API_KEY"


@dataclass(frozen=True)
class Proxy:
    """A LiteLLM proxy: its URL (``http://proxy:4000``, with or without ``/v1``) and the name
    of the environment variable holding the virtual key (never the key itself)."""

    url: str
    key_env: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"proxy={redact(self.url)!r} is not a URL: use the proxy's address, e.g. "
                "proxy='http://proxy:4000'"
            )
        if parts.username is not None or parts.password is not None or redact(self.url) != self.url:
            # The proxy authenticates by the virtual key in its header; credentials in the URL
            # would be refused by the client at call time, and shown wherever the URL is.
            raise ConfigError(
                f"proxy={redact(self.url)!r} holds credentials: give the bare URL and put the "
                "virtual key in an environment variable named by key_env= (default "
                f"{DEFAULT_KEY_ENV})"
            )

    def __repr__(self) -> str:
        return f"Proxy(url={redact(self.url)!r}, key_env={self.key_env!r})"

    @property
    def base(self) -> str:
        """The OpenAI-compatible base: the URL ending in ``/v1``."""
        url = self.url.rstrip("/")
        return url if url.endswith("/v1") else url + "/v1"

    @property
    def variable(self) -> str:
        return self.key_env or DEFAULT_KEY_ENV

    def key(self) -> str | None:
        """The virtual key, or None when its variable is unset (a proxy without auth)."""
        return os.environ.get(self.variable) or None

    def check(self) -> None:
        """Raise ``MissingAPIKeyError`` when the named key variable is not set; mark the key
        as a secret so that no message, file or screen of ours shows it."""
        value = self.key()
        if value is None and self.key_env:
            raise MissingAPIKeyError(
                f"the proxy's key variable {self.key_env} is not set: set it to your virtual "
                f"key (os.environ['{self.key_env}'] = 'sk-...') or name another variable"
            )
        protect(value)


def as_proxy(value: Any) -> Proxy | None:
    """``proxy=`` as a ``Proxy``: a URL, a ``Proxy``, or None for ``$NBTOOLKIT_PROXY_URL``
    (with ``$NBTOOLKIT_PROXY_KEY_ENV``); None when neither names one."""
    if isinstance(value, Proxy):
        return value
    key_env = os.environ.get(ENV_KEY_ENV) or None
    if value is None:
        url = os.environ.get(ENV_URL)
        return Proxy(url, key_env) if url else None
    if isinstance(value, str) and value.strip():
        return Proxy(value.strip(), key_env)
    raise ConfigError(
        f"proxy={value!r}: give the proxy's URL (proxy='http://proxy:4000'), a "
        "nbtoolkit.Proxy(url, key_env='NAME'), or None"
    )


# The run's proxy. A context variable: the run's tasks inherit it, and two runs on one loop
# (or two Dask tasks on one worker) do not see each other's.
_run_proxy: contextvars.ContextVar[Proxy | None] = contextvars.ContextVar(
    "nbtoolkit_run_proxy", default=None
)


def use_proxy(proxy: Proxy | None) -> None:
    """Send this run's models through ``proxy`` (None: call each provider directly)."""
    _run_proxy.set(proxy)


def current_proxy() -> Proxy | None:
    return _run_proxy.get()


# -- the proxy's errors, one line each ---------------------------------------------------------

_BUDGET_TYPES = {"budget_exceeded"}
_ACCESS_TYPES = {"key_model_access_denied", "team_model_access_denied", "user_model_access_denied"}
_ACCESS_WORDS = ("not allowed to access model", "is not available for this api key")


def explain(
    status: int, kind: str, message: str, retry_after: float | None, proxy: Proxy, model: str
) -> tuple[str, str] | None:
    """``(error kind, one line)`` for an error the proxy itself raised, or None for an error
    it passed on from a provider. ``kind`` is the body's ``error.type``. The line names the
    proxy and the model and says what to do; it never quotes the proxy's text (which names
    the key's hash)."""
    where = f"the LiteLLM proxy at {proxy.url}"
    lowered = message.lower()
    if kind in _BUDGET_TYPES or ("budget" in lowered and "exceeded" in lowered):
        return (
            "BudgetExceededError",
            f"{where} refused {model}: this key's budget is spent; "
            "ask the proxy's admin to raise it, or wait for the budget period to reset",
        )
    if kind in _ACCESS_TYPES or any(w in lowered for w in _ACCESS_WORDS):
        return (
            "ModelNotAllowedError",
            f"{where} does not let this key use {model}; "
            "`nbtoolkit models --proxy` lists the models your key may use",
        )
    if status == 429:
        wait = f"; it asked to wait {retry_after:g} s" if retry_after is not None else ""
        return (
            "RateLimitError",
            f"{where} refused {model} for now (this key's request or token "
            f"limit){wait}; retried after that wait, or raise retries=",
        )
    if status in (401, 403) or kind == "auth_error":
        return (
            "AuthenticationError",
            f"{where} did not accept the key in ${proxy.variable}; check that "
            "it holds your virtual key",
        )
    return None


def served_models(proxy: Proxy, timeout_s: float = 10.0) -> list[str]:
    """The model names the proxy serves to this key (its ``/v1/models``), sorted.

    Raises ``ConfigError`` with one line when the proxy cannot be reached or refuses the key.
    """
    import json
    import urllib.error
    import urllib.request

    proxy.check()
    request = urllib.request.Request(proxy.base + "/models")
    key = proxy.key()
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise ConfigError(
                f"the LiteLLM proxy at {proxy.url} did not accept the key in "
                f"${proxy.variable} (HTTP {exc.code}); check that it holds your virtual key"
            ) from None
        raise ConfigError(
            f"the LiteLLM proxy at {proxy.url} answered HTTP {exc.code} to /v1/models"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(
            f"cannot reach the LiteLLM proxy at {proxy.url} ({reason}); check the URL "
            f"(${ENV_URL}) and that the proxy is running"
        ) from None
    data = body.get("data") if isinstance(body, dict) else None
    return sorted(str(m["id"]) for m in data or [] if isinstance(m, dict) and "id" in m)
