"""Offline simulated models: the pure logic behind the ``sim/<profile>`` model ids.

The simulated models let the README's first command, the demos and the teaching
notebooks run with no network and no API key. They answer a small built-in bank of
arithmetic word problems with a configured accuracy, latency and price, so a panel
of ``sim/...`` models behaves like a real panel: strong models are right more often
and cost more, cheap ones are fast and make mistakes, and two of them (``budget-a``
and ``budget-b``) make *correlated* mistakes, which is the case majority voting
cannot fix.

Everything here is pure and deterministic. All randomness comes from SHA-256 of the
inputs (profile, prompt, seed, sample), never from the global ``random`` state or
the clock, so a notebook re-run gives the same table, and the on-disk cache and the
tests see stable replies. This module does not sleep, does no I/O and imports only
the standard library (and nbtoolkit's redaction); the in-process provider that wraps it
(``offline.SimProvider``) decides whether to actually wait ``SimReply.latency_s``.

Public API::

    QUESTIONS                    the bank, a tuple of frozen ``Question``
    question_bank()              the bank as [{"id", "question", "answer"}, ...]
    PROFILES, get_profile()      the simulated models and their parameters
    simulate(profile, prompt, *, seed=None, sample=0, temperature=None) -> SimReply
    find_question(prompt)        the bank question quoted in a prompt, or None
    count_tokens(text)           ~1 token per 4 characters, at least 1

How correlated mistakes are simulated: for a bank question each profile draws a
uniform ``u`` and is wrong when ``u < 1 - accuracy``. A profile in an
``error_group`` takes, with probability ``correlation``, the *group's* uniform for
that (question, seed) instead of its own private one. Choosing one of two uniforms
(rather than averaging them) keeps ``u`` exactly uniform, so the configured
accuracy is preserved while the members of a group are wrong on largely the same
questions. When wrong, the wrong number is likewise the group's shared wrong answer
with probability ``correlation``, otherwise a private pick among plausible slips.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

# The bank is part of this module's API: sim.QUESTIONS, sim.find_question...
from .sim_bank import (  # noqa: F401
    ITEMS,
    QUESTIONS,
    Question,
    find_question,
    question_bank,
    squash,
    unit,
    wrong_answers,
)

__all__ = [
    "DEFAULT_SEED",
    "PROFILES",
    "QUESTIONS",
    "Profile",
    "Question",
    "SimReply",
    "count_tokens",
    "find_question",
    "get_profile",
    "question_bank",
    "simulate",
]

#: What ``seed=None`` means: a fixed value, so "no seed" is still reproducible.
DEFAULT_SEED = 0

#: A simulated call sleeps its simulated latency times this (``NBTOOLKIT_SIM_TIME_SCALE``):
#: the ``latency_s`` a run records is the simulated one, its wall-clock time the scaled one.
TIME_SCALE_ENV = "NBTOOLKIT_SIM_TIME_SCALE"
DEFAULT_TIME_SCALE = 0.1


#: A streamed simulated reply: its first piece after this share of its latency, the rest
#: spread evenly over the remainder (a real model's first token comes after the prompt is read).
TTFT_SHARE = 0.3
_PIECE = re.compile(r"\s*\S+|\s+")


def pieces(text: str) -> list[str]:
    """``text`` cut into the pieces a simulated stream sends: a word each, with the spaces
    before it, so that joined they give ``text`` back exactly."""
    return _PIECE.findall(text)


def time_scale() -> float:
    """The share of its simulated latency a simulated call really waits (0: none)."""
    raw = os.environ.get(TIME_SCALE_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_TIME_SCALE
    except ValueError:
        raise ValueError(f"{TIME_SCALE_ENV}={raw!r} is not a number; use e.g. 0.1 or 0") from None


# ------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Profile:
    """One simulated model: how often it is right, how fast, how expensive."""

    name: str
    description: str
    accuracy: float
    latency_s: float
    latency_jitter: float
    input_cost_per_token: float
    output_cost_per_token: float
    error_group: str | None
    correlation: float
    format_failure_rate: float

    def __post_init__(self) -> None:
        # Catch a bad custom profile here rather than as a baffling simulation result.
        if not self.name or "/" in self.name:
            raise ValueError(f"profile name must be non-empty without '/': {self.name!r}")
        for field in ("accuracy", "correlation", "format_failure_rate", "latency_jitter"):
            value = getattr(self, field)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{self.name}: {field} must be in [0, 1], got {value}")
        for field in ("latency_s", "input_cost_per_token", "output_cost_per_token"):
            if getattr(self, field) < 0:
                raise ValueError(f"{self.name}: {field} must be >= 0")


def _profiles(*profiles: Profile) -> dict[str, Profile]:
    return {p.name: p for p in profiles}


# Prices are USD per token, as in litellm's price table, in the range of real models
# of each tier, so cost columns in demos look like real ones.
PROFILES: dict[str, Profile] = _profiles(
    Profile(
        name="oracle-large",
        description="simulated: strong, slow, expensive (frontier-like)",
        accuracy=0.95,
        latency_s=2.5,
        latency_jitter=0.3,
        input_cost_per_token=2.5e-6,
        output_cost_per_token=1e-5,
        error_group=None,
        correlation=0.0,
        format_failure_rate=0.01,
    ),
    Profile(
        name="steady-medium",
        description="simulated: good, mid-priced, mid-speed",
        accuracy=0.88,
        latency_s=1.2,
        latency_jitter=0.25,
        input_cost_per_token=8e-7,
        output_cost_per_token=3.2e-6,
        error_group=None,
        correlation=0.0,
        format_failure_rate=0.03,
    ),
    Profile(
        name="swift-mini",
        description="simulated: cheap and fast, decent",
        accuracy=0.80,
        latency_s=0.6,
        latency_jitter=0.3,
        input_cost_per_token=1.5e-7,
        output_cost_per_token=6e-7,
        error_group=None,
        correlation=0.0,
        format_failure_rate=0.05,
    ),
    Profile(
        name="budget-a",
        description="simulated: cheap; shares its mistakes with budget-b (correlated errors)",
        accuracy=0.75,
        latency_s=0.8,
        latency_jitter=0.35,
        input_cost_per_token=1e-7,
        output_cost_per_token=4e-7,
        error_group="budget",
        correlation=0.8,
        format_failure_rate=0.08,
    ),
    Profile(
        name="budget-b",
        description="simulated: cheap; shares its mistakes with budget-a (correlated errors)",
        accuracy=0.75,
        latency_s=0.9,
        latency_jitter=0.35,
        input_cost_per_token=1.2e-7,
        output_cost_per_token=4.8e-7,
        error_group="budget",
        correlation=0.8,
        format_failure_rate=0.08,
    ),
    Profile(
        name="coin-flip",
        description="simulated: mostly wrong, for teaching what a bad panel member does",
        accuracy=0.35,
        latency_s=0.3,
        latency_jitter=0.5,
        input_cost_per_token=5e-8,
        output_cost_per_token=2e-7,
        error_group=None,
        correlation=0.0,
        format_failure_rate=0.10,
    ),
)


def get_profile(name: str) -> Profile:
    """The profile called *name* (a leading ``sim/`` is accepted); KeyError lists the known ones."""
    key = name.removeprefix("sim/")
    try:
        return PROFILES[key]
    except KeyError:
        from ..suggest import closest

        known = ", ".join(sorted(PROFILES))
        near = closest(key, PROFILES)
        hint = f" Did you mean 'sim/{near}'?" if near else ""
        raise KeyError(f"unknown simulated model {name!r};{hint} known profiles: {known}") from None


# ----------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class SimReply:
    """What one simulated call returns; the caller decides whether to sleep ``latency_s``."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cost_usd: float


