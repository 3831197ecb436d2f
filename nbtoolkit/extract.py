"""Reading an answer out of a model's reply, through a registry of named extractors.

``extract=`` takes a name (``"number"``, ``"choice"``, ``"json"``, ``"json:<field>"``), a regex
with one group, a pydantic model class, a callable, or a list of these applied in order:

>>> extractor = build_extractor(["json:answer", "number"])
>>> extractor('```json\\n{"answer": "$1,080.00"}\\n```')
'1080'

A step that cannot find its answer raises ``ExtractionError``; the runner records the row as
``valid=False`` with that message, never drops it. Register your own with ``register``:

>>> register("yesno", lambda text: "yes" if "yes" in text.lower() else "no")
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import ExtractionError, ExtractorError, clip

Extractor = Callable[[Any], Any]

_REGISTRY: dict[str, Extractor] = {}
# Extractors that take an argument after a colon, like "json:answer".
_PARAMETRIC: dict[str, Callable[[str], Extractor]] = {}


def register(name: str, extractor: Extractor | None = None, *, parametric: bool = False) -> Any:
    """Register an extractor under ``name`` (usable as a decorator).

    With ``parametric=True`` the registered object is a factory taking the text after
    ``name:`` and returning an extractor, as ``json:<field>`` does.
    """

    def add(fn: Any) -> Any:
        (_PARAMETRIC if parametric else _REGISTRY)[name] = fn
        return fn

    return add(extractor) if extractor is not None else add


def names() -> list[str]:
    """The registered extractor names, parametric ones shown as ``name:<arg>``."""
    return sorted(_REGISTRY) + sorted(f"{n}:<field>" for n in _PARAMETRIC)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise ExtractionError("nothing to read: the previous step gave None")
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def normalize_text(value: Any) -> str:
    """The whole reply, whitespace collapsed; an empty reply is not an answer."""
    text = " ".join(_text(value).split())
    if not text:
        raise ExtractionError("the reply is empty")
    return text


# --- numbers ---------------------------------------------------------------------------------

# Units may follow a number ("48g", "5km"); letters before it ("A1", "x2") make it a name.
# A minus sign must touch its digits: "- 7" is a bullet or a subtraction, not -7.
_NUMBER = re.compile(r"(?<![\w.])-?(?:\$\s?)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)|-?\.\d+")


def canonical_number(token: str) -> str:
    """``"$1,080.00"`` -> ``"1080"``; ``"0.50"`` -> ``"0.5"``; ``"-3"`` -> ``"-3"``."""
    cleaned = token.replace("$", "").replace(",", "").replace(" ", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ExtractionError(f"not a number: {token!r}") from None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


@register("number")
def extract_number(value: Any) -> str:
    """The numeric answer in the text, normalised so equal amounts compare equal.

    A worked reply's last number is its conclusion; a one-line answer's first number is its
    answer ("18 dollars"). ``$``, ``,`` and a trailing ``.0`` are normalised away.
    """
    if isinstance(value, bool):
        raise ExtractionError("a yes/no value is not a number")
    if isinstance(value, (int, float, Decimal)):
        return canonical_number(str(value))
    text = _text(value)
    found = _NUMBER.findall(text)
    if not found:
        raise ExtractionError(f"no number in {_preview(text)}")
    # A one-line answer ("18 dollars", "$18 (9 eggs x $2)") states its answer first, as
    # graders of GSM8K-style JSON answers read it; a worked reply concludes with its last.
    one_line = "\n" not in text.strip() and len(text) <= 120
    pick = found[0] if one_line else found[-1]
    return canonical_number(pick)


# --- multiple choice -------------------------------------------------------------------------

# A capital letter is an answer wherever it stands; a lowercase one only when it ends the
# reply ("Answer: c"), so words such as "a" in "the answer is a tricky one" are not, nor
# the pronoun in "Answer: I think it is (B)".
_LETTER = r"((?-i:[A-HJ]|I(?!\s+[a-z']))\b|[a-j](?=[\)\]*.]*\s*$))"
_CHOICE_PATTERNS = [
    re.compile(r"answer\s*(?:is|:)?\s*(?:option\s*)?[\(\[*\s]*" + _LETTER + r"[\)\]*]?", re.I),
    re.compile(r"\b(?:option|choice)\s*[\(\[]?" + _LETTER, re.I),
    re.compile(r"^\s*[\(\[*]*([A-J])[\)\]*.:]*(?:\s|$)"),
    re.compile(r"\(([A-J])\)"),
    re.compile(r"\*\*([A-J])\*\*"),
]


@register("choice")
def extract_choice(value: Any) -> str:
    """A multiple-choice letter: ``The answer is (C)``, ``Answer: c``, ``(B)``, ``D.``."""
    text = _text(value).strip()
    if re.fullmatch(r"[\(\[]?([A-Ja-j])[\)\].]?", text):
        return text.strip("()[].").upper()
    for pattern in _CHOICE_PATTERNS:
        matches = pattern.findall(text)
        if matches:
            # "I first thought (A), but the answer is (C)": the last statement wins.
            return str(matches[-1]).upper()
    raise ExtractionError(f"no answer letter in {_preview(text)}")


# --- JSON ------------------------------------------------------------------------------------

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
# Models put raw newlines inside JSON strings; strict=False accepts them.
_decoder = json.JSONDecoder(strict=False)


# A backslash that starts no JSON escape, as in LaTeX "\\(" written inside a JSON string.
_BAD_ESCAPE = re.compile(r'\\(?!["\\/bfnrtu])')


def find_json(text: str) -> dict[str, Any]:
    """The first JSON object in ``text``: inside a fenced block first, else anywhere.

    Replies that are almost JSON (raw newlines or LaTeX backslashes inside strings) are read
    the way a person would read them.
    """
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    if "\\" in text:
        candidates += [_BAD_ESCAPE.sub(r"\\\\", c) for c in candidates]
    for chunk in candidates:
        start = chunk.find("{")
        while start != -1:
            try:
                obj, _ = _decoder.raw_decode(chunk, start)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                return obj
            start = chunk.find("{", start + 1)
    raise ExtractionError(f"no JSON object in {_preview(text)}")


@register("json")
def extract_json(value: Any) -> dict[str, Any]:
    """The first JSON object of the reply, fenced in ``` or not."""
    if isinstance(value, dict):
        return value
    return find_json(_text(value))


@register("json", parametric=True)
def json_field(path: str) -> Extractor:
    """``json:answer`` reads the ``answer`` field; ``json:a.b`` reads a nested one."""
    if not path:
        raise ExtractorError("'json:' needs a field name, e.g. extract='json:answer'")
    keys = path.split(".")

    def extract(value: Any) -> Any:
        try:
            obj: Any = extract_json(value)
        except ExtractionError:
            # Almost-JSON (an unescaped quote, a stray backslash) still shows its field plainly.
            if len(keys) == 1 and isinstance(value, str):
                match = _field_pattern(keys[0]).search(value)
                if match:
                    return match.group(1) if match.group(1) is not None else match.group(2)
            raise
        for key in keys:
            if not isinstance(obj, dict) or key not in obj:
                raise ExtractionError(f"the JSON reply has no field '{path}'")
            obj = obj[key]
        if obj is None or obj == "":
            raise ExtractionError(f"the JSON field '{path}' is empty")
        return obj

    extract.__name__ = f"json:{path}"
    return extract


def _field_pattern(key: str) -> re.Pattern[str]:
    return re.compile(
        r'"' + re.escape(key) + r'"\s*:\s*(?:"((?:[^"\\\n]|\\.)*)"|(-?[\d.,]+|true|false))'
    )


# --- building an extractor from a spec -------------------------------------------------------


def _regex_extractor(pattern: re.Pattern[str]) -> Extractor:
    def extract(value: Any) -> str:
        text = _text(value)
        match = pattern.search(text)
        if match is None:
            raise ExtractionError(f"/{pattern.pattern}/ does not match {_preview(text)}")
        return match.group(1)

    return extract


def _pydantic_extractor(cls: type) -> Extractor:
    from pydantic import ValidationError

    def extract(value: Any) -> Any:
        data = value if isinstance(value, dict) else find_json(_text(value))
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


def _preview(text: str, width: int = 60) -> str:
    return repr(clip(" ".join(text.split()), width, "…"))
