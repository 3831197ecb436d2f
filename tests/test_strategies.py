"""Consensus strategies: unit behaviour and Hypothesis properties, no calls made."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from nbtoolkit import strategies
from nbtoolkit.errors import StrategyError
from nbtoolkit.strategies import Candidate, ModelInfo, RowContext
from nbtoolkit.strategies.cascade import Cascade
from nbtoolkit.strategies.judge import Fuse, Judge, parse_choice
from nbtoolkit.strategies.medoid import Medoid
from nbtoolkit.strategies.vote import FirstValid, Vote, Weighted


def cands(*answers, weights=None, valid=None) -> list[Candidate]:
    out = []
    for i, a in enumerate(answers):
        out.append(
            Candidate(
                model=f"m{i}",
                sample=0,
                answer=a,
                valid=True if valid is None else valid[i],
                weight=1.0 if weights is None else weights[i],
                position=i,
                output=None if a is None else f"reply {a}",
            )
        )
    return out


def test_registry_has_every_builtin_and_takes_user_strategies() -> None:
    assert {"vote", "weighted", "judge", "fuse", "cascade", "first_valid", "medoid"} <= set(
        strategies.names()
    )

    @strategies.register("always_a")
    class AlwaysA:
        name = "always_a"

        def combine(self, candidates):
            return strategies.Verdict("a", 1.0, 1.0, len(candidates))

    assert strategies.get("always_a").combine(cands("b")).answer == "a"
    with pytest.raises(StrategyError, match="unknown strategy 'nope'"):
        strategies.get("nope")


def test_vote_majority_confidence_and_agreement() -> None:
    v = Vote().combine(cands("4", "4", "5", None, valid=[True, True, True, False]))
    assert v.answer == "4" and v.n_valid == 3
    assert v.agreement == pytest.approx(2 / 3) and v.confidence == pytest.approx(2 / 4)


def test_vote_tie_goes_to_the_earlier_model() -> None:
    assert Vote().combine(cands("x", "y")).answer == "x"
    assert Vote().combine(cands("y", "x")).answer == "y"


def test_vote_with_no_valid_answer() -> None:
    v = Vote().combine(cands("a", valid=[False]))
    assert v.answer is None and v.confidence == 0 and v.n_valid == 0


class Person(BaseModel):
    name: str
    age: int


def test_structured_answers_vote_field_by_field() -> None:
    v = Vote().combine(
        cands(Person(name="Ada", age=36), Person(name="Ada", age=37), Person(name="Ava", age=36))
    )
    assert v.answer == Person(name="Ada", age=36)
    assert v.fields == {"name": pytest.approx(2 / 3), "age": pytest.approx(2 / 3)}


def test_weighted_lets_a_heavy_model_win() -> None:
    got = Weighted(weights={"m0": 3.0, "m1": 1.0, "m2": 1.0}).combine(cands("a", "b", "b"))
    assert got.answer == "a"
    assert Weighted().combine(cands("a", "b", "b", weights=[3, 1, 1])).answer == "a"


def test_first_valid_is_a_fallback_chain() -> None:
    v = FirstValid().combine(cands("a", "b", "b", valid=[False, True, True]))
    assert v.answer == "b" and v.agreement == 1.0


def test_medoid_picks_the_text_most_like_the_others() -> None:
    texts = [
        "the cat sat on the mat",
        "a cat sat on the mat",
        "dogs bark loudly at night",
        "the cat sat on a mat",
    ]
    v = Medoid().combine(cands(*texts))
    assert v.answer in texts[:2] + texts[3:]
    assert 0 < v.confidence <= 1


def test_cascade_orders_cheapest_first_and_settles_on_agreement() -> None:
    panel = [
        ModelInfo("big", 0, 1, 1e-5),
        ModelInfo("small", 1, 1, 1e-7),
        ModelInfo("mystery", 2, 1, float("nan")),
    ]
    c = Cascade(threshold=2)
    assert c.stages(panel) == [["small", "big"], ["mystery"]]
    assert c.settled(cands("a", "a"))
    assert not c.settled(cands("a", "b"))
    assert Cascade(threshold=0.6, share=True).settled(cands("a", "a", "b"))
    with pytest.raises(StrategyError, match="not in models"):
        Cascade(order=["ghost"]).stages(panel)
    with pytest.raises(StrategyError, match="threshold"):
        Cascade(threshold=0)


@pytest.mark.parametrize(
    ("reply", "pick"),
    [
        ('{"choice": 2, "rationale": "it adds up"}', 2),
        ('```json\n{"choice": "Answer 3", "rationale": "x"}\n```', 3),
        ('{"choice": "none", "rationale": "all wrong"}', None),
        ("I think Answer 1 is right.", 1),
        ("None of them is correct.", None),
        ("I like turtles", "unreadable"),
        ('{"choice": 9}', "unreadable"),
    ],
)
def test_judge_reply_is_read_robustly(reply, pick) -> None:
    assert parse_choice(reply, 3) == pick


def test_judge_anonymises_and_shuffles_with_the_seed() -> None:
    judge = Judge(model="sim/oracle-large")
    options = cands("1", "2", "3")
    orders = set()
    for seed in range(20):
        fu = judge.followup(RowContext(0, "task", seed), options)
        assert fu is not None and "m0" not in fu.messages[0]["content"]
        orders.add(tuple(c.answer for c in fu.context))
        again = judge.followup(RowContext(0, "task", seed), options)
        assert [c.answer for c in again.context] == [c.answer for c in fu.context]
    assert len(orders) > 1  # position bias is spread, not fixed


def test_judge_failure_falls_back_to_the_vote_visibly() -> None:
    judge = Judge(model="sim/oracle-large")
    options = cands("1", "1", "2")
    fu = judge.followup(RowContext(0, "task", 1), options)
    failed = judge.conclude(RowContext(0, "task", 1), options, None, "Timeout", fu.context)
    assert failed.answer == "1" and "fell back to vote" in failed.note
    unreadable = judge.conclude(RowContext(0, "task", 1), options, "hmm", None, fu.context)
    assert "unreadable" in unreadable.note
    picked_index = [c.answer for c in fu.context].index("2") + 1
    chose = judge.conclude(
        RowContext(0, "task", 1), options, f'{{"choice": {picked_index}}}', None, fu.context
    )
    assert chose.answer == "2" and chose.note is None


def test_judge_and_fuse_need_a_model() -> None:
    with pytest.raises(StrategyError, match="judge needs"):
        Judge()
    with pytest.raises(StrategyError, match="fuse needs"):
        Fuse()


# --- properties ------------------------------------------------------------------------------

answers = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans(), st.floats(0.1, 5)),
    min_size=1,
    max_size=8,
)


@given(answers, st.randoms(use_true_random=False))
def test_weighted_result_does_not_depend_on_model_order(items, rnd) -> None:
    base = [Candidate(f"m{i}", 0, a, v, w, i) for i, (a, v, w) in enumerate(items)]
    shuffled = list(base)
    rnd.shuffle(shuffled)
    shuffled = [
        Candidate(c.model, 0, c.answer, c.valid, c.weight, j) for j, c in enumerate(shuffled)
    ]
    assert Weighted().combine(base).answer == Weighted().combine(shuffled).answer


@given(answers)
def test_vote_is_deterministic_and_bounded(items) -> None:
    base = [Candidate(f"m{i}", 0, a, v, 1.0, i) for i, (a, v, _) in enumerate(items)]
    first, second = Vote().combine(base), Vote().combine(list(base))
    assert first == second
    assert 0 <= first.confidence <= first.agreement <= 1
    if first.n_valid:
        support = sum(1 for c in base if c.valid and c.answer == first.answer)
        assert all(
            support >= sum(1 for c in base if c.valid and c.answer == other) for other in "abc"
        )


@given(answers)
def test_every_strategy_keeps_confidence_in_range(items) -> None:
    base = [Candidate(f"m{i}", 0, a, v, w, i, f"text {a}") for i, (a, v, w) in enumerate(items)]
    for strategy in (Vote(), Weighted(), FirstValid(), Medoid(), Cascade()):
        verdict = strategy.combine(base)
        assert 0 <= verdict.confidence <= 1 and 0 <= verdict.agreement <= 1
        assert verdict.n_valid == sum(c.valid for c in base)


def test_strategy_classes_import_from_the_package_and_strategies():
    import nbtoolkit
    import nbtoolkit.strategies as strategies
    from nbtoolkit.strategies.judge import Judge

    for name in ("Cascade", "FirstValid", "Fuse", "Judge", "Medoid", "Vote", "Weighted"):
        assert getattr(nbtoolkit, name) is getattr(strategies, name)
        assert name in nbtoolkit.__all__ and name in strategies.__all__
    assert nbtoolkit.Judge is Judge
