"""Reading JSON out of a reply: ``json`` and ``json:<field>``."""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import ExtractionError, ExtractorError
from .registry import Extractor, preview, register, text_of

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
# Models put raw newlines inside JSON strings; strict=False accepts them.
_decoder = json.JSONDecoder(strict=False)
# A backslash that starts no JSON escape, as in LaTeX "\\(" written inside a JSON string.
_BAD_ESCAPE = re.compile(r'\\(?!["\\/bfnrtu])')
_OBJECT_START = re.compile(r'\{(?=\s*["}])')
_MAX_TRIES = 50


def find_json(text: str) -> dict[str, Any]:
    """The first JSON object in ``text``: inside a fenced block first, else anywhere.

    Replies that are almost JSON (raw newlines or LaTeX backslashes inside strings) are read
    the way a person would read them.
    """
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    if "\\" in text:
        candidates += [_BAD_ESCAPE.sub(r"\\\\", c) for c in candidates]
    for chunk in candidates:
        # Only a "{" that opens a key or an empty object can start one: LaTeX's \frac{1}{2}
        # braces are not tried. A bounded number of tries keeps a degenerate reply cheap.
        for tries, opening in enumerate(_OBJECT_START.finditer(chunk)):
            if tries >= _MAX_TRIES:
                break
            try:
                obj, _ = _decoder.raw_decode(chunk, opening.start())
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                return obj
    if ends_inside_json(text):
        raise cut_off(text)
    raise ExtractionError(f"no JSON object in {preview(text)}")


def ends_inside_json(text: Any) -> bool:
    """True when ``text`` ends inside a JSON object: after its first ``{`` (that opens a key),
    an object or a string is still open. A reply cut by ``max_tokens`` looks like this."""
    return cut_json_start(text) is not None


def cut_json_start(text: Any) -> int | None:
    """Where the JSON object that ``text`` ends inside opens (its outermost ``{``), else None.

    Nothing the reply wrote from there on is a conclusion: the object was cut off before it
    could state its answer.
    """
    if not isinstance(text, str):
        return None
    opening = _OBJECT_START.search(text)
    if opening is None:
        return None
    depth, in_string, escaped, start = 0, False, False, opening.start()
    for i in range(opening.start(), len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
    return start if depth > 0 or in_string else None


def cut_off(text: str) -> ExtractionError:
    """The error of a reply that ends inside its JSON object (see ``cut_json_start``)."""
    tail = " ".join(text.split())[-40:]
    return ExtractionError(
        f"JSON cut off: the reply ends inside its JSON object (…{tail!r}) before it states "
        "an answer; raise max_tokens if the model ran out of room"
    )


class FieldValue(str):
    """A string read from a JSON answer field (``json:<field>``, or the ``answer`` field a
    marker rule reads): a short stated answer, which the ``number`` rules read as one (its
    first number: ``"18 dollars"``, ``"$18 (9 eggs x $2)"``), not as a worked reply."""

    __slots__ = ()


@register("json")
def extract_json(value: Any) -> dict[str, Any]:
    """The first JSON object of the reply, fenced in ``` or not."""
    if isinstance(value, dict):
        return value
    return find_json(text_of(value))


def answer_field(text: str) -> tuple[Any, int, int] | None:
    """The ``answer`` field of the reply's JSON object (any case of the key), and where the
    object lies in ``text`` (roughly: first ``{`` to last ``}``), else None."""
    if "{" not in text or "answer" not in text.lower():
        return None
    try:
        obj = find_json(text)
    except ExtractionError:
        return None
    for key, value in obj.items():
        if key.lower() in ("answer", "final_answer", "final answer") and value not in (None, ""):
            return value, text.find("{"), text.rfind("}") + 1
    return None


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
                    found = match.group(1) if match.group(1) is not None else match.group(2)
                    return FieldValue(found)
            raise
        for key in keys:
            if not isinstance(obj, dict) or key not in obj:
                raise ExtractionError(f"the JSON reply has no field '{path}'")
            obj = obj[key]
        if obj is None or obj == "":
            raise ExtractionError(f"the JSON field '{path}' is empty")
        return FieldValue(obj) if isinstance(obj, str) else obj

    extract.__name__ = f"json:{path}"
    return extract


def _field_pattern(key: str) -> re.Pattern[str]:
    return re.compile(
        r'"' + re.escape(key) + r'"\s*:\s*(?:"((?:[^"\\\n]|\\.)*)"|(-?[\d.,]+|true|false))'
    )
