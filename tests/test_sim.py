"""Tests of the offline simulated models (nbtoolkit.providers.sim): pure, fast, no network."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

import pytest

from nbtoolkit.providers import sim

SEEDS = range(50)  # 40 questions x 50 seeds = 2000 draws per profile
FENCED_JSON = re.compile(r"```json\s*\n(.*?)\n```", re.DOTALL)
PROSE_ANSWER = re.compile(r"The answer is (-?\d+)\.")


def prompt_for(q: sim.Question) -> str:
    # Wrapped the way notebook templates wrap questions, to exercise find_question too.
    return f"Solve this problem.\n\n{q.question}\nAnswer with a number."


def json_answer(text: str) -> int | None:
    """The answer of a well-formed reply (fenced JSON block), None if malformed."""
    m = FENCED_JSON.search(text)
    if m is None:
        return None
    try:
        return int(json.loads(m.group(1))["answer"])
    except (ValueError, KeyError, TypeError):
        return None


def stated_answer(text: str) -> int | None:
    """The answer the reply states, from JSON or prose; None when truncated."""
    got = json_answer(text)
    if got is not None:
        return got
    m = PROSE_ANSWER.search(text)
    return int(m.group(1)) if m else None


@pytest.fixture(scope="module")
def answers() -> dict[str, dict[tuple[str, int], int | None]]:
    """profile -> (question id, seed) -> stated answer, computed once for the module."""
    return {
        name: {
            (q.id, seed): stated_answer(sim.simulate(name, prompt_for(q), seed=seed).text)
            for q in sim.QUESTIONS
            for seed in SEEDS
        }
        for name in sim.PROFILES
    }


# ------------------------------------------------------------------ question bank


def _recompute(q: sim.Question) -> int:
    """Each answer recomputed from the numbers in the question text, independently of sim."""
    n = [int(x) for x in re.findall(r"\d+", q.question)]
    formulas: dict[str, Callable[[list[int]], int]] = {
        "baking": lambda v: v[0] * v[1] - v[2],  # trays x per tray - sold
        "money": lambda v: v[2] - v[0] * v[1],  # bill - count x price
        "speed": lambda v: v[0] * v[1] + v[2],  # speed x hours + extra km
        "time": lambda v: v[0] * v[1] + v[2] * v[3],  # lessons + breaks
        "ages": lambda v: 3 * v[0] + v[1] + v[2],  # three times her age, plus b, plus c years
        "percent": lambda v: v[0] - v[0] * v[1] // 100,  # price - discount
        "rounding": lambda v: math.ceil(v[0] / v[1]),  # a partly full bus still counts
    }
    if q.topic == "division":
        total, friends, given = n
        assert total % friends == 0, q
        return total // friends - given
    if q.topic == "percent":
        assert n[0] * n[1] % 100 == 0, q  # the sale price is a whole number of dollars
    if q.topic == "rounding":
        assert n[0] % n[1] != 0, q  # otherwise floor and ceil agree and the item teaches nothing
    return formulas[q.topic](n)


def test_bank_answers_are_correct() -> None:
    assert 35 <= len(sim.QUESTIONS) <= 45
    for q in sim.QUESTIONS:
        assert isinstance(q.answer, int) and q.answer > 0, q
        assert _recompute(q) == q.answer, q
    # The README's example, checked by hand: 12 x 18 = 216, 216 - 150 = 66.
    first = sim.QUESTIONS[0]
    assert first.id == "sim-001"
    assert first.question.startswith("A baker makes 12 trays of 18 cookies and sells 150.")
    assert first.answer == 66


def test_bank_ids_texts_and_rows() -> None:
    ids = [q.id for q in sim.QUESTIONS]
    assert ids == [f"sim-{i:03d}" for i in range(1, len(ids) + 1)]
    texts = [q.question for q in sim.QUESTIONS]
    # No question may contain another, or find_question would be ambiguous.
    assert not [(a, b) for a in texts for b in texts if a != b and a in b]
    rows = sim.question_bank()
    assert rows[0] == {"id": "sim-001", "question": texts[0], "answer": 66}
    assert [r["id"] for r in rows] == ids
    assert len({q.topic for q in sim.QUESTIONS}) >= 6


def test_find_question() -> None:
    q = sim.QUESTIONS[6]
    assert sim.find_question(prompt_for(q)) == q
    assert sim.find_question(q.question) == q
    # Re-wrapped whitespace still matches.
    assert sim.find_question("Q:\n" + q.question.replace(" ", "\n  ", 3)) == q
    assert sim.find_question("What is the capital of France?") is None


# ----------------------------------------------------------------- determinism


def test_same_inputs_same_reply() -> None:
    prompt = prompt_for(sim.QUESTIONS[3])
    for name in sim.PROFILES:
        a = sim.simulate(name, prompt, seed=7, sample=2, temperature=0.7)
        b = sim.simulate(name, prompt, seed=7, sample=2, temperature=0.7)
        assert a == b
    # seed=None is a fixed default seed, not a random one.
    assert sim.simulate("swift-mini", prompt) == sim.simulate("swift-mini", prompt, seed=0)


def test_samples_differ_unless_temperature_zero() -> None:
    for q in sim.QUESTIONS[:10]:
        greedy = {
            sim.simulate("budget-a", prompt_for(q), sample=s, temperature=0) for s in range(5)
        }
        assert len(greedy) == 1
    # At temperature > 0 (or the default None) samples are separate draws.
    hot = {
        sim.simulate("budget-a", prompt_for(q), sample=s, temperature=1.0).text
        for q in sim.QUESTIONS[:10]
        for s in range(5)
    }
    assert len(hot) > 10
    default = {sim.simulate("coin-flip", prompt_for(sim.QUESTIONS[0]), sample=s) for s in range(5)}
    assert len(default) > 1


def test_seed_changes_replies() -> None:
    prompt = prompt_for(sim.QUESTIONS[1])
    assert len({sim.simulate("coin-flip", prompt, seed=s).text for s in range(10)}) > 1


# ----------------------------------------------------------------- statistics


def test_accuracy_close_to_configured(
    answers: dict[str, dict[tuple[str, int], int | None]],
) -> None:
    truth = {q.id: q.answer for q in sim.QUESTIONS}
    for name, profile in sim.PROFILES.items():
        stated = [(qid, a) for (qid, _), a in answers[name].items() if a is not None]
        measured = sum(a == truth[qid] for qid, a in stated) / len(stated)
        # ~1900 draws: one standard error is at most ~0.011, so 0.04 is about 3.5 of them.
        assert abs(measured - profile.accuracy) < 0.04, (name, measured, profile.accuracy)


def test_wrong_answers_are_plausible(answers: dict[str, dict[tuple[str, int], int | None]]) -> None:
    truth = {q.id: q.answer for q in sim.QUESTIONS}
    wrong = [
        (a, truth[qid])
        for (qid, _), a in answers["coin-flip"].items()
        if a not in (None, truth[qid])
    ]
    assert wrong
    assert all(a > 0 for a, _ in wrong)
    # Not a random number: all slips come from the working (dropped steps, wrong operation,
    # off by one or ten), so none is wildly far from the numbers of the problem.
    assert len({a for a, _ in wrong}) < 40 * 8


def _same_wrong_rate(
    answers: dict[str, dict[tuple[str, int], int | None]], a: str, b: str
) -> tuple[float, float]:
    """P(both state the same wrong answer), and the same given that `a` is wrong."""
    truth = {q.id: q.answer for q in sim.QUESTIONS}
    both = same = a_wrong = 0
    for key, x in answers[a].items():
        y = answers[b][key]
        if x is None or y is None:
            continue
        both += 1
        if x != truth[key[0]]:
            a_wrong += 1
            same += x == y
    return same / both, same / a_wrong


def test_correlated_profiles_share_mistakes(
    answers: dict[str, dict[tuple[str, int], int | None]],
) -> None:
    # Measured on this bank (40 questions x 50 seeds), as of writing:
    #   budget-a & budget-b  (same error_group, correlation 0.8): same wrong answer on
    #       14.0% of all items, i.e. 57% of budget-a's mistakes are repeated by budget-b
    #       (both wrong, same or not: 16.9%);
    #   budget-a & swift-mini (independent): 1.6% of items, 6.3% of budget-a's mistakes
    #       (both wrong: 5.1%, about 0.25 x 0.20 as independence predicts);
    #   swift-mini & steady-medium (independent): 0.7% of items.
    # Independent profiles still agree sometimes, because popular slips are shared.
    corr_all, corr_given = _same_wrong_rate(answers, "budget-a", "budget-b")
    ind_all, ind_given = _same_wrong_rate(answers, "budget-a", "swift-mini")
    ind2_all, _ = _same_wrong_rate(answers, "swift-mini", "steady-medium")
    assert corr_given > 0.4
    assert ind_given < 0.2
    assert corr_all > 4 * ind_all
    assert corr_all > 4 * ind2_all


def test_majority_vote_helps_only_with_independent_errors(
    answers: dict[str, dict[tuple[str, int], int | None]],
) -> None:
    # The teaching point of the profiles: a vote of three independent members beats each
    # of them, while a vote where two members share their mistakes does not gain as much.
    truth = {q.id: q.answer for q in sim.QUESTIONS}

    def vote_accuracy(names: list[str]) -> float:
        # Only items where every voter stated an answer, so format failures do not blur it.
        right = total = 0
        for key in answers[names[0]]:
            votes = [answers[n][key] for n in names]
            if None not in votes:
                total += 1
                right += sum(v == truth[key[0]] for v in votes) * 2 > len(votes)
        return right / total

    # Measured: the independent trio 0.905 (members 0.75-0.88; independence predicts
    # 0.908); the trio with the correlated pair 0.785, barely above its members (0.75-0.80).
    independent = vote_accuracy(["swift-mini", "steady-medium", "budget-a"])
    correlated = vote_accuracy(["swift-mini", "budget-a", "budget-b"])
    assert independent > sim.PROFILES["steady-medium"].accuracy
    assert independent > correlated + 0.08


# --------------------------------------------------------------------- replies


def test_bank_replies_mostly_parseable_json(
    answers: dict[str, dict[tuple[str, int], int | None]],
) -> None:
    for name, profile in sim.PROFILES.items():
        texts = [
            sim.simulate(name, prompt_for(q), seed=s).text for q in sim.QUESTIONS for s in range(10)
        ]
        parsed = sum(json_answer(t) is not None for t in texts) / len(texts)
        assert parsed >= 1 - profile.format_failure_rate - 0.04, (name, parsed)
        assert parsed < 1 or profile.format_failure_rate < 0.02, name
    ok = sim.simulate("oracle-large", prompt_for(sim.QUESTIONS[0])).text
    assert "```json" in ok and '"reasoning"' in ok


def test_malformed_replies_exist_and_prose_states_the_number() -> None:
    texts = [
        sim.simulate("coin-flip", prompt_for(q), seed=s).text
        for q in sim.QUESTIONS
        for s in range(10)
    ]
    malformed = [t for t in texts if json_answer(t) is None]
    assert malformed
    prose = [t for t in malformed if "```" not in t]
    truncated = [t for t in malformed if "```" in t]
    assert prose and truncated
    assert all(PROSE_ANSWER.search(t) for t in prose)
    assert all(not t.rstrip().endswith("```") for t in truncated)


def test_tokens_cost_latency() -> None:
    prompt = prompt_for(sim.QUESTIONS[0])
    p = sim.get_profile("oracle-large")
    r = sim.simulate("oracle-large", prompt)
    assert r.prompt_tokens == sim.count_tokens(prompt)
    assert r.completion_tokens == sim.count_tokens(r.text)
    expected = (
        r.prompt_tokens * p.input_cost_per_token + r.completion_tokens * p.output_cost_per_token
    )
    assert r.cost_usd == pytest.approx(expected)
    for name, prof in sim.PROFILES.items():
        lat = [sim.simulate(name, prompt, seed=s).latency_s for s in range(30)]
        assert all(
            prof.latency_s * (1 - prof.latency_jitter)
            <= x
            <= prof.latency_s * (1 + prof.latency_jitter)
            for x in lat
        )
        assert len(set(lat)) > 1
    assert sim.count_tokens("") == 1
    assert sim.count_tokens("abcd") == 1
    assert sim.count_tokens("abcde") == 2
    # The strong model is the slow, expensive one; the mini the cheap, fast one.
    large, mini = sim.PROFILES["oracle-large"], sim.PROFILES["swift-mini"]
    assert large.latency_s > mini.latency_s
    assert large.output_cost_per_token > 10 * mini.output_cost_per_token


# ------------------------------------------------------------------- profiles


def test_profiles_table() -> None:
    assert {
        "oracle-large",
        "swift-mini",
        "budget-a",
        "budget-b",
        "steady-medium",
        "coin-flip",
    } <= set(sim.PROFILES)
    for name, p in sim.PROFILES.items():
        assert p.name == name
        assert "simulated" in p.description
    a, b = sim.PROFILES["budget-a"], sim.PROFILES["budget-b"]
    assert a.error_group is not None and a.error_group == b.error_group
    assert a.correlation >= 0.5
    others = [p for n, p in sim.PROFILES.items() if n not in ("budget-a", "budget-b")]
    assert all(p.error_group != a.error_group for p in others)
    assert sim.get_profile("sim/swift-mini") is sim.PROFILES["swift-mini"]


def test_unknown_profile_raises_key_error_naming_known_ones() -> None:
    with pytest.raises(KeyError) as err:
        sim.get_profile("gpt-imaginary")
    message = str(err.value)
    assert "gpt-imaginary" in message
    assert all(name in message for name in sim.PROFILES)
    with pytest.raises(KeyError):
        sim.simulate("nope", "hello")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        sim.simulate("swift-mini", "hi", temperature=-1)
    with pytest.raises(ValueError):
        sim.Profile("x", "simulated", 1.5, 1.0, 0.1, 0.0, 0.0, None, 0.0, 0.0)


# ------------------------------------------------------------- non-bank prompts


def test_other_prompts_say_simulated() -> None:
    prompt = "Write a limerick about a cat who learns to play the trombone in a marching band."
    replies = {name: sim.simulate(name, prompt).text for name in sim.PROFILES}
    for name, text in replies.items():
        assert "simulated" in text and name in text and sim.outside_bank(text)
        assert "limerick" not in text  # no echo: a number in the prompt would read as an answer
    assert sim.simulate("coin-flip", prompt) == sim.simulate("coin-flip", prompt)


def test_choice_prompts_agree_and_disagree() -> None:
    reviews = [
        "I loved it, a great and delightful film",
        "Terrible, boring and a waste of time",
        "The service was slow and the food was bad",
        "Best purchase ever, I recommend it",
        "It arrived broken, I want a refund",
        "Wonderful staff, happy to come back",
    ] * 4
    labels_seen: dict[str, list[str]] = {}
    for i, review in enumerate(reviews):
        prompt = f"Review #{i}: {review}\nIs the sentiment positive or negative?"
        for name in sim.PROFILES:
            text = sim.simulate(name, prompt).text
            assert text.startswith(f"[simulated {name}]")
            label = re.findall(r"positive|negative", text.split("]", 1)[1])
            assert label and len(set(label)) == 1, text
            labels_seen.setdefault(name, []).append(label[0])

    def agreement(a: str, b: str) -> float:
        return sum(x == y for x, y in zip(labels_seen[a], labels_seen[b], strict=True)) / len(
            reviews
        )

    # Strong profiles agree with each other more than with the teaching coin-flip.
    assert agreement("oracle-large", "steady-medium") > agreement("oracle-large", "coin-flip")
    assert agreement("oracle-large", "coin-flip") < 1.0  # some disagreement to show
    # The lexicon gives the simulated "truth": the strong model mostly follows it.
    truth = ["positive" if i % 6 in (0, 3, 5) else "negative" for i in range(len(reviews))]
    oracle = sum(x == y for x, y in zip(labels_seen["oracle-large"], truth, strict=True)) / len(
        reviews
    )
    assert oracle > 0.85

    lettered = "Which planet is largest?\n(A) Mars\n(B) Jupiter\n(C) Venus\n(D) Mercury"
    picks = []
    for name in sim.PROFILES:
        text = sim.simulate(name, lettered).text
        m = re.search(r"The answer is \(([A-D])\)", text)
        assert m is not None, text
        picks.append(m.group(1))
    # The letter is the same in prose and JSON, and it is always one of the options.
    assert set(picks) <= {"A", "B", "C", "D"}


# ------------------------------------------------- prompts outside the bank, judge, fuse


def test_a_prompt_outside_the_bank_gets_no_answer_and_says_why() -> None:
    import nbtoolkit as nbt

    res = nbt.orchestrate(
        "What is 2+2?", ["sim/oracle-large", "sim/swift-mini"], extract="number", audit=False
    )
    assert not res.outputs["valid"].any()  # no "2" read out of an echo of the question
    for error in res.outputs["error"]:
        assert "only answer the questions of their built-in bank" in error
        assert "question_bank()" in error  # how to see the bank
    row = res.consensus.iloc[0]
    assert row["n_valid"] == 0 and row["confidence"] == 0.0
    assert res.totals()["failed"] == 0 and res.totals()["invalid"] == 2
    # whatever the extractor: even the whole reply is not an answer
    whole = nbt.orchestrate("Tell me a joke", ["sim/swift-mini"], audit=False)
    assert not whole.outputs["valid"].iloc[0]


def test_a_simulated_judge_and_fuser_work_offline_on_every_row() -> None:
    import pandas as pd

    import nbtoolkit as nbt
    from nbtoolkit import strategies

    data = pd.DataFrame(sim.question_bank()[:24])
    prompt = "{question}\nReason briefly, then reply as JSON with an 'answer' field."
    panel = ["sim/swift-mini", "sim/budget-a", "sim/budget-b"]
    for name in ("judge", "fuse"):
        res = nbt.orchestrate(
            prompt,
            panel,
            data=data,
            extract=["json:answer", "number"],
            strategy=strategies.get(name, model="sim/oracle-large"),
            audit=False,
        )
        notes = res.consensus["note"].dropna()
        assert notes.empty, notes.tolist()  # read on every row: no fall-back to the vote
        assert res.consensus["answer"].notna().all()
        assert not res.strategy_calls.empty
        right = (res.consensus["answer"].astype(str) == data["answer"].astype(str)).mean()
        assert right > 0.6
