"""``number``: the numeric answer of a reply, as an exact value in its canonical form.

Where the answer is: ``markers``. Without a mark, a reply concludes with its last number;
only the one-line value of a JSON answer field (a ``FieldValue``, from the ``answer`` field
or a ``json:<field>`` step) states it first, as the published GSM8K grader reads it. The
number read must stand alone, else the reply is invalid, never a guess: not one of two joined
by "or" (``3 or 4``), not glued to another by ``:``/``,``/``-``/``.`` (``3:45``; but
``2:00 pm`` is the hour 2,
``2024-01-05``, ``3-5``, ``1,2,3``, the decimal comma ``1,5``), not an operand of an
unevaluated sum (``10 - 3``). ``1 000 000`` and ``1.000.000`` group thousands, except that in
an answer field ``$9 500`` is invalid (the grader reads 9). A reply cut off inside its JSON
object reads only a mark before that object, else it is invalid ("JSON cut off").
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ..answers import NUMBER, canonical, number_value, prepare, value_of
from ..errors import ExtractionError
from . import markers
from .jsonread import FieldValue, answer_field, cut_json_start, cut_off
from .registry import preview, register, text_of

# "1 000 000": a plain space between groups of exactly three digits.
_SPACED = re.compile(r"(?<![\d.,])\d{1,3}(?: \d{3})+(?![\d,/.]| \d)")
# "1.000.000": two or more dots between groups of three digits can only group thousands.
_DOTTED = re.compile(r"(?<![\d.,])\d{1,3}(?:\.\d{3}){2,}(?![\d.,])")
# A number glued to another by ":", ",", "-" or "." with no space: a time (3:45), a date
# (2024-01-05), a range (3-5), a list (1,2,3), a decimal comma (1,5) or a version (1.2.3).
_GLUE_AFTER = re.compile(r"[:,.\-]\d")
_GLUE_BEFORE = re.compile(r"\d[:,.\-]$")
# "2:00 pm" is the hour 2 exactly (GSM8K's "latest time" questions are graded so).
_ON_THE_HOUR = re.compile(r":00(?![\d:])")
_COMPOUND = re.compile(r"[\d:,.\-]+")
_OR_AFTER = re.compile(r"\s+or\s+-?\$?\d")
# A range: "3 to 5", "3–5", "between 3 and 5", "from 3 to 5".
_RANGE_AFTER = re.compile(r"[ \t]*(?:to|through|thru|till|until|–|—)[ \t]*-?\$?\d", re.I)
_AND_AFTER = re.compile(r"[ \t]+and[ \t]+-?\$?\d", re.I)
_BETWEEN_BEFORE = re.compile(r"\bbetween[ \t]+-?\$?$", re.I)
_OR_BEFORE = re.compile(r"\d\S*\s+or\s+-?\$?$")
# An operand of an unevaluated sum ("10 - 3" with no "= 7"): not the result.
_OPERATOR_AFTER = re.compile(r"[ \t]*[-+*/×÷][ \t]*\$?\d")
_OPERATOR_BEFORE = re.compile(r"\d[ \t]*[-+*/×÷][ \t]*\$?-?$")
_ONE_LINE = 120
# A number that is only part of a value: a power (10^2, 2**10), a multiple of π (3\pi), a
# root (\sqrt{2}, √16) or a scale word (2 million, 1.5k). Reading its digits alone would be
# a wrong answer: invalid, with a pointer to extract="math".
_PART_AFTER = re.compile(
    r"[ \t]*(?:\^|\*\*[ \t]*-?\d|\\pi\b|π|\\sqrt|√)"
    r"|[ \t]*(?:million|billion|trillion|thousand|hundred|dozen|k|squared|cubed)\b"
    r"|[ \t]+to[ \t]+the[ \t]+(?:\w+[ \t]+)?power\b",
    re.I,
)
_PART_BEFORE = re.compile(r"(?:\\sqrt[ \t]*\{?|√|\bsqrt\(|\^[ \t]*\{?-?|\d[ \t]*\*\*[ \t]*-?)$")
# Where a marked answer's own clause ends: an aside after it ("18 (note: 1 egg = 2 dollars)",
# "18 where x = 2") is not where its "=" is read.
_ASIDE = re.compile(r"[(;]|\s(?:where|since|because|as|if|when|note|i\.e\.|e\.g\.)\b", re.I)


def _joined(text: str) -> str:
    if " " in text:
        text = _SPACED.sub(lambda m: m.group(0).replace(" ", ""), text)
    if "." in text:
        text = _DOTTED.sub(lambda m: m.group(0).replace(".", ""), text)
    return text


def _value(text: str, m: re.Match[str], *, operand: bool = True) -> Fraction:
    """The value of the number ``m`` chose in ``text``, unless it is not one number alone.

    A number glued to another (``3:45``, ``2024-01-05``, ``3-5``, ``1,2,3``, ``1,5``) or one
    of two offered with "or" (``3 or 4``) is not an answer to guess from: ``ExtractionError``.
    With ``operand``, neither is an operand of an unevaluated sum (``10 - 3``).
    """
    before = text[max(0, m.start() - 2) : m.start()]
    after = text[m.end() : m.end() + 2]
    on_the_hour = _ON_THE_HOUR.match(text, m.end()) and not _GLUE_BEFORE.search(before)
    if not on_the_hour and (_GLUE_AFTER.match(after) or _GLUE_BEFORE.search(before)):
        left = text[: m.start()]
        lead = len(left) - len(left.rstrip("0123456789:,.-"))
        token = _COMPOUND.match(text, m.start() - lead)
        shown = token.group(0).strip(",.:-") if token else m.group(0)
        raise ExtractionError(
            f"{shown!r} is not one number (a time, date, range, list or decimal comma?); "
            "ask for the answer as a single number"
        )
    if _PART_AFTER.match(text, m.end()) or _PART_BEFORE.search(
        text[max(0, m.start() - 8) : m.start()]
    ):
        piece = text[max(0, m.start() - 8) : m.end() + 20].strip()
        raise ExtractionError(
            f"{piece!r} is not one plain number (a power, root, multiple of pi or a word like "
            "'million'); ask for the number written out, or use extract='math'"
        )
    before_it = text[max(0, m.start() - 40) : m.start()]
    if _RANGE_AFTER.match(text, m.end()) or (
        _BETWEEN_BEFORE.search(before_it) and _AND_AFTER.match(text, m.end())
    ):
        other = NUMBER.search(text, m.end())
        span = text[m.start() : other.end() if other else m.end()].strip()
        raise ExtractionError(f"the reply gives a range ({span}), not one number")
    ahead = _OR_AFTER.match(text, m.end())
    if ahead or _OR_BEFORE.search(text[max(0, m.start() - 40) : m.start()]):
        other = NUMBER.search(text, m.end()) if ahead else None
        pair = f"{m.group(0)} or {other.group(0)}" if other else f"… or {m.group(0)}"
        raise ExtractionError(f"the reply gives two answers ({pair.strip()}), not one")
    if operand and (
        _OPERATOR_AFTER.match(text, m.end())
        or _OPERATOR_BEFORE.search(text[max(0, m.start() - 40) : m.start()])
    ):
        line = text[: m.end() + 40].rsplit("\n", 1)[-1][-60:].strip()
        raise ExtractionError(
            f"{line!r} is an expression, not its result; ask for the result as one number"
        )
    return value_of(m)


def read_marked(segment: str) -> Fraction | None:
    """The number a marked answer's text holds: after its last ``=``, the first number."""
    text = _joined(prepare(segment))
    aside = _ASIDE.search(text)
    if aside and any(c.isdigit() for c in text[: aside.start()]):
        text = text[: aside.start()]
    if "=" in text:
        after = text.rsplit("=", 1)[1]
        if any(c.isdigit() for c in after):
            text = after
    m = NUMBER.search(text)
    return _value(text, m) if m else None


