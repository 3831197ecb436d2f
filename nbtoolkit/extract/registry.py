"""The registry of named extractors, and the helpers every extractor shares."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..errors import ExtractionError, clip

Extractor = Callable[[Any], Any]

REGISTRY: dict[str, Extractor] = {}
# Extractors that take an argument after a colon, like "json:answer" or "choice:ABCD".
PARAMETRIC: dict[str, Callable[[str], Extractor]] = {}


def register(name: str, extractor: Extractor | None = None, *, parametric: bool = False) -> Any:
    """Register an extractor under ``name`` (usable as a decorator).

    With ``parametric=True`` the registered object is a factory taking the text after
    ``name:`` and returning an extractor, as ``json:<field>`` does.
    """

    def add(fn: Any) -> Any:
        (PARAMETRIC if parametric else REGISTRY)[name] = fn
        return fn

    return add(extractor) if extractor is not None else add


def names() -> list[str]:
    """The registered extractor names, parametric ones shown as ``name:<arg>``."""
    return sorted(REGISTRY) + sorted(f"{n}:<arg>" for n in PARAMETRIC)


def text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise ExtractionError("nothing to read: the previous step gave None")
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def preview(text: str, width: int = 60) -> str:
    return repr(clip(" ".join(text.split()), width, "…"))
