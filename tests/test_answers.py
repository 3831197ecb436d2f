"""One notion of "the same answer", exact number reading, and unknown usage staying unknown."""

from __future__ import annotations

import contextlib
import gc
import math
import time
from fractions import Fraction

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nbtoolkit as nbt
from nbtoolkit import answers
from nbtoolkit.errors import NbtoolkitError
from nbtoolkit.extract import build_extractor
from nbtoolkit.extract.choice import extract_choice
from nbtoolkit.extract.number import extract_number
from nbtoolkit.strategies.base import Candidate
from nbtoolkit.strategies.vote import Vote, Weighted
from nbtoolkit.testing import FakeOpenAIServer

# --- the same answer ---------------------------------------------------------------------------


def _cands(values: list[object]) -> list[Candidate]:
    return [Candidate(f"m{i}", 0, v, True, 1.0, i) for i, v in enumerate(values)]


def test_equal_values_are_one_vote() -> None:
    verdict = Vote().combine(_cands(["1/2", "0.5", r"\frac{1}{2}", "0.25"]))
    assert verdict.answer == "0.5"
    assert verdict.agreement == pytest.approx(0.75)


def test_equal_values_read_by_extract_number_are_one_vote() -> None:
    ex = build_extractor("number")
    replies = ["The answer is 1/2", "#### 0.5", r"$\boxed{\frac{1}{2}}$", "Answer: 0.25"]
    verdict = Weighted().combine(_cands([ex(r) for r in replies]))
    assert (verdict.answer, verdict.agreement) == ("0.5", pytest.approx(0.75))


def test_choice_forms_and_free_text_forms_are_one_vote() -> None:
    ex = build_extractor("choice")
    verdict = Vote().combine(_cands([ex("C"), ex("(C)"), ex("C) Paris"), ex("B")]))
    assert (verdict.answer, verdict.agreement) == ("C", 0.75)
    verdict = Vote().combine(_cands(["Paris.", "paris", "  PARIS!", "Lyon"]))
    assert (verdict.answer, verdict.agreement) == ("Paris.", 0.75)


@pytest.mark.parametrize(
    ("reply", "letters"),
    [
        ("The answer is A and C", "(A, C)"),
        ("B, C", "(B, C)"),
        ("B/C", "(B, C)"),
        ("Both (A) and (C) are correct.", "(A, C)"),
        ("A) Paris\nB) London\nC) Rome\nthe options (B) and (C) look close", "(B, C)"),
    ],
)
def test_several_letters_are_invalid_and_named(reply: str, letters: str) -> None:
    from nbtoolkit.extract import apply

    answer, valid, error = apply(build_extractor("choice"), reply)
    assert (answer, valid) == (None, False)
    assert error is not None and "several letters" in error and letters in error, error


def test_a_fraction_stays_exact() -> None:
    assert not answers.same("1/3", "0.333")
    assert answers.same("1/3", r"\frac{1}{3}")
    assert answers.canonical_number(r"\frac{1}{3}") == "1/3"


def test_structured_answers_compare_by_content() -> None:
    assert answers.same({"a": "1/2", "b": "Yes"}, {"b": "yes.", "a": 0.5})
    assert not answers.same({"a": 1}, {"a": 2})
    # a missing value inside or outside a structure has a key, not a recursion error
    assert answers.same({"a": pd.NA}, {"a": pd.NA}) and not answers.same({"a": pd.NA}, {"a": 1})


def test_gold_comparison_uses_the_same_key() -> None:
    from nbtoolkit.calibration import _norm
    from nbtoolkit.report.analysis import norm

    assert _norm("1/2") == _norm(0.5) == norm(r"\frac{1}{2}") == norm("0.50")
    assert _norm("Paris") == norm("paris.")
    # gold typed by people: "½", "1 / 2", "+0.5"; a letter as "(C)", "Option C", "\boxed{C}"
    assert _norm("½") == norm("1 / 2") == norm("+0.5") == norm(0.5)
    assert _norm("C") == norm("Option C") == norm(r"\boxed{C}") == norm("(c)")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("½", "1/2"),
        ("1 ½", "1.5"),
        ("1 / 2", "0.5"),
        ("+0.5", "0.5"),
        (r"\boxed{1/2}", "0.5"),
        ("C", "(C)"),
        ("C", "C)"),
        ("C", "C."),
        ("C", "Option C"),
        ("C", "choice (c)"),
        ("C", r"\boxed{C}"),
        ("C", r"$\boxed{\text{C}}$"),
        ("C", "**C**"),
        (r"\text{Paris}", "paris"),
    ],
)
def test_equal_answers_typed_differently_key_together(a: str, b: str) -> None:
    assert answers.answer_key(a) == answers.answer_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("A. Lincoln", "A"),  # only a string that is exactly a choice form is its letter
        ("C) Paris", "C"),
        ("Option C is wrong", "C"),
        ("Option K", "K"),  # K is no choice letter: "option k" stays text
        ("1/2 + 1", "0.5"),
        ("-0.5", "+0.5"),
    ],
)
def test_free_text_is_not_over_normalised(a: str, b: str) -> None:
    assert answers.answer_key(a) != answers.answer_key(b)


