"""``choice`` and ``choice:ABCD``: a multiple-choice letter, A to J (MMLU-Pro has ten).

A marked letter wins; lines that restate the options are not answers; several letters given
as one answer, or named with none marked, make the reply invalid (``read_choice``).
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ExtractionError, ExtractorError
from . import markers
from .jsonread import answer_field, cut_json_start, cut_off
from .registry import Extractor, preview, register, text_of

LETTERS = "ABCDEFGHIJ"

# What may stand between a marker and its letter: spaces, markdown, "$", "(", LaTeX
# \text{ / \textbf{ / \mathrm{ / \boxed{, and the words "option"/"choice"/"letter".
_LEAD = re.compile(
    r"(?:[\s*_:$({\[]|\\(?:text(?:bf|it|rm)?|math(?:rm|bf)|boxed|fbox)\b\s*\{?"
    r"|\b(?:option|choice|letter)\b)*",
    re.I,
)
_OPTION = re.compile(r"\b(?i:option|choice)\s*[(\[]?\s*([A-J])(?![\w'])")
_END = re.compile(r"[\s).\]*:$}]+")
_CLOSE = re.compile(r"[)\]*}$]*")
_STANDALONE = re.compile(r"\(([A-J])\)|\*\*([A-J])\*\*")
# Between two letters given together as one answer: "A and C", "B, C", "B/C", "A or C".
_JOIN = re.compile(
    r"[ \t]*(?:[,/&+][ \t]*(?:(?:and|or)\b[ \t]*)?|(?:and|or|as[ \t]+well[ \t]+as)\b[ \t]*)", re.I
)
# A letter that starts a new clause ("C, A is wrong") is not part of the list before it.
_CLAUSE = re.compile(r"[ \t]+(?:is|was|are|were|seems|looks|appears)\b", re.I)
# A line that labels an option: "A) Paris", "B. London", "(C) Rome", "**D)** Oslo", "- E: Bern".
_LABEL = re.compile(
    r"^[ \t>*_-]*(?:\*\*)?[(\[]?([A-Ja-j])(?:[).:\]]|\*\*)[).:\]*]*(?=[ \t]|$)", re.M
)
# "C) Rome" opening a line that is not in a list of options (those labels are blanked first).
_LINE_LABEL = re.compile(r"^[ \t>*_-]*(?:\*\*)?([A-J])\)", re.M)
# Choice marks the shared markers do not know, read as "the answer is" marks: a letter after
# "Correct: " (a line), "I choose/pick/select/go with", "my choice is", "the answer must be"...
_PICK_BEFORE = re.compile(
    r"\bI(?:'ll|’ll|[ \t]+will|'d|’d|[ \t]+would)?[ \t]+"
    r"(?:choose|chose|pick|picked|select|selected|go[ \t]+with|went[ \t]+with)\b[ \t:]*"
    r"|\b(?:my|the)[ \t]+(?:choice|pick|selection)[ \t]+(?:is|would[ \t]+be)\b[ \t:]*"
    r"|\banswer[ \t]+(?:must|has[ \t]+to|can[ \t]+only)[ \t]+be\b[ \t:]*"
    r"|^[ \t#>*_-]*(?:\*\*)?correct(?:[ \t]+(?:option|choice|letter))?(?:\*\*)?[ \t]*[:=][ \t*_:]*",
    re.I | re.M,
)
# ...and a letter before "is correct", "is the right answer", "is the answer", "is the best option".
_PICK_AFTER = re.compile(
    r"(?:\(([A-Ja-j])\)|\[([A-J])\]|\*\*\(?([A-J])\)?\*\*|\b([A-J]))\)?[ \t*]+is[ \t]+"
    r"(?:(?:indeed|clearly|definitely|obviously)[ \t]+)?(?:the[ \t]+)?"
    r"(?:correct|right|(?:(?:best|correct|right)[ \t]+)?(?:answer|option|choice))\b"
    r"(?![ \t]*\?)"
)


def _letter_span(text: str, pos: int, *, opening: bool = False) -> tuple[str, int] | None:
    """The answer letter at ``pos`` (after any decoration) and where it ends, if one stands there.

    A capital stands for itself, except the pronoun in "I think"; a lowercase letter only
    inside brackets or at the end ("answer is (c)", "Answer: c"), so the article in "the
    answer is a tricky one" is not an answer.
    """
    lead = _LEAD.match(text, pos)
    start = lead.end() if lead else pos
    if start >= len(text):
        return None
    ch = text[start]
    if ch.upper() not in LETTERS:
        return None
    rest = text[start + 1 : start + 40]
    if rest and (rest[0].isalnum() or rest[0] in "'’_"):
        return None  # the start of a word
    bracketed = start > 0 and text[start - 1] in "([{"
    if ch.islower():
        if not (bracketed or (rest and rest[0] in ")]") or not _END.sub("", rest)):
            return None
    elif ch == "I" and re.match(r"\s+[a-z']", rest):
        return None
    elif opening and ch == "A" and not bracketed and re.match(r" [a-z]", rest):
        return None  # a reply opening "A tricky one" starts with the article
    close = _CLOSE.match(text, start + 1)
    return ch.upper(), close.end() if close else start + 1


def letter_at(text: str, pos: int = 0, *, opening: bool = False) -> str | None:
    """The answer letter at ``pos`` (after any decoration), if one stands there."""
    span = _letter_span(text, pos, opening=opening)
    return span[0] if span else None


def letters_at(text: str, pos: int = 0, *, opening: bool = False) -> tuple[str, ...] | None:
    """The letters given together at ``pos``: ``("C",)`` for "(C) Rome", ``("A", "C")`` for
    "A and C" or "B/C"; None when no letter stands there."""
    span = _letter_span(text, pos, opening=opening)
    if span is None:
        return None
    found = [span[0]]
    end = span[1]
    while len(found) < len(LETTERS):
        join = _JOIN.match(text, end)
        if join is None or join.end() == end:
            break
        nxt = _letter_span(text, join.end())
        if nxt is None or _CLAUSE.match(text, nxt[1]):
            break
        found.append(nxt[0])
        end = nxt[1]
    return tuple(dict.fromkeys(found))


class _Several(ExtractionError):
    """Several letters given where one is asked for: final, whichever step finds them."""


def _several(letters: tuple[str, ...] | list[str], how: str) -> _Several:
    return _Several(
        f"the reply {how} several letters ({', '.join(letters)}); a choice answer is one "
        "letter: ask for 'The answer is (X)'"
    )


def _unlist(text: str) -> str:
    """``text`` with the labels of restated options ("A) Paris" / "B) London" / ...) blanked.

    Two or more lines opening with consecutive letters list the options: their labels are not
    answers. Blanked with spaces, so every position in ``text`` stays where it was.
    """
    labels = list(_LABEL.finditer(text))
    if len(labels) < 2:
        return text
    runs: list[list[re.Match[str]]] = []
    for m in labels:
        if runs and ord(m.group(1)) == ord(runs[-1][-1].group(1)) + 1:
            runs[-1].append(m)
        else:
            runs.append([m])
    chars = list(text)
    for run in runs:
        if len(run) >= 2:
            for m in run:
                chars[m.start() : m.end()] = " " * (m.end() - m.start())
    return "".join(chars)


def _picks(text: str, outside: tuple[int, int] | None) -> list[markers.Mark]:
    """The choice-only marks of ``text``, as "the answer is" marks of the shared rules."""
    found = [
        markers.Mark(markers.ANSWER, m.start(), text[m.end() : m.end() + markers.SEGMENT])
        for m in _PICK_BEFORE.finditer(text)
    ]
    found += [
        markers.Mark(markers.ANSWER, m.start(), m.group(0)) for m in _PICK_AFTER.finditer(text)
    ]
    if outside is not None:
        found = [mk for mk in found if not outside[0] <= mk.start < outside[1]]
    return found[-markers.MAX_MARKS :]


def read_choice(text: str, *, json_field: bool = True) -> str:
    """The one letter ``text`` gives as its answer, by these rules in order.

    1. A marked answer wins: the shared marks of ``markers`` (``\\boxed``, "final answer",
       "the answer is", "Answer:") and the choice-only ones ("Correct: C", "I choose C",
       "(B) is correct", "the answer must be C"), several disagreeing ones settled as there.
    2. The ``answer`` field of a JSON object.
    3. Unmarked: the letters the reply names ("option C", "(C)", "**C**", a reply that opens
       with its letter, "B." or "C) Rome"); exactly one letter is the answer.

    A reply cut off inside its JSON object gives only a letter marked before that object
    (the same rule as ``number``'s), else it is invalid ("JSON cut off").

    Lines restating the options ("A) Paris" / "B) London" / ...) name no letter. Raises
    ``ExtractionError`` when no letter is given, when several letters are given as one answer
    ("The answer is A and C", "B/C"), or when several are named and none is marked.
    """
    # A reply cut off inside its JSON object: only a letter marked before that object stands.
    cut_at = cut_json_start(text) if json_field else None
    if cut_at is not None:
        before = _unlist(text[:cut_at])
        early = sorted(markers.marks(before) + _picks(before, None), key=lambda mk: mk.start)
        letters = markers.decide(before, early, lambda mk: letters_at(mk.text), tuple)
        if letters is not None:
            if len(letters) > 1:
                raise _several(letters, "gives")
            return letters[0]
        raise cut_off(text)
    original, text = text, _unlist(text)
    field = answer_field(text) if json_field else None
    outside = field[1:] if field else None
    found = markers.marks(text, outside=outside)
    cut = markers.runon_cut(text)
    found = sorted(found + _picks(cut, outside), key=lambda mk: mk.start)
    if found:
        letters = markers.decide(text, found, lambda mk: letters_at(mk.text), tuple)
        if letters is not None:
            if len(letters) > 1:
                raise _several(letters, "gives")
            return letters[0]
        text = cut
    if field is not None and isinstance(field[0], str):
        try:
            return read_choice(field[0], json_field=False)
        except _Several:
            raise
        except ExtractionError:
            pass
    return _unmarked(text, original)


def _unmarked(text: str, original: str) -> str:
    stripped = text.strip()
    named: list[str] = []
    opening = letters_at(stripped, opening=False) if stripped else None
    if opening is not None and len(opening) > 1:
        raise _several(opening, "gives")
    alone = letter_at(stripped, opening=True)
    if alone is not None:
        lead = _LEAD.match(stripped)
        after = stripped[(lead.end() if lead else 0) + 1 :]
        # "B.", "(B)", "**B**", "B) Paris", "$\textbf{(B)}$", "C" alone on the first line.
        if not after or after[0] in ").:]*}$\n":
            named.append(alone)
    named += _OPTION.findall(text)
    named += _LINE_LABEL.findall(text)
    named += [a or b for a, b in _STANDALONE.findall(text)]
    distinct = list(dict.fromkeys(named))
    if len(distinct) == 1:
        return distinct[0]
    if distinct:
        raise _several(distinct, "marks no answer and names")
    raise ExtractionError(f"no answer letter in {preview(original)}")


@register("choice")
def extract_choice(value: Any) -> str:
    """A multiple-choice letter A-J: ``The answer is (C)``, ``Answer: c``, ``\\boxed{C}``, ``B.``."""
    return read_choice(text_of(value))


@register("choice", parametric=True)
def choice_among(letters: str) -> Extractor:
    """``choice:ABCD``: a letter among these; a marked letter outside them is invalid."""
    allowed = letters.replace(",", "").replace(" ", "").upper()
    if not allowed or any(c not in LETTERS for c in allowed) or len(set(allowed)) != len(allowed):
        raise ExtractorError(
            f"extract='choice:{letters}': list the letters once each, from A to J, "
            "e.g. extract='choice:ABCD'"
        )

    def extract(value: Any) -> str:
        letter = read_choice(text_of(value))
        if letter not in allowed:
            raise ExtractionError(f"{letter} is not one of the choices {', '.join(allowed)}")
        return letter

    extract.__name__ = f"choice:{allowed}"
    return extract
