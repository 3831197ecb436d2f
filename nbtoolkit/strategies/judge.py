"""``judge`` and ``fuse``: one more model reads the panel's answers.

``judge``: the judge sees the candidate answers anonymised (``Answer 1``, ``Answer 2``...) in
a seeded random order (so no model always sits first: judges favour positions), and replies
with the number of the best answer or ``none``, with a short rationale. The reply is read
from JSON, or from plain words ("Answer 2", "none of them"). A judge that fails or cannot be
read falls back to the vote, and the verdict says so in ``note``.

``fuse``: an aggregator writes one answer from the candidates (Mixture-of-Agents). Its reply
goes through the run's ``extract=``; the confidence is the share of the panel that agrees
with it (or, for free text, how alike the panel's answers are to it).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from ..answers import shown
from ..errors import ExtractionError, StrategyError
from ..extract import find_json
from .base import Candidate, FollowUp, RowContext, Verdict, answer_key, restrict
from .medoid import similarity
from .vote import Vote

JUDGE_PROMPT = """You are judging answers to a task. The answers are anonymous and in no particular order.

## Task
{task}

## Answers
{answers}

Which answer is correct and best? Reply with JSON only:
{{"choice": <the answer's number, or "none" if no answer is right>, "rationale": "<one or two sentences>"}}"""

FUSE_PROMPT = """You have been given several responses to the task below from different models. Critically evaluate them (some may be wrong), then write one single best response to the task. Follow the task's own instructions on the answer's format.

## Task
{task}

## Responses
{answers}"""

_NONE = re.compile(r"\bnone\b|\bno answer is (?:right|correct)\b|\bneither\b", re.I)
_NUMBER = re.compile(r"(?:answer|response|choice|#)\s*(\d+)", re.I)


def _distinct(candidates: list[Candidate]) -> list[Candidate]:
    """One candidate per distinct answer, first in model order kept."""
    seen: dict[str, Candidate] = {}
    for c in sorted(candidates, key=lambda c: (c.position, c.sample)):
        if c.valid:
            seen.setdefault(answer_key(c.answer), c)
    return list(seen.values())


def _shown(c: Candidate) -> str:
    text = c.output if c.output is not None else str(c.answer)
    return text.strip()[:4000]  # a runaway reply must not blow the judge's context


def parse_choice(reply: str, n: int) -> int | None | str:
    """The judge's pick: 1..n, ``None`` for "none is right", or ``"unreadable"``."""
    try:
        choice: Any = find_json(reply).get("choice")
    except ExtractionError:
        choice = None
    if isinstance(choice, str):
        if _NONE.search(choice) or choice.strip().lower() in {"null", ""}:
            return None
        digits = re.findall(r"\d+", choice)
        choice = int(digits[0]) if digits else None
    if isinstance(choice, bool):
        choice = None
    if isinstance(choice, (int, float)) and 1 <= int(choice) <= n:
        return int(choice)
    found = _NUMBER.findall(reply)
    if found and 1 <= int(found[-1]) <= n:
        return int(found[-1])
    if _NONE.search(reply):
        return None
    return "unreadable"


class _AskOneMore:
    """What judge and fuse share: one more model per row, and the vote when it fails.

    Subclasses say who asks (``role``), build the follow-up, and ``read`` a reply.
    """

    name = ""
    role = ""  # "judge" or "aggregator", for messages

    def __init__(self, model: Any = None, models: Sequence[str] | None = None) -> None:
        if model is None:
            cls = type(self).__name__
            error = StrategyError(
                f"{self.name} needs {'a judge' if self.name == 'judge' else 'an aggregator'} "
                f"model: strategy={cls}(model='gpt-4o')"
            )
            error.needs_model = self.name  # the front ends say how, each in its own terms
            raise error
        self.model = model
        self.models = list(models) if models is not None else None

    def conclude(
        self,
        row: RowContext,
        candidates: list[Candidate],
        reply: str | None,
        error: str | None,
        context: Any,
    ) -> Verdict:
        candidates = restrict(candidates, self.models)
        vote = Vote().combine(candidates)
        if context is None:
            return vote  # nothing was asked: the vote decides
        if reply is None:
            return _fallback(vote, f"{self.role} failed ({error}): fell back to vote")
        return self.read(reply, [c for c in candidates if c.valid], context, vote)

    def read(self, reply: str, valid: list[Candidate], context: Any, vote: Verdict) -> Verdict:
        raise NotImplementedError

    def combine(self, candidates: list[Candidate]) -> Verdict:
        return Vote(self.models).combine(candidates)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={str(getattr(self.model, 'id', self.model))!r})"


def _fallback(vote: Verdict, note: str) -> Verdict:
    return Verdict(
        vote.answer, vote.confidence, vote.agreement, vote.n_valid, note=note, fields=vote.fields
    )


def _agreement(answer: Any, valid: list[Candidate]) -> float:
    key = answer_key(answer)
    return sum(answer_key(c.answer) == key for c in valid) / max(1, len(valid))


class Judge(_AskOneMore):
    name = "judge"
    role = "judge"

    def followup(self, row: RowContext, candidates: list[Candidate]) -> FollowUp | None:
        options = _distinct(restrict(candidates, self.models))
        if len(options) < 2:
            return None  # nothing to judge: the vote decides
        random.Random(row.seed).shuffle(options)
        answers = "\n\n".join(f"### Answer {i}\n{_shown(c)}" for i, c in enumerate(options, 1))
        prompt = JUDGE_PROMPT.format(task=row.prompt, answers=answers)
        return FollowUp(self.model, [{"role": "user", "content": prompt}], context=options)

    def read(self, reply: str, valid: list[Candidate], context: Any, vote: Verdict) -> Verdict:
        pick = parse_choice(reply, len(context))
        if pick == "unreadable":
            return _fallback(vote, "judge reply unreadable: fell back to vote")
        if pick is None:
            return Verdict(None, 0.0, 0.0, len(valid), note="judge: no answer is right")
        chosen = context[int(pick) - 1]
        agree = _agreement(chosen.answer, valid)
        # The judge's pick counts; the panel's support for it says how sure to be.
        return Verdict(
            shown(chosen.answer), confidence=(1 + agree) / 2, agreement=agree, n_valid=len(valid)
        )


class Fuse(_AskOneMore):
    name = "fuse"
    role = "aggregator"

    def __init__(self, model: Any = None, models: Sequence[str] | None = None) -> None:
        super().__init__(model, models)
        self.extractor: Any = None  # set by the engine: the run's extract=

    def followup(self, row: RowContext, candidates: list[Candidate]) -> FollowUp | None:
        order = [c for c in restrict(candidates, self.models) if c.valid or c.output]
        if not order:
            return None
        random.Random(row.seed).shuffle(order)
        answers = "\n\n".join(f"### Response {i}\n{_shown(c)}" for i, c in enumerate(order, 1))
        prompt = FUSE_PROMPT.format(task=row.prompt, answers=answers)
        return FollowUp(self.model, [{"role": "user", "content": prompt}], context=True)

    def read(self, reply: str, valid: list[Candidate], context: Any, vote: Verdict) -> Verdict:
        try:
            answer = self.extractor(reply) if self.extractor is not None else reply.strip()
        except ExtractionError as exc:
            return _fallback(vote, f"aggregator reply unreadable ({exc}): fell back to vote")
        if not valid:
            return Verdict(answer, 0.0, 0.0, 0)
        agree = _agreement(answer, valid)
        if agree == 0 and isinstance(answer, str):
            agree = sum(similarity(answer, str(c.answer)) for c in valid) / len(valid)
        return Verdict(answer, confidence=agree, agreement=agree, n_valid=len(valid))
