"""Which models are answered on this machine, and litellm, imported once and configured.

Offline providers (``replay/<name>``, ``sim/<profile>``, your own) are registered here with
``register_offline``. One that has ``async answer(name, messages, params) -> Reply`` is
answered in-process, without litellm; a ``litellm.CustomLLM`` goes through litellm's own
``custom_provider_map``. This is the only place that imports litellm.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

from ..errors import ModelError
from ..spec import Model
from .litellm_adapter import as_custom_llm
from .reply import Reply

__all__ = [
    "LOADING_NOTE",
    "PREFIX_PROVIDERS",
    "OfflineProvider",
    "check_offline",
    "get_litellm",
    "in_process",
    "is_offline",
    "litellm_id",
    "loading_listener",
    "offline_handler",
    "quiet",
    "register_offline",
]


@runtime_checkable
class OfflineProvider(Protocol):
    """A provider answered in-process: ``<prefix>/<name>`` models, no litellm involved.

    ``params`` are the call's litellm keyword arguments (``temperature``, ``seed``, ...) plus
    nbtoolkit's own (``nbt_sample``: the sample index; ``nbt_store``: the run's recordings).
    Raise an ``nbtoolkit.errors.CallError`` for a call that cannot be answered (not retried).
    """

    async def answer(
        self, name: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> Reply: ...


# prefix -> an OfflineProvider, or a zero-argument factory of a litellm CustomLLM.
_OFFLINE: dict[str, Any] = {}
# prefix -> validator(model name, run options) raising ModelError for an unknown name.
_OFFLINE_CHECKS: dict[str, Callable[[str, dict[str, Any]], None]] = {}
# Only for the test that proves both ways give the same frames: send offline calls through
# litellm.acompletion (the providers' CustomLLM adapters), as before they were in-process.
_THROUGH_LITELLM = False

_lock = threading.Lock()
_litellm: Any = None

#: What a run's progress says while litellm is imported (seconds, once per process), so the
#: first run in a kernel does not sit silently at 0/N.
LOADING_NOTE = "loading litellm, first run only"
# Who hears LOADING_NOTE: the progress of the run being planned. A context variable, so a
# run's note goes to that run's display and no other.
loading_listener: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar(
    "nbtoolkit_loading_listener", default=None
)


def register_offline(
    prefix: str,
    provider: Any,
    check: Callable[[str, dict[str, Any]], None] | None = None,
) -> None:
    """Register an offline provider answering ``<prefix>/<name>`` models.

    ``provider`` is either an object with ``async answer(name, messages, params) -> Reply``
    (see ``OfflineProvider``; answered in-process, litellm is never imported for it), or a
    zero-argument factory returning a ``litellm.CustomLLM`` (called after litellm is
    imported; its calls go through ``litellm.acompletion``). ``check(name, options)``, if
    given, raises ``ModelError`` before any call for a name the provider cannot answer.
    """
    _OFFLINE[prefix] = provider
    if check is not None:
        _OFFLINE_CHECKS[prefix] = check
    if _litellm is not None:
        _install(_litellm, prefix)


def _install(litellm: Any, prefix: str) -> None:
    provider = _OFFLINE[prefix]
    # An in-process provider gives the same answers through litellm's path.
    handler = as_custom_llm(provider) if _answers(provider) else provider()
    litellm.custom_provider_map = [
        item for item in litellm.custom_provider_map if item["provider"] != prefix
    ] + [{"provider": prefix, "custom_handler": handler}]
    # litellm reads the map when it sets up a call's provider list; refresh it now.
    litellm.utils.custom_llm_setup()


def get_litellm() -> Any:
    """Import and configure litellm once: local price table, quiet logs, offline providers."""
    global _litellm
    if _litellm is not None:
        return _litellm
    with _lock:
        if _litellm is None:
            # Offline, litellm would first try to download its price table.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            _announce_loading()
            import litellm

            litellm.suppress_debug_info = True  # its "Provider List: ..." lines in every cell
            litellm.telemetry = False
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
            for prefix in _OFFLINE:
                _install(litellm, prefix)
            _litellm = litellm
    return _litellm


def _announce_loading() -> None:
    listener = loading_listener.get()
    if listener is None:
        return
    # A display that cannot show the note must not stop the run; its next update (the
    # runner's progress callback) reports a broken display.
    with contextlib.suppress(Exception):
        listener(LOADING_NOTE)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """litellm imports a provider's modules on first use, and their pydantic models warn at
    import time; that noise is litellm's, not the user's (and -W error would fail the call)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def check_offline(model_id: str, options: dict[str, Any]) -> None:
    """Raise ``ModelError`` if the offline provider of ``model_id`` cannot answer it."""
    prefix, _, name = model_id.partition("/")
    if prefix in _OFFLINE_CHECKS:
        _OFFLINE_CHECKS[prefix](name, options)


