"""The HTML and text reprs of a ``RunResult``, and the agreement matrix."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from typing import Any

import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit.formatting import colour, format_cost
from nbtoolkit.jupyter.display import html_repr, text_repr
from nbtoolkit.providers import sim
from nbtoolkit.results import OUTPUT_COLUMNS, RunResult, agreement_matrix

SCRIPT = "<script>alert('x')</script>"


def make_result(
    answers: dict[str, list[Any]],
    *,
    consensus: list[Any],
    inputs: pd.DataFrame | None = None,
    cost: float = 0.001,
    simulated: list[str] | None = None,
    warnings: list[str] | None = None,
    prompt: str = "{question}",
    cancelled: bool = False,
) -> RunResult:
    """A RunResult built by hand: ``answers[model][row]`` (None is a failed call)."""
    models = list(answers)
    n_rows = len(consensus)
    records = []
    for row in range(n_rows):
        for model in models:
            answer = answers[model][row]
            records.append(
                {
                    "row": row,
                    "model": model,
                    "sample": 0,
                    "output": None if answer is None else f"The answer is {answer}",
                    "answer": answer,
                    "valid": answer is not None,
                    "error": "CallError: boom" if answer is None else None,
                    "latency_s": 0.5,
                    "prompt_tokens": 10,
                    "completion_tokens": 5,
                    "cost_usd": cost,
                    "cached": False,
                    "attempts": 1,
                }
            )
    outputs = pd.DataFrame.from_records(records, columns=OUTPUT_COLUMNS)
    outputs = outputs.astype({"prompt_tokens": "Int64", "completion_tokens": "Int64"})
    rows = []
    for row, answer in enumerate(consensus):
        given = [answers[m][row] for m in models if answers[m][row] is not None]
        agree = sum(a == answer for a in given) / len(given) if given else 0.0
        rows.append(
            {
                "row": row,
                "answer": answer,
                "confidence": agree * len(given) / len(models),
                "agreement": agree,
                "n_valid": len(given),
                "strategy": "vote",
                "cost_usd": cost * len(models),
            }
        )
    frame = pd.DataFrame(rows)
    if inputs is not None:
        frame = pd.concat([inputs.reset_index(drop=True), frame], axis=1)
    return RunResult(
        outputs=outputs,
        consensus=frame,
        run_id="test",
        models=models,
        strategy="vote",
        prompt=prompt,
        wall_s=1.25,
        cancelled=cancelled,
        simulated=simulated or [],
        warnings=warnings or [],
    )


class Tables(HTMLParser):
    """Counts the <tr> of each <tbody>, by the class of its table."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.body_rows: dict[str, int] = {}
        self.in_body: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "table":
            self.stack.append(dict(attrs).get("class") or "")
        elif tag == "tbody":
            self.in_body.append(self.stack[-1])
        elif tag == "tr" and self.in_body and self.in_body[-1] == self.stack[-1]:
            klass = self.stack[-1]
            self.body_rows[klass] = self.body_rows.get(klass, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.stack.pop()
        elif tag == "tbody":
            self.in_body.pop()


def parse(markup: str) -> Tables:
    tables = Tables()
    tables.feed(markup)
    return tables


@pytest.fixture
def panel() -> RunResult:
    inputs = pd.DataFrame({"question": ["2+2?", "3+3?", "4+4?"]})
    return make_result(
        {"a": ["4", "6", "8"], "b": ["4", "6", "9"], "c": ["4", "7", None]},
        consensus=["4", "6", "8"],
        inputs=inputs,
        simulated=["a", "b"],
    )


def test_consensus_table_has_one_body_row_per_input_row(panel: RunResult) -> None:
    markup = panel._repr_html_()
    tables = parse(markup)
    assert tables.body_rows["nbtoolkit-consensus"] == 3
    assert "details" in tables.tags and "summary" in tables.tags
    assert markup.count("<details>") >= 3  # every row's answers, expandable


def test_disagreements_confidence_colours_and_heatmap(panel: RunResult) -> None:
    markup = html_repr(panel)
    assert markup.count("class='nbtoolkit-disagree'") == 2  # rows 1 and 2 are split
    assert "models disagree on 2 of 3 row(s)" in markup
    assert f"background-color:{colour(1.0)}" in markup  # row 0: everyone agrees
    assert "split: 6 ×2, 7 ×1" in markup
    assert parse(markup).body_rows["nbtoolkit-agreement"] == 3
    assert "nbtoolkit-totals" in markup and "nbtoolkit-models" in markup
    assert "<script" not in markup and "http" not in markup  # no JS, no external resources


def test_agreement_matrix(panel: RunResult) -> None:
    matrix = agreement_matrix(panel)
    assert list(matrix.index) == list(matrix.columns) == ["a", "b", "c"]
    assert matrix.loc["a", "b"] == pytest.approx(2 / 3)
    assert matrix.loc["a", "c"] == pytest.approx(1 / 2)  # c failed on row 2: 2 shared rows
    assert matrix.loc["b", "c"] == pytest.approx(1 / 2)
    assert (matrix.to_numpy().diagonal() == 1).all()
    assert (matrix == matrix.T).all().all()
    pd.testing.assert_frame_equal(panel.agreement_matrix(), matrix)


def test_agreement_matrix_is_nan_without_shared_rows() -> None:
    res = make_result({"a": ["1"], "b": [None]}, consensus=["1"])
    assert math.isnan(agreement_matrix(res).loc["a", "b"])


def test_everything_is_escaped() -> None:
    inputs = pd.DataFrame({"question": [SCRIPT]})
    res = make_result(
        {SCRIPT: [SCRIPT], "b": ["<b>bold</b>"]},
        consensus=[SCRIPT],
        inputs=inputs,
        prompt=f"Say {SCRIPT}",
        warnings=[f"warning with {SCRIPT}"],
        simulated=[SCRIPT],
    )
    markup = html_repr(res)
    assert "<script" not in markup and "<b>bold" not in markup
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in markup
    assert "&lt;b&gt;bold&lt;/b&gt;" in markup


def test_simulated_warnings_and_cancelled_are_stated(panel: RunResult) -> None:
    markup = html_repr(panel)
    assert "nbtoolkit-simulated" in markup and "simulated" in markup
    assert "nbtoolkit-warnings" not in markup and "nbtoolkit-cancelled" not in markup
    res = make_result(
        {"a": ["1"], "b": [None]},
        consensus=["1"],
        warnings=["1 of 2 calls failed"],
        cancelled=True,
    )
    markup = html_repr(res)
    assert "nbtoolkit-warnings" in markup and "1 of 2 calls failed" in markup
    assert "nbtoolkit-cancelled" in markup
    assert "CallError: boom" in markup  # the failed call is an error row, not dropped
    text = text_repr(res)
    assert "warning: 1 of 2 calls failed" in text and "CANCELLED" in text


def test_unknown_cost_is_unknown_never_zero() -> None:
    res = make_result({"a": ["1", "2"], "b": ["1", "3"]}, consensus=["1", "2"], cost=math.nan)
    markup = html_repr(res)
    assert "unknown" in markup
    assert not re.search(r">\$0(\.0+)?<", markup)
    assert "cost unknown" in repr(res)
    assert format_cost(math.nan) == "unknown" and format_cost(None) == "unknown"
    assert format_cost(0.0031) == "$0.0031" and format_cost(0) == "$0"


def test_long_results_are_cut_with_a_note() -> None:
    n = 7
    res = make_result({"a": ["1"] * n, "b": ["1"] * n}, consensus=["1"] * n)
    markup = html_repr(res, max_rows=5)
    assert parse(markup).body_rows["nbtoolkit-consensus"] == 5
    assert "showing the first 5 of 7 rows" in markup


def test_text_repr(panel: RunResult) -> None:
    text = repr(panel)
    assert text.startswith("RunResult: 3 row(s) x 3 model(s)")
    assert "simulated models (not real LLMs): a, b" in text
    assert "models disagree on 2 of 3 row(s)" in text
    assert "agreement between models" in text


def test_colour_scale() -> None:
    assert colour(0.0) != colour(1.0)
    assert colour(math.nan) == colour(float("nan"))
    assert re.fullmatch(r"#[0-9a-f]{6}", colour(0.37))


def test_a_real_run_renders() -> None:
    bank = pd.DataFrame(sim.question_bank()[:3])
    res = nbt.orchestrate(
        "{question}\nAnswer with a number.",
        ["sim/oracle-large", "sim/budget-a", "sim/budget-b"],
        data=bank,
        extract="number",
        samples=2,
        temperature=0.7,
        audit=False,
    )
    markup = res._repr_html_()
    assert parse(markup).body_rows["nbtoolkit-consensus"] == 3
    assert "simulated" in markup and " #1" in markup  # samples are numbered


def test_display_is_core_it_never_imports_jupyter() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from nbtoolkit.jupyter import display\n"
        "from nbtoolkit.results import RunResult\n"
        "print(sorted(m for m in ('IPython', 'ipywidgets', 'litellm') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
