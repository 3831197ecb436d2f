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
