"""What the screen says agrees with the numbers beside it: unknown stays unknown, counts of
agreement leave out rows that cannot agree, labels say in-sample or held out, and each front
end gives advice in its own language. Offline: simulated models only."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit.calibration import calibrate
from nbtoolkit.providers import sim

PROMPT = "{question}\nReason briefly, then reply as JSON with an 'answer' field."
EXTRACT = ["json:answer", "number"]
SIX = [
    "sim/oracle-large",
    "sim/steady-medium",
    "sim/swift-mini",
    "sim/budget-a",
    "sim/budget-b",
    "sim/coin-flip",
]


def _bank(rows: int) -> pd.DataFrame:
    data = pd.DataFrame(sim.question_bank()[:rows])
    data["gold"] = data.pop("answer")
    return data


def _run(models: list[str], rows: int = 40, **kw: Any) -> Any:
    return nbt.orchestrate(
        PROMPT, models, data=_bank(rows), extract=EXTRACT, seed=0, audit=False, **kw
    )


@pytest.fixture(scope="module")
def six() -> Any:
    return _run(SIX)


def test_calibration_labels_in_sample_and_held_out_and_names_agree_with_calls(six: Any) -> None:
    cal = calibrate(six, gold="gold")
    text = repr(cal)
    assert "in-sample" in text and "held-out" in text
    # every share the message quotes is labelled held out
    assert len(re.findall(r"\d+% held out", cal.message)) == len(re.findall(r"\d+%", cal.message))
    assert "in-sample" in cal._repr_html_()
    # a candidate that names a count of models makes that many calls per row
    for name, rec in cal.candidates.iterrows():
        m = re.search(r"over (?:all|the) (\d+)", str(name))
        if m and "top" not in str(name):
            assert rec["calls_per_row"] == pytest.approx(int(m.group(1))), (name, rec)
    zero = [m for m, w in cal.weights.items() if w == 0]
    assert zero, "the bank's coin-flip model should get weight 0"
    assert f"weighted vote over the {len(SIX) - len(zero)} with weight > 0" in cal.candidates.index


def test_small_costs_are_written_with_significant_digits(six: Any) -> None:
    text = repr(calibrate(six, gold="gold"))
    assert "0.0000 " not in text and " 0.0000\n" not in text
    assert re.search(r"\$0\.0000\d", text), text


def test_rows_with_fewer_than_two_valid_answers_neither_agree_nor_disagree(monkeypatch) -> None:
    from nbtoolkit.cli import summary_lines
    from nbtoolkit.jupyter.display import html_repr, text_repr
    from nbtoolkit.report import analysis as an
    from nbtoolkit.report import sections as rs
    from nbtoolkit.testing import FakeOpenAIServer

    # No valid answer anywhere: prompts outside the simulated bank.
    nothing = nbt.orchestrate(
        "Pick one: {q}",
        ["sim/oracle-large", "sim/swift-mini"],
        data=pd.DataFrame({"q": [f"apples or pears, case {i}?" for i in range(3)]}),
        extract="number",
        audit=False,
    )
    assert (nothing.consensus["n_valid"] == 0).all()
    assert nothing.disagreements().empty
    for text in (html_repr(nothing), text_repr(nothing)):
        assert "disagree on all" not in text and "agree on all" not in text
        assert "3 with no valid answer" in text
    summary = an.summary(rs.Report(nothing).runs, None)
    said = "\n".join(summary_lines(summary, 1.0))
    assert "disagree on 0" in said and "3 with no valid answer" in said, said

    # One model never valid: every row has one valid answer, so nothing "agrees".
    monkeypatch.setenv("LOCAL_KEY", "sk-local")
    with FakeOpenAIServer(reply="no idea") as server:
        mute = nbt.Model("openai/mute", api_base=server.base_url, api_key_env="LOCAL_KEY")
        one = nbt.orchestrate(
            PROMPT, ["sim/oracle-large", mute], data=_bank(2), extract=EXTRACT, audit=False
        )
    assert (one.consensus["n_valid"] == 1).all()
    for text in (html_repr(one), text_repr(one)):
        assert "agree on all" not in text and "2 with one valid answer" in text
    assert "2 with one valid answer" in rs.Report(one)._bottom_line()


def test_the_cli_says_how_to_set_a_missing_key_in_the_shell(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    from nbtoolkit.cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code = main(
        [
            "report",
            "compare_models",
            "-p",
            "models",
            "[gpt-4o-mini]",
            "-p",
            "rows",
            "1",
            "-o",
            str(tmp_path / "r.ipynb"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "export OPENAI_API_KEY=" in err, err
    assert "os.environ" not in err and "Model(" not in err


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"extract": "numbr"}, "Did you mean 'number'?"),
        ({"extract": ["json:answer", "numbr"]}, "Did you mean 'number'?"),
        ({"models": ["sim/oracel"]}, "Did you mean 'sim/oracle-large'?"),
    ],
)
def test_misspelt_names_get_did_you_mean(kwargs: dict[str, Any], expected: str) -> None:
    args: dict[str, Any] = {"models": ["sim/oracle-large"], **kwargs}
    with pytest.raises(nbt.ConfigError) as info:
        nbt.orchestrate("What is 2+2?", args.pop("models"), audit=False, **args)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-p", "models", "[sim/oracel]"], "Did you mean 'sim/oracle-large'?"),
        (["-p", "extract", "[numbr]"], "parameter 'extract': unknown extract='numbr'. Did you"),
    ],
)
def test_report_models_and_extract_are_checked_before_the_kernel_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Any, args: list[str], expected: str
) -> None:
    from nbtoolkit.cli import main

    out = tmp_path / "r.ipynb"
    code = main(["report", "compare_models", *args, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.count("\n") == 1, err
    assert not out.exists()


def test_missing_text_is_none_in_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbtoolkit.testing import FakeOpenAIServer

    clean = _run(["sim/oracle-large"], rows=2)
    monkeypatch.setenv("LOCAL_KEY", "sk-local")
    with FakeOpenAIServer(reply="no idea") as server:
        mute = nbt.Model("openai/mute", api_base=server.base_url, api_key_env="LOCAL_KEY")
        mixed = _run(["sim/oracle-large", mute], rows=2)
    for res in (clean, mixed):
        ok = res.outputs[res.outputs["model"] == "sim/oracle-large"]
        assert all(e is None for e in ok["error"]), ok["error"].tolist()
        assert all(n is None for n in res.consensus["note"])


def test_pipeline_totals_count_calls_in_whole_numbers() -> None:
    from nbtoolkit.pipelines import Step, pipeline

    res = pipeline(
        [
            Step("a", PROMPT, ["sim/oracle-large"], extract=EXTRACT),
            Step("b", PROMPT + " {a}", ["sim/swift-mini"], extract=EXTRACT),
        ],
        data=_bank(3),
        audit=False,
    )
    totals = res.totals()
    assert totals.loc["a", "calls"] == 3 and "3.0" not in repr(totals["calls"].tolist())
    assert isinstance(totals.loc["a", "calls"], int | np.integer)


@pytest.mark.parametrize("mode", ["none", "text", "auto"])
def test_orchestrate_takes_the_magics_progress_modes(mode: str) -> None:
    res = nbt.orchestrate("What is 2+2?", ["sim/oracle-large"], progress=mode, audit=False)
    assert len(res.outputs) == 1


def test_misspelt_keyword_and_progress_get_did_you_mean() -> None:
    with pytest.raises(nbt.ConfigError, match="Did you mean 'top_p'"):
        nbt.orchestrate("What is 2+2?", ["sim/oracle-large"], top_pp=0.9)
    with pytest.raises(nbt.ConfigError, match="Did you mean 'none'"):
        nbt.orchestrate("What is 2+2?", ["sim/oracle-large"], progress="nnone")


def _key_names(text: str) -> set[str]:
    """The variable names of a models listing's key section (names only, never values)."""
    import re

    section = text.split("API keys in the environment", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", section))


def test_the_cli_and_the_magic_name_the_same_key_variables(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from IPython.testing.globalipapp import get_ipython

    from nbtoolkit.cli import main

    monkeypatch.setenv("MY_VENDOR_API_KEY", "sk-not-shown-123456")
    main(["models"])
    cli = _key_names(capsys.readouterr().out)
    ip = get_ipython()
    ip.run_line_magic("load_ext", "nbtoolkit")
    try:
        ip.run_line_magic("orchestrate", "models")
    finally:
        ip.run_line_magic("unload_ext", "nbtoolkit")
    out = capsys.readouterr().out
    magic = _key_names(out)
    # One list, read from litellm's own files: its providers' variables (Groq's, Fireworks'
    # and Bedrock's too, beyond the few best-known), and the environment's other *_API_KEY.
    assert cli == magic, cli ^ magic
    assert {"GROQ_API_KEY", "FIREWORKS_AI_API_KEY", "AWS_ACCESS_KEY_ID", "MY_VENDOR_API_KEY"} <= cli
    assert "sk-not-shown" not in out


def test_the_magic_also_names_the_variables_its_models_read(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from IPython.testing.globalipapp import get_ipython

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    ip = get_ipython()
    ip.run_line_magic("load_ext", "nbtoolkit")
    ip.user_ns["vllm"] = nbt.Model(
        "openai/my-model", api_base="http://127.0.0.1:8000/v1", api_key_env="MY_VLLM_TOKEN"
    )
    try:
        ip.run_line_magic("config", "Orchestrate.default_models = ['claude-3-5-haiku-20241022']")
        ip.run_line_magic("orchestrate", "models")
    finally:
        ip.run_line_magic("unload_ext", "nbtoolkit")
        ip.config.pop("Orchestrate", None)
        del ip.user_ns["vllm"]
    lines = capsys.readouterr().out.splitlines()
    assert any(
        line.split()[:3] == ["MY_VLLM_TOKEN", "not", "set"] and "openai/my-model" in line
        for line in lines
    ), lines
    assert any(
        line.split()[:3] == ["ANTHROPIC_API_KEY", "not", "set"] and "claude-3-5-haiku" in line
        for line in lines
    ), lines
