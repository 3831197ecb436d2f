"""Bad input is one clear line: run arguments, Model options, recordings files, integer
column names, report parameters typed by the template."""

from __future__ import annotations

import datetime
import gzip
import importlib.util
import io
import json
import math

import nbformat
import numpy as np
import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit import report
from nbtoolkit.cache import cache_dir
from nbtoolkit.cli import main

# ------------------------------------------------------------------ run arguments

# Every argument of orchestrate given a wrong type or value, and the words its error names.
BAD_ARGUMENTS = [
    (dict(samples="3"), "samples='3'"),
    (dict(samples=True), "samples=True"),
    (dict(concurrency=2.5), "concurrency=2.5"),
    (dict(temperature="hot"), "temperature='hot'"),
    (dict(max_cost_usd=math.nan), "max_cost_usd=nan"),
    (dict(max_cost_usd=math.inf), "max_cost_usd=inf"),
    (dict(strategy=None), "strategy=None"),
    (dict(models=["gpt 4o"]), "id='gpt 4o'"),
    (dict(models=[3]), "models must be litellm model ids"),
    (dict(timeout="5"), "timeout='5'"),
    (dict(timeout=0), "timeout=0"),
    (dict(seed="1"), "seed='1'"),
    (dict(max_tokens=1.5), "max_tokens=1.5"),
    (dict(retries=1.0), "retries=1.0"),
    (dict(retries=-1), "retries=-1"),
    (dict(system=3), "system=3"),
    (dict(strict="yes"), "strict='yes'"),
    (dict(repair="1"), "repair='1'"),
    (dict(repair_token_budget="x"), "repair_token_budget='x'"),
    (dict(confidence_threshold="0.5"), "confidence_threshold='0.5'"),
    (dict(confidence_threshold=1.5), "confidence_threshold=1.5"),
    (dict(progress=3), "progress=3"),
    (dict(audit=3), "audit=3"),
    (dict(cache_path=3), "cache_path=3"),
    (dict(cache=None), "cache=None"),
    (dict(recordings=3, models=["replay/x"]), "recordings=3"),
    (dict(variables=[1]), "variables=[1]"),
    (dict(data=[{"q": 1}]), "data=[{'q': 1}]"),
    (dict(schema=dict), "schema=<class 'dict'>"),
    (dict(extract=3), "extract="),
    (dict(prompt=3), "the prompt must be a str"),
    (dict(on_start="go"), "on_start='go'"),
    (dict(top_p="high"), "top_p='high'"),
    (dict(stop=3), "stop=3"),
]


@pytest.mark.parametrize(("kwargs", "words"), BAD_ARGUMENTS)
def test_a_wrong_argument_is_one_config_error_naming_it(kwargs, words) -> None:
    args = {"prompt": "Hello", "models": ["sim/swift-mini"], **kwargs}
    with pytest.raises(nbt.ConfigError) as info:
        nbt.orchestrate(args.pop("prompt"), args.pop("models"), **args)
    message = str(info.value)
    assert words in message and "\n" not in message, message
    assert not cache_dir().exists()  # refused before anything was written


def test_estimate_checks_its_arguments_the_same_way() -> None:
    with pytest.raises(nbt.ConfigError, match=r"samples='2'"):
        nbt.estimate("hi", ["sim/swift-mini"], samples="2")  # type: ignore[arg-type]


def test_numpy_numbers_are_numbers() -> None:
    res = nbt.orchestrate(
        "What is 2+2?",
        ["sim/swift-mini"],
        samples=np.int64(2),
        temperature=np.float64(0.5),
        cache="off",
        audit=False,
    )
    assert len(res.outputs) == 2


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (dict(temperature="0.5"), "temperature='0.5': must be a number"),
        (dict(weight="2"), "weight='2'"),
        (dict(max_tokens=2.5), "max_tokens=2.5"),
        (dict(max_concurrency=True), "max_concurrency=True"),
        (dict(timeout=math.nan), "timeout=nan"),
        (dict(name=3), "name=3"),
        (dict(api_base="localhost:8000"), "api_base='localhost:8000'"),
        (dict(api_key_env="MY KEY"), "api_key_env='MY KEY'"),
        (dict(fallbacks=[3]), "fallbacks=3"),
        (dict(top_k="5"), "top_k='5'"),
        (dict(extra_headers={"X-A": 1}), "extra_headers=1"),
    ],
)
def test_model_options_are_checked_strictly(options, words) -> None:
    with pytest.raises(nbt.ModelError) as info:
        nbt.Model("openai/x", **options)
    assert words in str(info.value) and str(info.value).startswith("Model('openai/x'): ")


def test_a_model_id_with_spaces_is_refused() -> None:
    with pytest.raises(nbt.ModelError, match="without spaces"):
        nbt.Model("gpt 4o mini")


# ----------------------------------------------------------------------- recordings

