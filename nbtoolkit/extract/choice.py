"""``choice`` and ``choice:ABCD``: a multiple-choice letter, A to J (MMLU-Pro has ten)."""

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
_STANDALONE = re.compile(r"\(([A-J])\)|\*\*([A-J])\*\*")


def letter_at(text: str, pos: int = 0, *, opening: bool = False) -> str | None:
    """The answer letter at ``pos`` (after any decoration), if one stands there.

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
    return ch.upper()


def read_choice(text: str, *, json_field: bool = True) -> str:
    # A reply cut off inside its JSON object: only a letter marked before that object stands
    # (the same rule as ``number``'s).
    cut = cut_json_start(text) if json_field else None
    if cut is not None:
        found = markers.marks(text[:cut])
        letter = markers.decide(text, found, lambda mk: letter_at(mk.text), str.upper)
        if letter is not None:
            return letter
        raise cut_off(text)
    field = answer_field(text) if json_field else None
    found = markers.marks(text, outside=field[1:] if field else None)
    if found:
        letter = markers.decide(text, found, lambda mk: letter_at(mk.text), str.upper)
        if letter is not None:
            return letter
        text = markers.runon_cut(text)
    if field is not None and isinstance(field[0], str):
        try:
            return read_choice(field[0], json_field=False)
        except ExtractionError:
            pass
    options = _OPTION.findall(text)
    if options:
        return str(options[-1])
    alone = letter_at(text.strip(), opening=True)
    if alone is not None:
        stripped = text.strip()
        lead = _LEAD.match(stripped)
        after = stripped[(lead.end() if lead else 0) + 1 :]
        # "B.", "(B)", "**B**", "B) Paris", "$\textbf{(B)}$": a letter that opens the reply.
        if not after or after[0] in ").:]*}$":
            return alone
    standalone = _STANDALONE.findall(text)
    if standalone:
        a, b = standalone[-1]
        return a or b
    raise ExtractionError(f"no answer letter in {preview(text)}")


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