def test_numbers_of_every_type_key_by_value() -> None:
    np = pytest.importorskip("numpy")
    from decimal import Decimal

    half = answers.answer_key("1/2")
    for value in (np.float64(0.5), np.float32(0.5), Decimal("0.50"), Fraction(1, 2), 0.5):
        assert answers.answer_key(value) == half, repr(value)
    assert answers.answer_key(np.float32(0.1)) == answers.answer_key("0.1")  # not 0.100000001
    assert answers.answer_key(np.int64(66)) == answers.answer_key(np.float64(66.0)) == "66"
    assert answers.answer_key(np.float64("nan")) == answers.answer_key(float("nan"))
    assert answers.answer_key(np.array(7)) == "7"


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _nested(depth: int) -> list[object]:
    outer: list[object] = []
    inner = outer
    for _ in range(depth):
        inner.append([])
        inner = inner[0]  # type: ignore[assignment]
    return outer


def _self_containing() -> list[object]:
    loop: list[object] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    "answer",
    [
        _Unprintable(),
        {"a": _Unprintable()},
        _nested(100_000),
        _self_containing(),
        10**5000,
        10**5000 + 1,
        __import__("decimal").Decimal("sNaN"),
        complex(1, 2),
        {1, 2},
    ],
    ids=["unprintable", "in a dict", "deep", "self", "huge", "huge+1", "snan", "complex", "set"],
)
def test_answer_key_never_raises(answer: object) -> None:
    key = answers.answer_key(answer)
    assert isinstance(key, str) and key
    assert answers.answer_key(answer) == key  # the same object, the same key


def test_answer_key_tells_apart_what_it_cannot_print() -> None:
    assert answers.answer_key(10**5000) != answers.answer_key(10**5000 + 1)
    assert answers.answer_key({"b", "a"}) == answers.answer_key({"a", "b"})
    assert answers.answer_key({"1/2"}) == answers.answer_key({0.5}) != answers.answer_key({1})


