"""Consensus strategies, in a registry: the built-ins sit in the same registry as yours.

A strategy turns the candidates of one input row (every model's extracted answer) into one
``Verdict``. Select one with ``orchestrate(strategy="vote")`` or pass an instance.

>>> from nbtoolkit.strategies import register, Verdict
>>> @register("loudest")
... class Loudest:
...     name = "loudest"
...     def combine(self, candidates):
...         best = max((c for c in candidates if c.valid), key=lambda c: len(str(c.answer)))
...         return Verdict(best.answer, confidence=0.5, agreement=0.5, n_valid=1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import StrategyError
from .base import Candidate, FollowUp, ModelInfo, RowContext, Strategy, Verdict, answer_key

__all__ = [
    "Candidate",
    "FollowUp",
    "ModelInfo",
    "RowContext",
    "Strategy",
    "Verdict",
    "answer_key",
    "Calibrated",
    "Cascade",
    "FirstValid",
    "Fuse",
    "Judge",
    "Medoid",
    "Vote",
    "Weighted",
    "get",
    "names",
    "register",
]

_REGISTRY: dict[str, Callable[..., Strategy]] = {}

# The built-in classes load on first use. Their modules do not import this one (no import
# circle): they are registered here by name, like a user's own, when the registry is first read.
_BUILTINS = {
    "cascade": ("cascade", "Cascade"),
    "first_valid": ("vote", "FirstValid"),
    "fuse": ("judge", "Fuse"),
    "judge": ("judge", "Judge"),
    "medoid": ("medoid", "Medoid"),
    "vote": ("vote", "Vote"),
    "weighted": ("vote", "Weighted"),
}
_CLASSES = {
    "Calibrated": "calibrated",
    "Cascade": "cascade",
    "FirstValid": "vote",
    "Fuse": "judge",
    "Judge": "judge",
    "Medoid": "medoid",
    "Vote": "vote",
    "Weighted": "vote",
}


def __getattr__(name: str) -> Any:
    module = _CLASSES.get(name)
    if module is None:
        raise AttributeError(f"module 'nbtoolkit.strategies' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def register(name: str, factory: Callable[..., Strategy] | None = None) -> Any:
    """Register a strategy class (or factory) under ``name``; usable as a decorator."""

    def add(obj: Callable[..., Strategy]) -> Callable[..., Strategy]:
        _REGISTRY[name] = obj
        return obj

    return add(factory) if factory is not None else add


def names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get(spec: str | Strategy, **options: Any) -> Strategy:
    """A strategy instance from a registered name (with options) or an instance as is."""
    _load_builtins()
    if not isinstance(spec, str):
        if callable(getattr(spec, "combine", None)):
            return spec
        raise StrategyError(
            f"strategy= must be a name or an object with a combine() method, not {type(spec).__name__}"
        )
    if spec not in _REGISTRY:
        from ..suggest import did_you_mean

        raise StrategyError(
            f"unknown strategy {spec!r}.{did_you_mean(spec, _REGISTRY)} "
            f"Known: {', '.join(sorted(_REGISTRY))}"
        )
    try:
        return _REGISTRY[spec](**options)
    except TypeError as exc:
        raise StrategyError(f"strategy {spec!r}: {exc}") from None


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    from importlib import import_module

    for name, (module, cls) in _BUILTINS.items():
        # A name the user registered before the first use keeps the user's strategy.
        _REGISTRY.setdefault(name, getattr(import_module(f".{module}", __name__), cls))
    _loaded = True


_loaded = False