def is_offline(model_id: str) -> bool:
    """True for models answered on this machine (replay, sim, or a registered provider)."""
    return model_id.split("/", 1)[0] in _OFFLINE


def offline_handler(model_id: str) -> OfflineProvider | None:
    """The in-process provider answering ``model_id``; None when litellm carries its calls
    (a live model, or an offline provider registered as a ``litellm.CustomLLM``)."""
    provider = _OFFLINE.get(model_id.split("/", 1)[0])
    if _THROUGH_LITELLM or not _answers(provider):
        return None
    return provider  # type: ignore[no-any-return]


def _answers(provider: Any) -> bool:
    """An in-process provider (it has ``answer``), not a factory of a litellm CustomLLM."""
    return callable(getattr(provider, "answer", None)) and not isinstance(provider, type)


def in_process(model_id: str) -> bool:
    """True when ``model_id``'s calls never need litellm (an in-process offline provider)."""
    return offline_handler(model_id) is not None


# Bare model ids litellm no longer lists, whose provider is plain from the name.
PREFIX_PROVIDERS = [
    (re.compile(r"^claude-"), "anthropic"),
    (re.compile(r"^gemini-"), "gemini"),
    (re.compile(r"^(mistral|ministral|codestral|open-mistral|pixtral)-"), "mistral"),
    (re.compile(r"^command-"), "cohere_chat"),
]


def litellm_id(model: Model) -> str:
    """The model string litellm routes on (a provider prefix added when litellm needs one)."""
    return _routed(model.id)


@functools.lru_cache(maxsize=1024)
def _routed(model_id: str) -> str:
    # Depends on the id alone: asked once per id, not per call (an error is not cached).
    litellm = get_litellm()
    try:
        with quiet():
            litellm.get_llm_provider(model_id)
        return model_id
    except Exception:
        pass
    for pattern, provider in PREFIX_PROVIDERS:
        if pattern.match(model_id):
            return f"{provider}/{model_id}"
    offline = _near_simulated(model_id)
    if offline:
        raise ModelError(
            f"unknown model '{model_id}'. Did you mean {offline!r} (offline, simulated)? For a "
            f"real model, prefix it with its provider, e.g. 'openai/{model_id}' (with "
            "api_base=... for a local server)."
        )
    raise ModelError(
        f"unknown model '{model_id}': litellm cannot tell which provider serves it. Prefix it with "
        f"the provider, e.g. 'openai/{model_id}' (with api_base=... for a local server), or use "
        "'sim/oracle-large' to try things offline."
    )


def _near_simulated(model_id: str) -> str | None:
    """The simulated model a bare name most likely meant: 'swift' (the cell's alias) or
    'swift-mnii' for 'sim/swift-mini'; None when none is close."""
    from ..suggest import closest
    from .sim import PROFILES

    by_short = {name.split("-")[0]: name for name in PROFILES if name.split("-")[0] != "budget"}
    word = model_id.lower().removeprefix("sim/")
    if word in by_short:
        return f"sim/{by_short[word]}"
    match = closest(word, list(PROFILES))
    return f"sim/{match}" if match else None
