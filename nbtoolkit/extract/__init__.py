"""Reading an answer out of a model's reply, through a registry of named extractors.

``extract=`` takes a name (``"number"``, ``"choice"``, ``"choice:ABCD"``, ``"math"``,
``"json"``, ``"json:<field>"``), a regex with one group, a pydantic model class, a callable, or
a list of these applied in order:

>>> extractor = build_extractor(["json:answer", "number"])
>>> extractor('```json\\n{"answer": "$1,080.00"}\\n```')
'1080'

A step that cannot find its answer raises ``ExtractionError``; the runner records the row as
``valid=False`` with that message, never drops it. Register your own with ``register``:

>>> register("yesno", lambda text: "yes" if "yes" in text.lower() else "no")

Where a reply marks its answer and which mark wins: ``nbtoolkit.extract.markers``. What a
number is worth and its canonical form: ``nbtoolkit.answers``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..answers import canonical_number
from ..errors import ExtractionError, ExtractorError
from . import symbolic
from .choice import extract_choice
from .jsonread import extract_json, find_json, json_field
from .number import extract_number
from .registry import PARAMETRIC as _PARAMETRIC
from .registry import REGISTRY as _REGISTRY
from .registry import Extractor, names, preview, register, text_of

__all__ = [
    "Extractor",
    "apply",
    "build_extractor",
    "canonical_number",
    "extract_choice",
    "extract_json",
    "extract_number",
    "find_json",
    "json_field",
    "names",
    "normalize_text",
    "register",
    "symbolic",
]


def normalize_text(value: Any) -> str:
    """The whole reply, whitespace collapsed; an empty reply is not an answer."""
    text = " ".join(text_of(value).split())
    if not text:
        raise ExtractionError("the reply is empty")
    return text


# --- building an extractor from a spec -------------------------------------------------------


def _regex_extractor(pattern: re.Pattern[str]) -> Extractor:
    def extract(value: Any) -> str:
        text = text_of(value)
        match = pattern.search(text)
        if match is None:
            raise ExtractionError(f"/{pattern.pattern}/ does not match {preview(text)}")
        return match.group(1)

    return extract


def _pydantic_extractor(cls: type) -> Extractor:
    from pydantic import ValidationError

    def extract(value: Any) -> Any:
        data = value if isinstance(value, dict) else find_json(text_of(value))
        try:
            return cls.model_validate(data)  # type: ignore[attr-defined]
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ExtractionError(f"{cls.__name__} validation failed: {problems}") from None

    return extract


def _callable_extractor(fn: Callable[[Any], Any]) -> Extractor:
    def extract(value: Any) -> Any:
        try:
            result = fn(value)
        except ExtractionError:
            raise
        except Exception as exc:  # a user's extractor may raise anything: that row is invalid
            raise ExtractionError(f"{getattr(fn, '__name__', 'extractor')}: {exc}") from None
        if result is None:
            raise ExtractionError(f"{getattr(fn, '__name__', 'extractor')} returned None")
        return result

    return extract


def _one(spec: Any) -> Extractor:
    if isinstance(spec, type) and hasattr(spec, "model_validate"):
        return _pydantic_extractor(spec)
    if isinstance(spec, re.Pattern):
        if spec.groups != 1:
            raise ExtractorError(f"the regex /{spec.pattern}/ needs exactly one group ( )")
        return _regex_extractor(spec)
    if callable(spec):
        return _callable_extractor(spec)
    if not isinstance(spec, str):
        raise ExtractorError(f"extract= got {type(spec).__name__}; see the list of accepted forms")
    if spec in _REGISTRY:
        return _callable_extractor(_REGISTRY[spec])
    head, sep, arg = spec.partition(":")
    if sep and head in _PARAMETRIC:
        return _PARAMETRIC[head](arg)
    if "(" in spec:
        try:
            pattern = re.compile(spec, re.S)
        except re.error as exc:
            raise ExtractorError(f"extract={spec!r} is not a valid regex: {exc}") from None
        return _one(pattern)
    raise ExtractorError(
        f"unknown extract={spec!r}. Use one of: {', '.join(names())}, a regex with one group "
        "like r'Answer: (\\w+)', a pydantic model class, a function, or a list of these."
    )


def build_extractor(spec: Any) -> Extractor:
    """Turn an ``extract=`` spec into one function; raises ``ExtractorError`` on a bad spec."""
    if spec is None:
        return normalize_text
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ExtractorError("extract=[] is empty: use None for the whole reply")
        steps = [_one(s) for s in spec]

        def chain(value: Any) -> Any:
            for step in steps:
                value = step(value)
            return value

        return chain
    return _one(spec)


def apply(extractor: Extractor, output: str | None) -> tuple[Any, bool, str | None]:
    """Run ``extractor`` on one reply: ``(answer, valid, error)``, never raising."""
    if output is None:
        return None, False, None
    try:
        answer = extractor(output)
    except ExtractionError as exc:
        return None, False, f"extract: {exc}"
    if isinstance(answer, str):
        answer = answer.strip()
    return answer, True, None
