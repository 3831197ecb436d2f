"""Where a reply marks its answer, and which mark wins: shared by ``number`` and ``choice``.

The marks, strongest first (a stronger kind of mark always wins over a weaker one):

0. the last ``\\boxed{...}`` / ``\\fbox{...}``;
1. a ``#### 18`` line;
2. "final answer is/:" (also in markdown bold);
3. "the answer is/:", "Answer:", "the correct answer/option/choice is";
then, in the extractors, the ``answer`` field of a JSON object (marks inside that object,
in its ``reasoning`` say, are not the reply's), and only when nothing marks the answer, the
reply's unmarked text.

A reply that answers and then writes a new question of its own (``#### 18`` then
``Question: ... #### 3``) ends where that question starts. Several marks of the strongest
kind present that disagree: the last ``\\boxed`` wins; otherwise the last wins when the reply
corrects itself between them ("Wait, I misread", "Actually", ...), and when it does not, the
reply is invalid and the message names both answers.

What a marked answer's clause says is read, not only its first value: "the answer is not 12;
it's 15" gives 15 (what follows "but", ";", "rather", "instead", "it is"), "the answer is not
12" alone gives nothing (and a reply whose marks give nothing but such denials is invalid, not
read from its unmarked text), and "the answer is 12? No wait, 15" doubts its own value: that
mark gives nothing, and the reply is invalid unless a later mark settles it.

A reply that ends inside a JSON object (cut off by ``max_tokens``, see
``jsonread.cut_json_start``) is read by the extractors only before that object: nothing in an
unfinished object is a conclusion, so a mark before it stands and otherwise the reply is
invalid ("JSON cut off").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import ExtractionError

BOXED, HASHES, FINAL, ANSWER = 0, 1, 2, 3
KIND = {BOXED: "\\boxed", HASHES: "####", FINAL: "final answer", ANSWER: "answer is"}

_BOXED = re.compile(r"\\(?:boxed|fbox)\b\s*")
_HASHES = re.compile(r"^[ \t>*]*####[ \t]*([^\n]*)", re.M)
_FINAL = re.compile(
    r"\bfinal\s+answer\b[ \t*_]*(?:is\b|:|=|would\s+be\b|will\s+be\b)?[ \t*_:]*", re.I
)
# "the answer is 5" anywhere; "Answer: 5" only where "Answer" opens a line, so that
# "Here is how I arrived at the answer:" announces reasoning, not an answer.
_ANSWER = re.compile(
    r"\b(?:answer|correct\s+(?:option|choice))\b"
    r"(?:[ \t]+(?:to|for)[ \t]+(?:the|this|that|our|your)[ \t]+(?:question|problem)[ \t]*)?"
    r"[ \t*_]*(?:is\b|is(?=n['’]t\b)|would\s+be\b|will\s+be\b|should\s+be\b)[ \t*_:]*"
    r"|^[ \t#>*_-]*(?:(?:the|my|correct)[ \t]+)*answer\b[ \t*_]*[:=][ \t*_:]*",
    re.I | re.M,
)
# A new question written after the answer: a header at the start of a line.
_RUNON = re.compile(
    r"^[ \t]*(?:#+[ \t]*|\*\*)?(?:question|q|problem|human|user|instruction|exercise)"
    r"[ \t]*\d*[ \t]*\**[ \t]*[:.)]",
    re.I | re.M,
)
_CORRECTION = re.compile(
    r"\b(?:wait|actually|correction|corrected|misread|mistake|oops|sorry|on second thought"
    r"|re-?check|re-?calculat|re-?evaluat|let me redo|instead|revis)",
    re.I,
)
# A marked clause that opens by denying ("the answer is not 12", "isn't", "no longer").
_DENIED = re.compile(
    r"^[\s*_:]*(?:(?:is|was|would\s+be|will\s+be)\s+)?(?:not|never|no\s+longer|n['’]t)\b", re.I
)
# Where the clause turns to what the answer is.
_TURN = re.compile(
    r";|\bbut\b|\brather\b|\binstead\b|\bit(?:['’]s|\s+is|\s+was|\s+would\s+be)\b"
    r"|\banswer\s+is\b",
    re.I,
)
_SAYS = re.compile(
    r"[\s,]*(?:it(?:['’]s|\s+is|\s+was|\s+would\s+be)|the\s+answer\s+is)?[\s*_:]*", re.I
)
_SENTENCE_END = re.compile(r"\n|\.(?=\s|$)")
SEGMENT = 200  # characters read after a phrase marker: an answer follows its marker closely
MAX_MARKS = 20  # of each kind, the last ones read


@dataclass(frozen=True)
class Mark:
    kind: int  # BOXED, HASHES, FINAL or ANSWER
    start: int  # where the mark starts in the reply
    text: str  # the marked answer's text: the box's content, or what follows the phrase


def _box_content(text: str, pos: int) -> tuple[str, int]:
    """The content of the braces at ``pos`` (nesting counted), and where it ends."""
    if pos >= len(text):
        return "", pos
    if text[pos] != "{":  # \boxed 5
        m = re.compile(r"\S+").match(text, pos)
        return (m.group(0), m.end()) if m else ("", pos)
    depth = 0
    for i in range(pos, min(len(text), pos + 2000)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[pos + 1 : i], i + 1
    return text[pos + 1 : pos + 2000], len(text)


def _phrase_text(text: str, end: int) -> str:
    """What follows a phrase marker, to the end of its sentence or line.

    ``**Answer:**`` alone on its line is answered on the next line.
    """
    tail = text[end : end + SEGMENT]
    cut = _SENTENCE_END.search(tail)
    segment = tail[: cut.start()] if cut else tail
    if not segment.strip(" \t*_:") and cut is not None and tail[cut.start()] == "\n":
        rest = tail[cut.end() :].lstrip("\n \t")
        nxt = _SENTENCE_END.search(rest)
        segment = rest[: nxt.start()] if nxt else rest
    return segment


def marks(text: str, outside: tuple[int, int] | None = None) -> list[Mark]:
    """Every mark in ``text``, in reading order, the reply cut before a run-on question.

    Marks inside ``outside`` (the span of a JSON object whose ``answer`` field is read next)
    do not count: "the answer is" in its ``reasoning`` string is not the reply's answer. Of
    each kind, the last ``MAX_MARKS`` are read: a reply with thousands is degenerate, and its
    answer, if any, is near its end.
    """
    spots: list[tuple[int, int, int]] = []  # (start, kind, where its answer text starts)
    if "\\boxed" in text or "\\fbox" in text:
        spots += [(m.start(), BOXED, m.end()) for m in _BOXED.finditer(text)]
    if "####" in text:
        spots += [(m.start(), HASHES, m.start(1)) for m in _HASHES.finditer(text)]
    if "nswer" in text or "NSWER" in text or "orrect" in text or "ORRECT" in text:
        finals = [(m.start(), m.end()) for m in _FINAL.finditer(text)]
        spots += [(s, FINAL, e) for s, e in finals]
        covered = {i for s, e in finals for i in range(s, e)}
        # "final answer is" is a FINAL mark already, not also an ANSWER one.
        spots += [
            (m.start(), ANSWER, m.end()) for m in _ANSWER.finditer(text) if m.start() not in covered
        ]
    if outside is not None:
        spots = [sp for sp in spots if not outside[0] <= sp[0] < outside[1]]
    if not spots:
        return []
    spots.sort()
    runon = _RUNON.search(text, spots[0][0] + 1)
    if runon is not None:
        spots = [sp for sp in spots if sp[0] < runon.start()]
    kept: list[tuple[int, int, int]] = []
    for kind in (BOXED, HASHES, FINAL, ANSWER):
        kept += [sp for sp in spots if sp[1] == kind][-MAX_MARKS:]
    kept.sort()
    return [Mark(kind, start, _mark_text(text, kind, at)) for start, kind, at in kept]


def _mark_text(text: str, kind: int, at: int) -> str:
    if kind == BOXED:
        return _box_content(text, at)[0]
    if kind == HASHES:
        end = text.find("\n", at)
        return text[at : end if end != -1 else len(text)][:SEGMENT]
    return _phrase_text(text, at)


def runon_cut(text: str) -> str:
    """``text`` without a new question the model wrote after its first marked answer."""
    found = marks(text)
    if not found:
        return text
    runon = _RUNON.search(text, found[0].start + 1)
    return text[: runon.start()] if runon is not None else text


T = TypeVar("T")


def affirmed(segment: str) -> tuple[str, str | None]:
    """What a marked clause affirms, and why it affirms nothing when it does not.

    Returns ``(text, None)`` with the text to read a value from, or ``("", reason)`` when the
    clause only denies a value ("not 12") or doubts it ("12? No wait, 15").
    """
    denied = _DENIED.match(segment)
    if denied:
        turn = _TURN.search(segment, denied.end())
        if turn is None:
            shown = re.sub(r"^n['’]t", "isn't", segment.strip(" \t*_:"))[:60]
            return "", f"the reply says only what the answer is not ({shown!r})"
        rest = segment[turn.end() :]
        lead = _SAYS.match(rest)
        return affirmed(rest[lead.end() :] if lead else rest)
    asked = segment.find("?")
    if asked != -1 and _CORRECTION.search(segment, asked):
        return "", f"the reply doubts its marked answer ({segment.strip()[:60]!r})"
    return segment, None


def decide(
    text: str, found: list[Mark], read: Callable[[Mark], T | None], key: Callable[[T], Any]
) -> T | None:
    """The marked answer: the strongest kind of mark that ``read`` can read, by the rules above.

    ``read`` turns one mark into a value (None when the mark holds none); ``key`` says when two
    values are the same answer. None when no mark holds a value; ``ExtractionError`` when the
    marks deny or doubt their values and none settles it (see ``affirmed``).
    """
    unsaid: list[tuple[Mark, str]] = []
    clauses = []
    for mk in found:
        said, reason = affirmed(mk.text)
        if reason is not None:
            unsaid.append((mk, reason))
        clauses.append(Mark(mk.kind, mk.start, said))
    for kind in (BOXED, HASHES, FINAL, ANSWER):
        values = [(mk, v) for mk, v in _read_all(clauses, kind, read) if v is not None]
        if not values:
            continue
        last_mark, last = values[-1]
        # A later mark that doubts its own value leaves the reply undecided.
        doubted = [why for mk, why in unsaid if mk.start > last_mark.start and "doubts" in why]
        if doubted:
            raise ExtractionError(doubted[-1])
        if kind == BOXED:
            return last
        first_mark, first = next(
            ((mk, v) for mk, v in values if key(v) != key(last)), (last_mark, last)
        )
        if first_mark is last_mark:
            return last
        if _CORRECTION.search(text, first_mark.start, last_mark.start):
            return last
        raise ExtractionError(
            f"the reply marks two different answers ({KIND[kind]} {first} and {last}) "
            "and does not say which is final"
        )
    if unsaid:
        raise ExtractionError(unsaid[-1][1])
    return None


def _read_all(
    found: list[Mark], kind: int, read: Callable[[Mark], T | None]
) -> Iterator[tuple[Mark, T | None]]:
    for mk in found:
        if mk.kind == kind:
            yield mk, read(mk)
