"""``number``: the numeric answer of a reply, as an exact value in its canonical form."""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ..answers import NUMBER, canonical, number_value, prepare, value_of
from ..errors import ExtractionError
from . import markers
from .jsonread import answer_field
from .registry import preview, register, text_of

# "1 000 000" after a marker: a plain space between groups of exactly three digits.
_SPACED = re.compile(r"(?<![\d.,])\d{1,3}(?: \d{3})+(?![\d,/.]| \d)")
_ONE_LINE = 120


def read_marked(segment: str) -> Fraction | None:
    """The number a marked answer's text holds: after its last ``=``, the first number."""
    text = prepare(segment)
    if "=" in text:
        after = text.rsplit("=", 1)[1]
        if any(c.isdigit() for c in after):
            text = after
    if " " in text:
        text = _SPACED.sub(lambda m: m.group(0).replace(" ", ""), text)
    m = NUMBER.search(text)
    return value_of(m) if m else None


def _unmarked(text: str) -> Fraction:
    found = list(NUMBER.finditer(prepare(text)))
    if not found:
        raise ExtractionError(f"no number in {preview(text)}")
    # A one-line answer ("18 dollars", "$18 (9 eggs x $2)") states its answer first, as
    # graders of GSM8K-style JSON answers read it; a worked reply concludes with its last.
    one_line = "\n" not in text.strip() and len(text) <= _ONE_LINE
    return value_of(found[0] if one_line else found[-1])


def read_number(text: str, *, json_field: bool = True) -> Fraction:
    """The reply's number by the marker rules (see ``markers``), else its unmarked number."""
    field = answer_field(text) if json_field else None
    found = markers.marks(text, outside=field[1:] if field else None)
    if found:
        value = markers.decide(text, found, lambda mk: read_marked(mk.text), canonical)
        if value is not None:
            return value
        text = markers.runon_cut(text)
    if field is not None:
        value = number_value(field[0])
        if value is not None:
            return value
        if isinstance(field[0], str):
            return read_number(field[0], json_field=False)
    return _unmarked(text)


@register("number")
def extract_number(value: Any) -> str:
    """The numeric answer in the text, in canonical form (exact decimal, else ``p/q``).

    Marked answers first (``\\boxed{}``, ``####``, "final answer", "the answer is", a JSON
    ``answer`` field); only when nothing marks the answer, the last number of a worked reply
    or the first of a one-line one.
    """
    if isinstance(value, bool):
        raise ExtractionError("a yes/no value is not a number")
    if isinstance(value, (int, float, Decimal, Fraction)):
        exact = number_value(value)
        if exact is None:
            raise ExtractionError(f"{value!r} is not a finite number")
        return canonical(exact)
    return canonical(read_number(text_of(value)))