def _unmarked(text: str, *, field: bool) -> Fraction:
    prepared = _joined(prepare(text))
    found = list(NUMBER.finditer(prepared))
    if not found:
        raise ExtractionError(f"no number in {preview(text)}")
    # An answer field states its answer first ("18 dollars", "$18 (9 eggs x $2)"), as the
    # published GSM8K grader reads it; any other reply concludes with its last number
    # ("She had 3 boxes of 12, so 36.").
    first = field and "\n" not in text.strip() and len(text) <= _ONE_LINE
    if first:
        plain = prepare(text)
        head = NUMBER.search(plain)
        spaced = _SPACED.match(plain, head.start("num")) if head and head["num"] else None
        if spaced:
            # The published grader reads "$9 500" in an answer field as 9: rather than differ
            # from it silently either way, the row says what it found.
            raise ExtractionError(
                f"{spaced.group(0)!r} in an answer field: digit groups split by a space "
                "(9500, or 9 and 500?); ask for the answer without spaces"
            )
    # The field's first number is read even in "20 * 40 + 80 * 30 = 3200", as the grader does.
    chosen = found[0] if first else found[-1]
    if not first and len(found) > 1 and _ON_THE_HOUR.match(prepared, found[-2].end()):
        chosen = found[-2]  # "by 2:00 pm" ends on its minutes: the hour is the number
    return _value(prepared, chosen, operand=not first)


def read_number(text: str, *, json_field: bool = True, field: bool = False) -> Fraction:
    """The reply's number by the marker rules (see ``markers``), else its unmarked number.

    ``field``: ``text`` is the value of a JSON answer field, not a whole reply. A reply that
    ends inside a JSON object (cut off by ``max_tokens``) is read only before that object: a
    marked answer there stands; otherwise ``ExtractionError`` ("JSON cut off").
    """
    cut = None if field else cut_json_start(text)
    if cut is not None:
        found = markers.marks(text[:cut])
        value = markers.decide(text, found, lambda mk: read_marked(mk.text), canonical)
        if value is not None:
            return value
        raise cut_off(text)
    answer = answer_field(text) if json_field else None
    found = markers.marks(text, outside=answer[1:] if answer else None)
    if found:
        value = markers.decide(text, found, lambda mk: read_marked(mk.text), canonical)
        if value is not None:
            return value
        text = markers.runon_cut(text)
    if answer is not None:
        value = number_value(answer[0])
        if value is not None:
            return value
        if isinstance(answer[0], str):
            return read_number(answer[0], json_field=False, field=True)
    return _unmarked(text, field=field)


@register("number")
def extract_number(value: Any) -> str:
    """The numeric answer in the text, in canonical form (exact decimal, else ``p/q``).

    Marked answers first (``\\boxed{}``, ``####``, "final answer", "the answer is", a JSON
    ``answer`` field); only when nothing marks the answer, the reply's last number. The value
    of an answer field (``["json:answer", "number"]``) gives its first number when it is one
    line (``"18 dollars"``). A number that is not one number alone (``3:45``, ``3 or 4``) or a
    reply cut off inside its JSON object without a marked answer before it is invalid.
    """
    if isinstance(value, bool):
        raise ExtractionError("a yes/no value is not a number")
    if isinstance(value, (int, float, Decimal, Fraction)):
        exact = number_value(value)
        if exact is None:
            raise ExtractionError(f"{value!r} is not a finite number")
        return canonical(exact)
    return canonical(read_number(text_of(value), field=isinstance(value, FieldValue)))