def count_tokens(text: str) -> int:
    """A cheap deterministic token estimate: ~1 token per 4 characters, at least 1."""
    return max(1, (len(text) + 3) // 4)


@dataclass(frozen=True)
class _Call:
    """The inputs every private draw of one call is keyed on."""

    profile: Profile
    prompt: str
    seed: int
    sample: int  # already collapsed to 0 at temperature 0

    def unit(self, tag: str) -> float:
        return unit("private", tag, self.profile.name, self.prompt, self.seed, self.sample)

    def shared(self, tag: str, key: str) -> float:
        # Keyed on the group, not the profile or the sample: every member of the group
        # sees the same value for the same (question, seed), which is what correlates them.
        return unit("shared", tag, self.profile.error_group, key, self.seed)

    def mixed(self, tag: str, key: str) -> float:
        """The group's uniform with probability ``correlation``, else a private one.

        Selecting (not averaging) keeps the result exactly uniform, so thresholds on
        it keep their configured probabilities.
        """
        p = self.profile
        if p.error_group is not None and self.unit(tag + ":share") < p.correlation:
            return self.shared(tag, key)
        return self.unit(tag)


def _weighted_index(weights: Sequence[float], u: float) -> int:
    target = u * sum(weights)
    for i, w in enumerate(weights):
        target -= w
        if target < 0:
            return i
    return len(weights) - 1


_OPENERS = ("Let me work through it:", "Working step by step:", "Let's solve it:")


def _number_reply(call: _Call, value: int, working: str) -> str:
    opener = _OPENERS[int(call.unit("opener") * len(_OPENERS))]
    prose = f"{opener} {working}."
    body = json.dumps({"reasoning": working, "answer": str(value)}, ensure_ascii=False)
    if call.unit("format") < call.profile.format_failure_rate:
        if call.unit("format:kind") < 0.5:
            # Prose only, as when a model ignores the JSON instruction: the number is
            # still stated, so a "number" extractor can recover it and a JSON one cannot.
            return f"{prose} The answer is {value}."
        # Cut off mid-JSON, as when max_tokens is hit: no closing brace, no closing fence.
        cut = int(len(body) * (0.3 + 0.6 * call.unit("format:cut")))
        return f"{prose}\n\n```json\n{body[:cut]}"
    return f"{prose}\n\n```json\n{body}\n```"


def _bank_reply(call: _Call, question: Question) -> str:
    wrong = call.mixed("wrong", question.id) < 1.0 - call.profile.accuracy
    if not wrong:
        return _number_reply(call, *ITEMS[question.id].right)
    answers, weights = wrong_answers(question.id)
    value, working = answers[_weighted_index(weights, call.mixed("slip", question.id))]
    return _number_reply(call, value, working)


# Choice prompts: demos of sentiment or multiple choice need answers that agree and
# disagree across profiles. Kept deliberately simple.
_LETTER = re.compile(r"(?:^|\s)\(([A-J])\)|^\s*([A-J])[.)]\s", re.MULTILINE)
# A tiny sentiment lexicon for the simulated "truth" of a review. (noqa: a word list
# reads better as a sentence than as 20 one-word lines of literals.)
_POSITIVE = frozenset(
    (  # noqa: SIM905
        "love loved lovely great excellent good wonderful amazing best happy enjoyed enjoy "
        "fantastic delightful recommend perfect brilliant nice pleased superb"
    ).split()
)
_NEGATIVE = frozenset(
    (  # noqa: SIM905
        "hate hated terrible awful bad worst boring poor disappointing disappointed broken "
        "waste sad refund rude slow useless horrible annoying"
    ).split()
)


def _choice_labels(prompt: str) -> list[str] | None:
    letters: list[str] = []
    for m in _LETTER.finditer(prompt):
        letter = m.group(1) or m.group(2)
        if letter not in letters:
            letters.append(letter)
    if len(letters) >= 2:
        return letters
    low = prompt.lower()
    if "positive" in low and "negative" in low:
        return ["positive", "negative"] + [w for w in ("neutral", "mixed") if w in low]
    if re.search(r"\byes\s*(?:or|/)\s*no\b", low):
        return ["yes", "no"]
    if re.search(r"\btrue\s*(?:or|/)\s*false\b", low):
        return ["true", "false"]
    return None


def _true_label(prompt: str, labels: list[str]) -> str:
    """The label the simulated world deems right: same for every profile and seed."""
    if "positive" in labels:
        words = re.findall(r"[a-z]+", prompt.lower())
        score = sum(w in _POSITIVE for w in words) - sum(w in _NEGATIVE for w in words)
        if score:
            return "positive" if score > 0 else "negative"
        if "neutral" in labels:
            return "neutral"
    return labels[int(unit("truth", squash(prompt)) * len(labels))]


def _choice_reply(call: _Call, labels: list[str]) -> str:
    key = squash(call.prompt)
    label = _true_label(call.prompt, labels)
    if call.mixed("wrong", key) < 1.0 - call.profile.accuracy:
        # A model that does not know guesses among all the labels (it can guess right):
        # on two labels even coin-flip lands near chance rather than below it.
        label = labels[int(call.mixed("guess", key) * len(labels))]
    shown = f"({label})" if len(label) == 1 else label
    tag = f"[simulated {call.profile.name}]"
    if call.unit("format") < call.profile.format_failure_rate:
        return f"{tag} The answer is {shown}."
    body = json.dumps({"answer": label})
    return f"{tag} The answer is {shown}.\n\n```json\n{body}\n```"


#: The start of a simulated reply to a prompt outside the bank: ``outside_bank`` spots it, and
#: the run marks the reply as no valid answer, with ``OUTSIDE_BANK_REASON``.
OUTSIDE_BANK_TAG = "outside its question bank"
OUTSIDE_BANK_REASON = (
    "simulated: the simulated models only answer the questions of their built-in bank "
    "(see them with pandas.DataFrame(nbtoolkit.providers.sim.question_bank())); this prompt "
    "is not one of them, so this reply is no answer. Ask a bank question, or use a real model"
)


def outside_bank(output: object) -> bool:
    """True for a simulated reply to a prompt its bank does not hold (not an answer)."""
    return (
        isinstance(output, str)
        and output.startswith("[simulated ")
        and (f": {OUTSIDE_BANK_TAG}]" in output.split("\n", 1)[0])
    )


def _generic_reply(call: _Call) -> str:
    # No echo of the prompt: a number in it would be read as the model's answer.
    return (
        f"[simulated {call.profile.name}: {OUTSIDE_BANK_TAG}] A simulated model only knows "
        "the questions of its bank; this prompt is not one of them, so there is no answer here."
    )


# Judge and fuse prompts: a simulated judge or aggregator reads the task and the panel's
# answers out of them and acts on the bank's right answer, with the profile's accuracy.
_SECTION = re.compile(r"^### (?:Answer|Response) (\d+)\n", re.MULTILINE)
_JSON_ANSWER = re.compile(r'"answer"\s*:\s*"?(-?[\d.,]+)')
_NUMBER_IN = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _role(prompt: str) -> str | None:
    from ..strategies.judge import FUSE_PROMPT, JUDGE_PROMPT

    for role, template in (("judge", JUDGE_PROMPT), ("fuse", FUSE_PROMPT)):
        if prompt.startswith(template.split("\n", 1)[0]):
            return role
    return None


def _sections(prompt: str) -> tuple[str, list[str]]:
    """The task and the numbered answers of a judge or fuse prompt."""
    task = prompt.split("## Task", 1)[-1]
    task = re.split(r"\n## (?:Answers|Responses)\n", task, maxsplit=1)[0].strip()
    parts = _SECTION.split(prompt)
    answers = [parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)]
    return task, answers


