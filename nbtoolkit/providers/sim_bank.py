"""The simulated models' question bank: arithmetic word problems with their right working
and the plausible slips a model makes, built deterministically from SHA-256 (see ``sim``).

Pure standard library; ``sim`` builds the replies on top of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

# --------------------------------------------------------------------------- hashing


def unit(*parts: object) -> float:
    """A uniform float in [0, 1) that depends only on *parts*.

    The parts are joined with a control character (absent from tags, names and
    numbers) so that ("ab", "c") and ("a", "bc") hash differently. Only the top 53 bits are used: a
    64-bit integer divided by 2**64 can round up to exactly 1.0 as a float.
    """
    data = "\x1f".join(str(p) for p in parts).encode("utf-8")
    digest = hashlib.sha256(data).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)


class _Draw:
    """A tiny deterministic number source for building the question bank.

    Hash-based rather than ``random.Random(seed)`` so the bank cannot change with
    the Python version or with anything else that touches the ``random`` module.
    """

    def __init__(self, *key: object) -> None:
        self._key = key
        self._n = 0

    def unit(self) -> float:
        self._n += 1
        return unit("bank", *self._key, self._n)

    def integer(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi], both ends included."""
        return lo + int(self.unit() * (hi - lo + 1))

    def pick(self, options: Sequence[str]) -> str:
        return options[int(self.unit() * len(options))]


# --------------------------------------------------------------------- question bank


@dataclass(frozen=True)
class Question:
    """One arithmetic word problem of the built-in bank."""

    id: str
    question: str
    answer: int
    topic: str


# A number and the working that leads to it, as a model would write it.
_Worked = tuple[int, str]


@dataclass(frozen=True)
class _Item:
    """A generated problem with its right working and its plausible slips.

    Kept apart from ``Question`` so the public dataclass stays the four fields users
    see in a DataFrame, while the simulation still knows *how* each wrong answer
    comes about (a dropped step, a wrong operation...) and can explain it.
    """

    question: str
    topic: str
    right: _Worked
    slips: tuple[_Worked, ...]  # template-specific mistakes, most plausible first


_NAMES = ("Maya", "Omar", "Lena", "Kofi", "Priya", "Tom", "Aiko", "Diego", "Sara", "Ivan")


