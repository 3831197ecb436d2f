from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from nbtoolkit.errors import ExtractionError, ExtractorError, NbtoolkitError
from nbtoolkit.extract import apply, build_extractor, register


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The total is $1,080.00", "1080"),
        ("1080", "1080"),
        ("so 9 eggs x $2 = $18.\nShe makes 18 dollars a day.", "18"),
        ("18 dollars", "18"),
        ("-3", "-3"),
        ("0.50", "0.5"),
        ("48g", "48"),
        ("It costs $5.", "5"),
    ],
)
def test_number(text: str, expected: str) -> None:
    assert build_extractor("number")(text) == expected


def test_number_equal_amounts_compare_equal() -> None:
    ex = build_extractor("number")
    assert ex("$1,080.00") == ex("1080") == ex("1080.0")


def test_number_missing_is_invalid_not_dropped() -> None:
    answer, valid, error = apply(build_extractor("number"), "no idea")
    assert (answer, valid) == (None, False)
    assert error is not None and "no number" in error


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("The answer is (C)", "C"),
        ("Answer: b", "B"),
        ("(D)", "D"),
        ("A. Paris is the capital", "A"),
        ("I first thought (A), but the answer is (C).", "C"),
        ("**B**", "B"),
    ],
)
def test_choice(text: str, letter: str) -> None:
    assert build_extractor("choice")(text) == letter


def test_json_fenced_or_bare() -> None:
    ex = build_extractor("json")
    assert ex('Sure!\n```json\n{"a": 1}\n```') == {"a": 1}
    assert ex('prefix {"a": {"b": 2}} suffix') == {"a": {"b": 2}}


def test_json_field_and_nested_field() -> None:
    assert build_extractor("json:answer")('{"answer": "42"}') == "42"
    assert build_extractor("json:a.b")('{"a": {"b": 7}}') == 7
    with pytest.raises(ExtractionError, match="no field 'missing'"):
        build_extractor("json:missing")('{"answer": 1}')


def test_json_tolerates_raw_newlines_and_latex_backslashes() -> None:
    reply = '```json\n{\n "reasoning": "Let \\( r \\) be red.\nSo r = 4",\n "answer": "4"\n}\n```'
    assert build_extractor(["json:answer", "number"])(reply) == "4"


def test_chain_json_then_number() -> None:
    assert build_extractor(["json:answer", "number"])('{"answer": "$1,080.00"}') == "1080"


def test_regex_with_one_group() -> None:
    assert build_extractor(r"Label: (\w+)")("Label: spam\n") == "spam"
    with pytest.raises(ExtractorError, match="exactly one group"):
        build_extractor(re.compile(r"(a)(b)"))


class Sentiment(BaseModel):
    label: str
    score: float


def test_pydantic_model_valid_and_invalid() -> None:
    ex = build_extractor(Sentiment)
    assert ex('{"label": "pos", "score": 0.9}') == Sentiment(label="pos", score=0.9)
    answer, valid, error = apply(ex, '{"label": "pos", "score": "high"}')
    assert not valid and answer is None
    assert error is not None and "Sentiment validation failed" in error and "score" in error


def test_callable_errors_become_invalid_rows() -> None:
    def boom(text: str) -> str:
        raise RuntimeError("bad reply")

    answer, valid, error = apply(build_extractor(boom), "x")
    assert not valid and error is not None and "bad reply" in error


def test_none_extract_normalises_whitespace() -> None:
    assert build_extractor(None)("  a \n\n b\t") == "a b"


def test_unknown_name_is_one_clear_line() -> None:
    with pytest.raises(ExtractorError) as info:
        build_extractor("numbr")
    assert "numbr" in str(info.value) and "number" in str(info.value)
    assert "\n" not in str(info.value)


def test_user_registered_extractor_used_by_name() -> None:
    register("shout", lambda text: text.upper())
    assert build_extractor("shout")("hi") == "HI"


@given(st.text())
def test_extractors_never_crash_with_foreign_exceptions(text: str) -> None:
    for spec in ("number", "choice", "json", "json:answer", None, ["json:answer", "number"]):
        with contextlib.suppress(NbtoolkitError):
            build_extractor(spec)(text)


@given(st.integers(-(10**9), 10**9))
def test_number_roundtrips_integers_with_formatting(n: int) -> None:
    ex = build_extractor("number")
    assert ex(f"${n:,}.00") == str(n)


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("Answer: I think it is (B).", "B"),
        ("The answer is a tricky one, but (C) is right.", "C"),
        ("answer: c", "C"),
        ("The answer is (I).", "I"),
    ],
)
def test_choice_is_not_fooled_by_ordinary_words(text: str, letter: str) -> None:
    assert build_extractor("choice")(text) == letter


def test_a_minus_sign_must_touch_its_number() -> None:
    assert build_extractor("number")("Working:\n12 apples minus 5\n- 7") == "7"
    assert build_extractor("number")("so x = -3.5") == "-3.5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is not 12; it's 15.", "15"),
        ("The answer isn't 12, it is 15", "15"),
        ("The answer isn’t 12, it’s 15.", "15"),
        ("The answer is no longer 12 but 15", "15"),
        ("The answer is not obvious at first, but it is 12.", "12"),
        ("The answer is 12, not 15.", "12"),
        ("The answer is 5 (not 6)", "5"),
        ("The answer is 12? No wait, 15. So the answer is 15.", "15"),
        ("It takes 3–5 days at first. The answer is 4.", "4"),
    ],
)
def test_number_reads_what_the_marked_clause_affirms(text: str, expected: str) -> None:
    assert apply(build_extractor("number"), text)[:2] == (expected, True)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("The answer is not 12.", "only what the answer is not"),
        ("The answer isn't 12.", "only what the answer is not"),
        ("The answer is 12? No wait, 15.", "doubts its marked answer"),
        ("The answer is between 3 and 5.", "range (3 and 5)"),
        ("The answer is 3 to 5 apples.", "range (3 to 5)"),
        ("The answer is from 10 to 20.", "range (10 to 20)"),
        ("The answer is 5 to the power of 2.", "not one plain number"),
        ("The answer is 5 squared.", "not one plain number"),
    ],
)
def test_number_denied_doubted_or_ranged_answers_are_invalid_not_the_first_number(
    text: str, says: str
) -> None:
    """Each used to read the first number after the mark (12, 12, 3, 5, ...): a wrong answer
    reported as valid."""
    value, valid, error = apply(build_extractor("number"), text)
    assert (value, valid) == (None, False)
    assert error is not None and says in error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is not B; it's C.", ("C", True)),
        ("The answer isn't A, it is D", ("D", True)),
        ("The answer is no longer A but C", ("C", True)),
        ("The answer is B? No wait, C.", (None, False)),
        ("The answer is not B.", (None, False)),
    ],
)
def test_choice_reads_what_the_marked_clause_affirms(
    text: str, expected: tuple[str | None, bool]
) -> None:
    assert apply(build_extractor("choice"), text)[:2] == expected