def _number_of(text: str) -> int | None:
    found = _JSON_ANSWER.search(text)
    numbers = [found.group(1)] if found else _NUMBER_IN.findall(text)[-1:]
    try:
        return int(float(numbers[0].replace(",", ""))) if numbers else None
    except ValueError:
        return None


def _judge_reply(call: _Call, question: Question, answers: list[str]) -> str:
    right = [i for i, a in enumerate(answers, 1) if _number_of(a) == question.answer]
    knows = call.mixed("judge", question.id) < call.profile.accuracy
    if knows:
        choice: object = right[0] if right else "none"
        why = "it reaches the right result" if right else "no answer reaches the right result"
    else:
        wrong = [i for i in range(1, len(answers) + 1) if i not in right] or [1]
        choice = wrong[int(call.unit("judge:pick") * len(wrong))]
        why = "its working looks sound"
    rationale = f"Answer {choice} is best: {why}." if choice != "none" else f"None: {why}."
    return json.dumps({"choice": choice, "rationale": rationale})


def _fuse_reply(call: _Call, question: Question, answers: list[str]) -> str:
    # An aggregator that sees the panel is right more often than alone: it is right when
    # it would be, or when most of the panel is.
    votes = [_number_of(a) for a in answers]
    majority_right = votes.count(question.answer) * 2 > len(votes)
    if majority_right or call.mixed("wrong", question.id) >= 1.0 - call.profile.accuracy:
        value, working = ITEMS[question.id].right
    else:
        value, working = wrong_answers(question.id)[0][0]
    body = json.dumps({"reasoning": working, "answer": str(value)}, ensure_ascii=False)
    return f"Weighing the {len(answers)} responses: {working}.\n\n```json\n{body}\n```"


