from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbtoolkit.errors import NbtoolkitError, TemplateError
from nbtoolkit.templating import Template, render


def test_variables_filled_row_first_then_variables() -> None:
    t = Template("{greeting}, {name}!")
    assert t.render({"name": "Ada"}, {"name": "Bob", "greeting": "Hi"}) == "Hi, Ada!"


def test_json_examples_stay_literal() -> None:
    prompt = 'Reply as {"label": "pos" | "neg", "score": {"x": 1}} for: {review}'
    assert render(prompt, {"review": "great"}) == (
        'Reply as {"label": "pos" | "neg", "score": {"x": 1}} for: great'
    )


def test_double_braces_are_literal_braces() -> None:
    assert render("{{name}} is {name}", {"name": "x"}) == "{name} is x"


def test_unknown_variable_lists_known_names() -> None:
    with pytest.raises(TemplateError) as info:
        Template("Hello {nmae}").check({"name", "city"})
    message = str(info.value)
    assert "{nmae}" in message and "city, name" in message
    assert "\n" not in message


def test_whole_float_renders_as_integer_but_other_values_as_str() -> None:
    assert render("{a} {b} {c}", {"a": 3.0, "b": 2.5, "c": None}) == "3 2.5 None"


def test_gsm8k_template_renders_every_prompt_byte_for_byte(gsm8k) -> None:
    template = Template((gsm8k / "prompt_template.txt").read_text(encoding="utf-8"))
    lines = (gsm8k / "items.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1319
    for line in lines:
        item = json.loads(line)
        assert template.render(item) == item["prompt"]


@given(st.text(), st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), st.text()))
def test_render_never_crashes_with_anything_but_our_errors(text: str, values: dict) -> None:
    try:
        out = Template(text).render(values)
    except NbtoolkitError:
        return
    assert isinstance(out, str)


@given(st.text(alphabet=st.characters(blacklist_characters="{}")))
def test_text_without_braces_is_unchanged(text: str) -> None:
    assert render(text) == text


def test_escaped_json_example_in_str_format_style() -> None:
    assert render('{{"a": {{"b": 1}}}} {x}', {"x": "!"}) == '{"a": {"b": 1}} !'


def test_rows_are_read_as_to_dict_records_reads_them() -> None:
    import math

    import numpy as np
    import pandas as pd

    from nbtoolkit.templating import rows_of

    frame = pd.DataFrame(
        {
            "text": ["a", "b", None],
            "whole": [1, 2, 3],
            "real": [1.0, math.nan, 2.5],
            "nullable": pd.array([1, None, 3], dtype="Int64"),
            "flag": [True, False, True],
            "when": pd.to_datetime(["2024-01-01", None, "2024-03-01"]),
            "kind": pd.Categorical(["x", "y", "x"]),
            # An object column holding numpy scalars, NA and other objects.
            "mixed": pd.Series([np.int64(4), np.float32(2.0), pd.NA], dtype=object),
            "odd": pd.Series([np.bool_(True), np.datetime64("2024-01-02"), [1, 2]], dtype=object),
            7: ["seven", "7", "sept"],
        }
    )
    frame["str"] = pd.Series(["s", "t", None], dtype="string")

    def same(a: object, b: object) -> bool:
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return type(a) is type(b) and (a is b or a == b)

    want = [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]
    got = rows_of(frame)
    assert [list(r) for r in got] == [list(r) for r in want]
    for g, w in zip(got, want, strict=True):
        for name in w:
            assert same(g[name], w[name]), (name, g[name], w[name])
    assert rows_of(None) == [{}]
    assert rows_of(pd.DataFrame(index=range(2))) == [{}, {}]