GOOD = json.dumps({"model": "m", "prompt": "p", "output": "o"}) + "\n"
LINES = "".join(
    json.dumps({"model": "m", "prompt": f"p{i}", "output": f"{i * 7919 % 10007}"}) + "\n"
    for i in range(3000)
)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("image.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", ":1: a binary file"),
        (
            "latin.jsonl",
            GOOD.encode() + '{"model": "m", "prompt": "café", "output": "o"}\n'.encode("latin-1"),
            ":2: not UTF-8 text",
        ),
        ("cut.jsonl.gz", gzip.compress(LINES.encode())[:-4000], "gzip data is cut short"),
        ("junk.jsonl.gz", b"\x1f\x8b" + b"not gzip at all", ":1: the gzip data"),
    ],
)
def test_unreadable_recordings_are_a_recordings_error_with_file_and_line(
    tmp_path, name, content, words
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(nbt.RecordingsError) as info:
        nbt.orchestrate("p", ["replay/m"], recordings=path, audit=False)
    assert str(path) in str(info.value) and words in str(info.value)
    assert "\n" not in str(info.value)


def test_a_utf8_bom_is_not_an_error(tmp_path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    res = nbt.orchestrate("p", ["replay/m"], recordings=path, audit=False, cache="off")
    assert res.outputs["output"].iloc[0] == "o"


# ------------------------------------------------------------------ integer columns


def test_a_frame_with_integer_column_names_works_everywhere(tmp_path) -> None:
    # Two questions of the simulated models' bank, so that the models answer them.
    data = pd.read_csv(
        io.StringIO(
            '"A baker makes 12 trays of 18 cookies and sells 150. How many cookies are left?",66\n'
            '"Ivan buys 4 pens at $3 each and pays with a $20 bill. '
            'How many dollars of change should Ivan get?",8\n'
        ),
        header=None,
    )
    res = nbt.orchestrate(
        "{0} Reply with a number. Keep {braces} and {1x} as they are.",
        ["sim/swift-mini", "sim/oracle-large"],
        data=data,
        variables={"braces": "{}"},
        extract="number",
        cache="off",
        audit=False,
    )
    assert res.consensus.columns[:2].tolist() == [0, 1]
    text = repr(res)
    assert "A baker makes 12 trays" in text
    assert "Ivan buys 4 pens" in res._repr_html_()
    assert res.outputs["error"].isna().all()
    res.consensus.to_csv(tmp_path / "c.csv")


def test_a_digit_name_without_a_column_stays_literal() -> None:
    from nbtoolkit.templating import render

    assert render("Answer with a set like {1}") == "Answer with a set like {1}"
    data = pd.DataFrame({"q": ["x"]})
    assert render("{q} as a set like {1}", {"q": "x"}) == "x as a set like {1}"
    res = nbt.orchestrate("Answer with a set like {1}", ["sim/swift-mini"], data=data, audit=False)
    assert res.outputs["output"].notna().all()


def test_input_columns_that_would_collide_get_unique_names() -> None:
    data = pd.DataFrame(
        {"q": ["What is 2+2?"], "answer": ["4"], "answer_input": ["x"], "note": ["n"]}
    )
    res = nbt.orchestrate("{q}", ["sim/swift-mini"], data=data, cache="off", audit=False)
    columns = res.consensus.columns.tolist()
    assert len(columns) == len(set(columns))
    assert columns[:4] == ["q", "answer_input2", "answer_input", "note_input"]
    assert res.consensus["answer_input2"].iloc[0] == "4"
    assert res.consensus["answer_input"].iloc[0] == "x"


# --------------------------------------------------------------- report parameters

YAML = """\
title: 2024-01-05
rationale: NO
gold: 01234
strategy: 1e3
rows: 3
seed: null
models: [sim/oracle-large, sim/swift-mini]
variables: {country: NO, zip: 01234, day: 2024-01-05, n: 5, quoted: '5', share: 0.25}
"""


def test_report_parameters_are_typed_by_the_template_not_by_yaml() -> None:
    declared = report.template_parameters(report.template_path("compare_models"))
    values = report.check_parameters(declared, {}, list(report.yaml_text(YAML).items()))
    assert values == {
        "title": "2024-01-05",
        "rationale": "NO",
        "gold": "01234",
        "strategy": "1e3",
        "rows": 3,
        "seed": None,
        "models": ["sim/oracle-large", "sim/swift-mini"],
        # untyped dict values keep their text unless it prints as the number itself
        "variables": {
            "country": "NO",
            "zip": "01234",
            "day": "2024-01-05",
            "n": 5,
            "quoted": "5",
            "share": 0.25,
        },
    }
    assert all(type(v) is str for v in values["variables"].values() if isinstance(v, str))


def test_item_types_come_from_the_annotation(tmp_path) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("counts: dict[str, int] = {}\nnames: list[str] = []")
    cell.metadata["tags"] = ["parameters"]
    nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    nbformat.write(nb, tmp_path / "t.ipynb")
    declared = report.template_parameters(tmp_path / "t.ipynb")  # papermill's inspection
    assert declared["counts"].kind == "dict[str, int]" and declared["names"].kind == "list[str]"
    values = report.check_parameters(
        declared, {}, [("counts", "{a: 01, b: 2}"), ("names", "[NO, 01234, 2024-01-05]")]
    )
    assert values == {"counts": {"a": 1, "b": 2}, "names": ["NO", "01234", "2024-01-05"]}
    with pytest.raises(report.ParameterError, match=r"takes dict\[str, int\]"):
        report.check_parameters(declared, {}, [("counts", "{a: many}")])
    with pytest.raises(report.ParameterError, match=r"takes list\[str\]"):
        report.check_parameters(declared, {"names": ["a", 3]})


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"variables": {"day": datetime.date(2024, 1, 5)}}, "'variables'['day'] is a date"),
        ({"temperature": math.nan}, "'temperature' is nan"),
        ({"models": ["a", {1, 2}]}, "'models'[1] is a set"),
        ({"rows": "3"}, "takes int"),
    ],
)
def test_python_values_papermill_cannot_write_are_one_line(given, words) -> None:
    declared = report.template_parameters(report.template_path("compare_models"))
    with pytest.raises(report.ParameterError) as info:
        report.check_parameters(declared, given)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("rows: [1, 2]\n", "parameter 'rows' takes int"),
        ("variables: [a, b]\n", "parameter 'variables' takes dict"),
        ("models: {a: b}\n", "parameter 'models' takes list"),
        ("title: [a]\n", "parameter 'title' takes str"),
    ],
)
def test_a_wrong_type_in_a_parameters_file_is_one_line_and_exit_code_2(
    capsys, tmp_path, content, words
) -> None:
    params = tmp_path / "p.yaml"
    params.write_text(content)
    code = main(["report", "compare_models", "-f", str(params), "-o", str(tmp_path / "r.ipynb")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "r.ipynb").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ipykernel") is None, reason="no ipykernel")
def test_yaml_dates_and_codes_reach_the_notebook_as_their_text(capsys, tmp_path) -> None:
    """Once a date in ``variables`` crashed papermill, and NO / 01234 became False / 668."""
    params = tmp_path / "p.yaml"
    params.write_text(
        "rows: 2\nmodels: [sim/swift-mini]\ntitle: 2024-01-05\n"
        "variables: {country: NO, zip: 01234, day: 2024-01-05}\n"
    )
    out = tmp_path / "r.ipynb"
    code = main(["report", "compare_models", "-f", str(params), "-o", str(out), "--no-html"])
    assert code == 0, capsys.readouterr().err
    recorded = nbformat.read(out, as_version=4).metadata["nbtoolkit"]["parameters"]
    assert recorded["variables"] == {"country": "NO", "zip": "01234", "day": "2024-01-05"}
    assert recorded["title"] == "2024-01-05"


def test_more_mistakes_are_one_line_each(tmp_path) -> None:
    with pytest.raises(nbt.ModelError, match=r"params= takes a dict .* not list"):
        nbt.Model("openai/x", params=[1])
    twice = pd.DataFrame([["a", "b"]], columns=["q", "q"])
    with pytest.raises(nbt.ConfigError, match="two columns named 'q'"):
        nbt.orchestrate("{q}", ["sim/swift-mini"], data=twice, audit=False, cache="off")
    with pytest.raises(nbt.RecordingsError, match="is a folder"):
        nbt.orchestrate(
            "hi", ["replay/x"], recordings=str(tmp_path), audit=False, cache="replay-only"
        )


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ({"temprature": 0.5}, "temperature"),
        ({"max_token": 5}, "max_tokens"),
        ({"sampels": 3}, "samples"),
        ({"top_pp": 0.9}, "top_p"),
    ],
)
def test_a_misspelt_argument_suggests_the_run_option_or_litellm_parameter(given, meant) -> None:
    with pytest.raises(nbt.ConfigError, match=f"Did you mean '{meant}'"):
        nbt.orchestrate("hi", ["sim/swift-mini"], cache="off", audit=False, **given)
    with pytest.raises(nbt.ConfigError, match="Did you mean 'temperature'"):
        nbt.Model("openai/x", temprature=1)


@pytest.mark.parametrize(
    ("name", "meant"),
    [("swift", "sim/swift-mini"), ("oracle", "sim/oracle-large"), ("swift-mnii", "sim/swift-mini")],
)
def test_a_bare_name_close_to_a_simulated_model_suggests_it(name, meant) -> None:
    with pytest.raises(nbt.ModelError, match=f"Did you mean '{meant}'"):
        nbt.orchestrate("hi", [name], cache="off", audit=False)