class _Verdict:
    """A user's own answer type, printed plainly."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return f"Verdict({self.text})"


@pytest.mark.parametrize(
    ("convert", "expected"),
    [
        (lambda s: __import__("numpy").float64(s), "66"),
        (lambda s: __import__("numpy").int64(s), "66"),
        (lambda s: {s, "x"}, None),
        (_Verdict, None),
        # nothing to compare two of these by: two answers, each its own, but still frames
        (lambda s: _Unprintable(), "unequal"),
    ],
    ids=["np.float64", "np.int64", "set", "custom class", "unprintable"],
)
def test_a_users_extractor_returning_any_value_gives_frames(monkeypatch, convert, expected) -> None:
    pytest.importorskip("numpy")
    monkeypatch.setenv("LOCAL_KEY", "sk-local")
    with FakeOpenAIServer(reply="The answer is 66") as server:
        models = [
            nbt.Model(f"openai/m{i}", api_base=server.base_url, api_key_env="LOCAL_KEY")
            for i in range(2)
        ]
        res = nbt.orchestrate("q?", models, extract=["number", convert], cache="off", audit=False)
    assert res.outputs["valid"].tolist() == [True, True]
    row = res.consensus.iloc[0]
    # both models gave the same value: one answer
    assert row["agreement"] == (0.5 if expected == "unequal" else 1.0)
    if expected not in (None, "unequal"):
        assert answers.answer_key(row["answer"]) == expected
    assert res.per_model()["valid"].tolist() == [1.0, 1.0]
    if expected != "unequal":  # (the notebook display prints the answer: it needs a str())
        assert res._repr_html_()


# --- properties of number reading ------------------------------------------------------------

_values = st.builds(
    Fraction,
    st.integers(-(10**7), 10**7),
    st.sampled_from([1, 1, 2, 3, 4, 5, 7, 8, 20, 125, 1000]),
)


def _spellings(value: Fraction) -> list[str]:
    """Every supported way of writing ``value``."""
    sign = "-" if value < 0 else ""
    v = abs(value)
    p, q = v.numerator, v.denominator
    out = [f"{sign}{p}/{q}", rf"{sign}\frac{{{p}}}{{{q}}}", rf"\dfrac{{{sign}{p}}}{{{q}}}"]
    out += [f"\u2212{p}/{q}" if sign else f"{p}/{q}"]
    if p > q and q > 1 and not sign:
        whole, rest = divmod(p, q)
        out += [f"{whole} {rest}/{q}", rf"{whole}\tfrac{{{rest}}}{{{q}}}"]
    text = answers.canonical(v)
    if "/" not in text:
        out += [f"{sign}{text}", f"{sign}${text}", f"\u2212{text}" if sign else text]
        whole, _, frac = text.partition(".")
        grouped = f"{int(whole):,}" + (f".{frac}" if frac else "")
        out += [f"{sign}{grouped}", f"{sign}{grouped.replace(',', '{,}')}"]
        out += [f"{sign}{grouped.replace(',', chr(0x202F))}"]
        digits = text.replace(".", "")
        exp = len(whole) - 1
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        out += [f"{sign}{mantissa}e{exp}", f"{sign}{mantissa}E+{exp}"]
        out += [rf"{sign}{mantissa}\times10^{{{exp}}}", f"{sign}{mantissa} × 10^{exp}"]
    return out


@settings(max_examples=300, deadline=None)
@given(_values, st.data())
def test_every_spelling_reads_back_to_the_same_exact_value(value: Fraction, data) -> None:
    spelled = data.draw(st.sampled_from(_spellings(value)))
    frame = data.draw(
        st.sampled_from(["{}", "The answer is {}.", r"$\boxed{{{}}}$", "#### {}", "x = {} km"])
    )
    assert extract_number(frame.format(spelled)) == answers.canonical(value), spelled


_filler = st.text(alphabet="bcdfgkmpqvwxyz .,\n", max_size=300)


@settings(max_examples=300, deadline=None)
@given(
    _values,
    st.integers(-(10**6), 10**6),
    _filler,
    st.sampled_from(["The answer is", "Final answer:", "####", "\\boxed"]),
)
def test_a_marker_beats_a_later_unmarked_number(
    marked: Fraction, later: int, filler: str, marker: str
) -> None:
    shown = answers.canonical(marked)
    head = f"\\boxed{{{shown}}}" if marker == "\\boxed" else f"{marker} {shown}"
    reply = f"Some working.\n{head}\n{filler} {later} more"
    assert extract_number(reply) == shown


_pieces = st.sampled_from(
    [
        "The answer is ",
        "Answer: ",
        "final answer: ",
        "####",
        r"\boxed{",
        "}",
        "{",
        "(",
        ")",
        "1",
        "2,000",
        "−3",
        "1/2",
        r"\frac{1}{",
        "e9",
        "e99999",
        " ",
        "\n",
        "Question: ",
        "$",
        "Wait, ",
        "A",
        "(B)",
        "**",
        "x 10^",
        "\u202f",
        '{"answer": "',
        '"}',
        "0" * 50,
    ]
)
_replies = st.one_of(st.text(max_size=3000), st.lists(_pieces, max_size=400).map("".join))


@settings(max_examples=400, deadline=None)
@given(_replies)
def test_extraction_raises_only_our_errors_and_is_fast(reply: str) -> None:
    for extract in (extract_number, extract_choice):
        start = time.thread_time()  # this thread's CPU: a busy machine does not count
        with contextlib.suppress(NbtoolkitError):
            extract(reply)
        # CPU time of this one reply, not wall time: the bound, 50 ms per reply.
        assert time.thread_time() - start < 0.05, (extract.__name__, len(reply))


# --- unknown usage stays unknown ---------------------------------------------------------------


def test_a_reply_without_usage_has_unknown_tokens_and_cost(monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_KEY", "sk-local")
    with FakeOpenAIServer(reply="The answer is 12", send_usage=False) as server:
        # priced like gpt-4o, so only the missing usage can make the cost unknown
        model = nbt.Model(
            "openai/local",
            api_base=server.base_url,
            api_key_env="LOCAL_KEY",
            extra={"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05},
        )
        res = nbt.orchestrate("6*2?", [model], extract="number", cache="off", audit=False)
    row = res.outputs.iloc[0]
    assert row["answer"] == "12"
    assert pd.isna(row["prompt_tokens"]) and pd.isna(row["completion_tokens"])
    assert math.isnan(row["cost_usd"])
    totals = res.totals()
    assert totals["unknown_cost_calls"] == 1 and totals["unknown_token_calls"] == 1
    assert math.isnan(totals["cost_usd"])


def test_a_reply_with_usage_is_priced(monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_KEY", "sk-local")
    with FakeOpenAIServer(reply="The answer is 12") as server:
        model = nbt.Model(
            "openai/local",
            api_base=server.base_url,
            api_key_env="LOCAL_KEY",
            extra={"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05},
        )
        res = nbt.orchestrate("6*2?", [model], extract="number", cache="off", audit=False)
    assert res.outputs["prompt_tokens"].iloc[0] > 0
    assert res.totals()["cost_usd"] > 0 and res.totals()["unknown_cost_calls"] == 0


def test_a_placeholder_zero_price_is_unknown_under_every_prefix() -> None:
    from nbtoolkit import providers

    for model_id in ("ollama/llama3", "ollama_chat/llama3"):
        model = nbt.Model(model_id)
        assert not providers.price_known(model), model_id
        assert math.isnan(providers.price_per_token(model)), model_id
    assert providers.price_per_token(nbt.Model("gpt-4o")) > 0
    free = nbt.Model("ollama/llama3", extra={"input_cost_per_token": 0, "output_cost_per_token": 0})
    assert providers.price_per_token(free) == 0


# --- extract="math" through math-verify ---------------------------------------------------------


@pytest.fixture(scope="module")
def math_extract():
    pytest.importorskip("math_verify")
    from nbtoolkit.extract import symbolic

    yield build_extractor("math")
    symbolic.shutdown()


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (r"The answer is $\sqrt{2}$", "sqrt(2)"),
        (r"so the area is $\boxed{2\pi}$", "2*pi"),
        (r"Expanding, we get $x^2+1$", "x**2 + 1"),
        (r"\boxed{\frac{1}{2}}", "0.5"),
        (r"\boxed{\dfrac{1}{3}}", "1/3"),
        (r"\boxed{x = 5}", "5"),
    ],
)
def test_math_reads_latex_and_symbolic_answers(math_extract, reply: str, expected: str) -> None:
    assert math_extract(reply) == expected


def test_math_equal_expressions_are_one_vote(math_extract) -> None:
    replies = [r"$\boxed{1/\sqrt{2}}$", r"$\boxed{\frac{\sqrt{2}}{2}}$", r"\boxed{\sqrt{3}}"]
    verdict = Vote().combine(_cands([math_extract(r) for r in replies]))
    assert verdict.answer == "sqrt(2)/2" and verdict.agreement == pytest.approx(2 / 3)
    assert not answers.same(math_extract("$x^2+1$"), math_extract("$x^2-1$"))


def test_math_works_off_the_main_thread_and_bounds_its_time(math_extract) -> None:
    import threading

    from nbtoolkit.extract import apply, symbolic

    got: list[object] = []
    worker = threading.Thread(target=lambda: got.append(apply(math_extract, r"\boxed{\pi/2}")))
    worker.start()
    worker.join()
    assert got == [("pi/2", True, None)]
    # A power tower SymPy would grind on for minutes: the helper is killed, the row invalid...
    answer, valid, error = apply(
        lambda text: symbolic.read_math(text, timeout=0.5), r"\boxed{2^{10^{9}}}"
    )
    assert (answer, valid) == (None, False) and "took longer than 0.5 s" in str(error)
    # ...and the next reply is read by a fresh helper.
    assert math_extract(r"\boxed{3}") == "3"


def test_medoid_counts_the_same_answer_as_identical() -> None:
    from nbtoolkit.strategies.medoid import Medoid, similarity

    assert similarity("1/2", "0.5") == 1.0 and similarity("Paris.", "paris") == 1.0
    verdict = Medoid(close=1.0).combine(_cands(["Paris.", "paris", "Lyon"]))
    assert verdict.answer == "Paris." and verdict.agreement == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "reply",
    [
        "\\boxed{" * 5000,
        "\\boxed{1} " * 5000,
        '{"a": "' * 5000 + " answer",
        "the answer is " * 4000,
        "#### " + "111 " * 10000,
        "1" * 40000,
        "\\frac{1}{2} " * 4000 + '{"answer": 3}',
        "-" * 50000 + "1",
    ],
    ids=["open boxes", "boxes", "open json", "answer is", "groups", "digits", "latex", "dashes"],
)
def test_degenerate_long_replies_stay_cheap(reply: str) -> None:
    """Replies of 40-60 KB built to make a careless reader backtrack or rescan."""
    for extract in (extract_number, extract_choice):
        # One-time costs (lazy imports, regex compilation, a GC pass) are not the reply's.
        with contextlib.suppress(NbtoolkitError):
            extract("The answer is (B), 12.")
        gc.collect()
        # CPU time of this thread only: other threads (litellm's logging worker) and other
        # processes on a busy machine do not count. Backtracking would cost seconds, not ms.
        start = time.thread_time()
        with contextlib.suppress(NbtoolkitError):
            extract(reply)
        assert time.thread_time() - start < 0.25, extract.__name__


def test_math_helper_does_not_rerun_an_unguarded_script(tmp_path, math_extract) -> None:
    """A script without ``if __name__ == "__main__"`` runs once: the helper is no spawn child."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "from nbtoolkit.extract import build_extractor\n"
        "print('run', flush=True)\n"
        "print(build_extractor('math')(r'\\boxed{\\sqrt{4}}'), flush=True)\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["run", "2"]