def _baking(d: _Draw, variant: int) -> _Item:
    if variant == 0:
        # The README's example, kept literal so the docs can quote it.
        a, b, c, food = 12, 18, 150, "cookies"
    else:
        food = d.pick(("cookies", "muffins", "bagels", "rolls"))
        a, b = d.integer(6, 15), d.integer(12, 24)
        c = 5 * d.integer(8, (a * b - 20) // 5)  # leaves at least 20, so the answer is positive
    total = a * b
    ans = total - c
    return _Item(
        question=f"A baker makes {a} trays of {b} {food} and sells {c}. How many {food} are left?",
        topic="baking",
        right=(ans, f"{a} × {b} = {total} {food}, and {total} - {c} = {ans}"),
        slips=(
            (total, f"{a} × {b} = {total}"),  # forgot the ones sold
            (total + c, f"{a} × {b} = {total} {food}, and {total} + {c} = {total + c}"),
            (
                (a - 1) * b - c,
                f"{a - 1} × {b} = {(a - 1) * b} {food}, and {(a - 1) * b} - {c} = {(a - 1) * b - c}",
            ),
        ),
    )


def _money(d: _Draw, variant: int) -> _Item:
    name = d.pick(_NAMES)
    thing = d.pick(("notebooks", "pens", "folders", "markers"))
    a, b = d.integer(3, 9), d.integer(2, 9)
    cost = a * b
    c = next(bill for bill in (20, 50, 100) if bill > cost + 1)
    ans = c - cost
    return _Item(
        question=(
            f"{name} buys {a} {thing} at ${b} each and pays with a ${c} bill. "
            f"How many dollars of change should {name} get?"
        ),
        topic="money",
        right=(ans, f"{a} × ${b} = ${cost}, and ${c} - ${cost} = ${ans}"),
        slips=(
            (cost, f"{a} × ${b} = ${cost}"),  # answered the cost, not the change
            (c - b, f"${c} - ${b} = ${c - b}"),  # paid for one item only
        ),
    )


def _speed(d: _Draw, variant: int) -> _Item:
    vehicle = d.pick(("train", "coach", "truck"))
    a, b, c = 5 * d.integer(8, 18), d.integer(2, 6), d.integer(12, 75)
    ans = a * b + c
    return _Item(
        question=(
            f"A {vehicle} travels at {a} km per hour for {b} hours, then another {c} km. "
            "How many kilometres does it travel in total?"
        ),
        topic="speed",
        right=(ans, f"{a} × {b} = {a * b} km, and {a * b} + {c} = {ans}"),
        slips=(
            (a * b, f"{a} × {b} = {a * b}"),  # dropped the last leg
            (a * b - c, f"{a} × {b} = {a * b} km, and {a * b} - {c} = {a * b - c}"),
            (a + c, f"{a} + {c} = {a + c}"),  # ignored the hours
        ),
    )


def _division(d: _Draw, variant: int) -> _Item:
    name = d.pick(_NAMES)
    thing = d.pick(("stickers", "marbles", "cards"))
    k, each = d.integer(3, 8), d.integer(6, 15)
    g = d.integer(1, each - 2)
    n = k * each
    ans = each - g
    return _Item(
        question=(
            f"{name} shares {n} {thing} equally among {k} friends, and each friend then "
            f"gives {g} away. How many {thing} does each friend have left?"
        ),
        topic="division",
        right=(ans, f"{n} ÷ {k} = {each} each, and {each} - {g} = {ans}"),
        slips=(
            (each, f"{n} ÷ {k} = {each}"),  # forgot the ones given away
            (n - g, f"{n} - {g} = {n - g}"),  # forgot to share
            (each + g, f"{n} ÷ {k} = {each} each, and {each} + {g} = {each + g}"),
        ),
    )


def _time(d: _Draw, variant: int) -> _Item:
    a, b = d.integer(4, 7), 5 * d.integer(7, 11)
    c, m = d.integer(2, 3), 5 * d.integer(1, 4)
    lessons, breaks = a * b, c * m
    ans = lessons + breaks
    return _Item(
        question=(
            f"A school day has {a} lessons of {b} minutes each and {c} breaks of {m} minutes "
            "each. How many minutes is that altogether?"
        ),
        topic="time",
        right=(
            ans,
            f"{a} × {b} = {lessons} minutes of lessons, {c} × {m} = {breaks} minutes of "
            f"breaks, and {lessons} + {breaks} = {ans}",
        ),
        slips=(
            (
                lessons + m,
                f"{a} × {b} = {lessons}, plus one break: {lessons} + {m} = {lessons + m}",
            ),
            (lessons, f"{a} × {b} = {lessons}"),  # forgot the breaks
            ((a + c) * b, f"{a + c} periods × {b} = {(a + c) * b}"),  # breaks as long as lessons
        ),
    )


def _ages(d: _Draw, variant: int) -> _Item:
    name = d.pick(_NAMES)
    a, b, c = d.integer(6, 14), d.integer(2, 9), d.integer(2, 10)
    now = 3 * a + b
    ans = now + c
    return _Item(
        question=(
            f"{name} is {a} years old. {name}'s aunt is {b} years older than three times "
            f"{name}'s age. How old will the aunt be in {c} years?"
        ),
        topic="ages",
        right=(ans, f"3 × {a} = {3 * a}, {3 * a} + {b} = {now} now, and {now} + {c} = {ans}"),
        slips=(
            (now, f"3 × {a} = {3 * a}, and {3 * a} + {b} = {now}"),  # answered "now"
            (3 * (a + c) + b, f"{a} + {c} = {a + c}, 3 × {a + c} = {3 * (a + c)}, plus {b}"),
            (3 * a + c, f"3 × {a} = {3 * a}, and {3 * a} + {c} = {3 * a + c}"),
        ),
    )


def _percent(d: _Draw, variant: int) -> _Item:
    thing = d.pick(("jacket", "lamp", "backpack", "pair of boots"))
    r = int(d.pick(("10", "20", "25", "30", "40", "50")))
    p = 20 * d.integer(2, 10)  # a multiple of 20 keeps every discount above a whole dollar
    off = p * r // 100
    ans = p - off
    return _Item(
        question=f"A {thing} costs ${p} and is on sale for {r}% off. What is the sale price in dollars?",
        topic="percent",
        right=(ans, f"{r}% of ${p} is ${off}, and ${p} - ${off} = ${ans}"),
        slips=(
            (off, f"{r}% of ${p} is ${off}"),  # answered the discount
            (p - r, f"${p} - {r} = ${p - r}"),  # took the percent as dollars
            (p + off, f"{r}% of ${p} is ${off}, and ${p} + ${off} = ${p + off}"),
        ),
    )


def _rounding(d: _Draw, variant: int) -> _Item:
    k = int(d.pick(("24", "30", "36", "40", "45", "48", "52")))
    full = d.integer(2, 6)
    extra = d.integer(1, k - 1)  # never a multiple of k: the leftover is the whole point
    n = k * full + extra
    ans = full + 1
    return _Item(
        question=(
            f"A school is taking {n} students on a trip. Each bus holds {k} students. "
            "How many buses are needed?"
        ),
        topic="rounding",
        right=(ans, f"{n} ÷ {k} = {full} remainder {extra}, so one more bus: {ans}"),
        slips=((full, f"{n} ÷ {k} = {full} remainder {extra}, so {full}"),),
    )


_TEMPLATES = (_baking, _money, _speed, _division, _time, _ages, _percent, _rounding)
_VARIANTS = 5  # 8 templates x 5 = 40 questions


def _build_bank() -> tuple[tuple[Question, ...], dict[str, _Item]]:
    questions: list[Question] = []
    items: dict[str, _Item] = {}
    # Variant-major order interleaves the topics, so any prefix of the bank
    # (e.g. ``QUESTIONS[:8]`` in a quick demo) covers every kind of problem.
    for variant in range(_VARIANTS):
        for template in _TEMPLATES:
            item = template(_Draw(template.__name__, variant), variant)
            qid = f"sim-{len(questions) + 1:03d}"
            value, working = item.right
            # The generic slips rewrite the last number of the right working, so it must end with it.
            assert working.endswith(str(value)), (qid, working)
            questions.append(Question(qid, item.question, value, item.topic))
            items[qid] = item
    return tuple(questions), items


_BANK = _build_bank()
QUESTIONS: tuple[Question, ...] = _BANK[0]
ITEMS: dict[str, _Item] = _BANK[1]


def question_bank() -> list[dict[str, object]]:
    """The bank as rows, ready for ``pandas.DataFrame(question_bank())``."""
    return [{"id": q.id, "question": q.question, "answer": q.answer} for q in QUESTIONS]


def squash(text: str) -> str:
    # Prompt templates re-wrap text; comparing whitespace-collapsed strings keeps a
    # question recognisable after "{question}\n\nAnswer with a number." and the like.
    return " ".join(text.split())


_SQUASHED = tuple((squash(q.question), q) for q in QUESTIONS)


def find_question(prompt: str) -> Question | None:
    """The bank question whose text appears in *prompt* (whitespace-insensitive), else None."""
    text = squash(prompt)
    found = [(len(s), q) for s, q in _SQUASHED if s in text]
    # If a prompt quotes several, the longest is the most specific match.
    return max(found, key=lambda pair: pair[0])[1] if found else None


def wrong_answers(qid: str) -> tuple[list[_Worked], list[float]]:
    """Plausible wrong answers for one question, with their relative weights.

    Template slips (a dropped step, a wrong operation) come first and weigh more,
    as those are what models get wrong most; then generic arithmetic slips on the
    last step (off by one, and off by ten, a carry, for multi-digit answers).
    """
    item = ITEMS[qid]
    value, working = item.right
    head = working[: -len(str(value))]
    generic = [(value + 1, head + str(value + 1)), (value - 1, head + str(value - 1))]
    if value >= 20:
        generic += [(value + 10, head + str(value + 10)), (value - 10, head + str(value - 10))]
    seen = {value}
    out: list[_Worked] = []
    weights: list[float] = []
    for weight, group in ((3.0, item.slips), (1.0, tuple(generic))):
        for number, text in group:
            if number > 0 and number not in seen:  # a negative count is not plausible
                seen.add(number)
                out.append((number, text))
                weights.append(weight)
    return out, weights