def simulate(
    profile: str,
    prompt: str,
    *,
    seed: int | None = None,
    sample: int = 0,
    temperature: float | None = None,
) -> SimReply:
    """One simulated completion of *prompt* by *profile*, deterministic in all its inputs.

    ``seed=None`` is ``DEFAULT_SEED``. At ``temperature == 0`` the ``sample`` index is
    ignored (greedy decoding repeats itself); otherwise (including ``None``, the
    providers' default) each sample is an independent draw. Temperature does not
    change accuracy, so the configured accuracy is what a notebook measures.
    """
    p = get_profile(profile)
    if temperature is not None and temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if sample < 0:
        raise ValueError(f"sample must be >= 0, got {sample}")
    call = _Call(
        profile=p,
        prompt=prompt,
        seed=DEFAULT_SEED if seed is None else seed,
        sample=0 if temperature == 0 else sample,
    )

    role = _role(prompt)
    question = find_question(_sections(prompt)[0] if role else prompt)
    if role is not None and question is not None:
        answers = _sections(prompt)[1]
        reply = _judge_reply if role == "judge" else _fuse_reply
        text = reply(call, question, answers)
    elif role is not None:
        text = _generic_reply(call)
    elif question is not None:
        text = _bank_reply(call, question)
    elif (labels := _choice_labels(prompt)) is not None:
        text = _choice_reply(call, labels)
    else:
        text = _generic_reply(call)

    prompt_tokens, completion_tokens = count_tokens(prompt), count_tokens(text)
    u = 2.0 * call.unit("latency") - 1.0  # in [-1, 1)
    return SimReply(
        text=text,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_s=p.latency_s * (1.0 + p.latency_jitter * u),
        cost_usd=prompt_tokens * p.input_cost_per_token
        + completion_tokens * p.output_cost_per_token,
    )