def test_unknown_tokens_are_unknown_in_per_model_and_the_totals_say_at_least(monkeypatch) -> None:
    from nbtoolkit.jupyter.display import _per_model, _totals

    monkeypatch.setenv("LOCAL_KEY", "sk-local")
    with FakeOpenAIServer(reply="The answer is 12", send_usage=False) as server:
        model = nbt.Model("openai/local", api_base=server.base_url, api_key_env="LOCAL_KEY")
        res = nbt.orchestrate(
            "6*2?", [model, "sim/oracle-large"], extract="number", cache="off", audit=False
        )
    table = res.per_model()
    assert pd.isna(table.loc["openai/local", "prompt_tokens"])
    assert pd.isna(table.loc["openai/local", "completion_tokens"])
    assert table.loc["sim/oracle-large", "prompt_tokens"] > 0
    assert "unknown" in _per_model(res)
    totals = _totals(res)
    assert "at least" in totals and "unknown for 1 call(s)" in totals


# --- issue 9 follow-up: first number only for an answer field; cut-off JSON ------------------


def test_only_an_answer_fields_value_gives_its_first_number() -> None:
    from nbtoolkit.extract import apply

    reply = '{"reasoning": "9 eggs at $2", "answer": "18 dollars for 9 eggs"}'
    assert apply(build_extractor(["json:answer", "number"]), reply)[:2] == ("18", True)
    assert apply(build_extractor("number"), reply)[:2] == ("18", True)
    # The same words as a whole reply, or handed on by a function, conclude with the last number.
    assert apply(build_extractor("number"), "18 dollars for 9 eggs")[:2] == ("9", True)
    chain = build_extractor([lambda text: text.upper(), "number"])
    assert apply(chain, "She had 3 boxes of 12, so 36.")[:2] == ("36", True)


def test_the_simulated_oracles_cut_off_replies_are_invalid_not_a_number_from_the_json() -> None:
    from nbtoolkit.extract.jsonread import ends_inside_json
    from nbtoolkit.providers import sim

    res = nbt.orchestrate(
        "{question}\nAnswer with a number.",
        ["sim/oracle-large"],
        data=pd.DataFrame(sim.question_bank()),
        extract="number",
        audit=False,
        cache="off",
    )
    out = res.outputs
    cut = out[out["output"].map(ends_inside_json)]
    assert len(cut) >= 1
    assert not cut["valid"].any()
    assert cut["error"].str.startswith("extract: JSON cut off").all()
