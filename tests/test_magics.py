"""``%%orchestrate`` and ``%orchestrate`` in a real IPython shell, on offline models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import nbtoolkit
import nbtoolkit.api
from nbtoolkit import RunFailedError, RunResult

from .conftest import loaded_shell

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "{question}\nAnswer with a number."


@pytest.fixture
def ip() -> Iterator[InteractiveShell]:
    """The test shell, with the extension loaded the way a user loads it."""
    yield from loaded_shell(4)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ``orchestrate`` call the magic makes, recorded on the way to the real one."""
    seen: list[dict[str, Any]] = []
    real = nbtoolkit.api.orchestrate

    def spy(prompt: str, models: Any, **kwargs: Any) -> RunResult:
        seen.append({"prompt": prompt, "models": models, **kwargs})
        return real(prompt, models, **kwargs)

    monkeypatch.setattr(nbtoolkit.api, "orchestrate", spy)
    return seen


def cell(ip: InteractiveShell, line: str, body: str = PROMPT) -> Any:
    return ip.run_cell_magic("orchestrate", line, body)


def usage(ip: InteractiveShell, line: str, body: str = PROMPT) -> str:
    """The message of the UsageError the cell raises; it must be exactly that class."""
    with pytest.raises(UsageError) as info:
        cell(ip, line, body)
    assert type(info.value) is UsageError
    message = str(info.value)
    assert "\n" not in message and message.startswith("%%orchestrate:")
    return message


# ------------------------------------------------------------------ the extension


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "NBTOOLKIT_SIM_TIME_SCALE": "0"},
    )


def test_load_ext_is_fast_quiet_and_imports_no_heavy_client() -> None:
    done = run_python(
        "import sys, time, io, contextlib\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "out, err = io.StringIO(), io.StringIO()\n"
        "start = time.perf_counter()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        "    ip.run_line_magic('load_ext', 'nbtoolkit')\n"
        "elapsed = time.perf_counter() - start\n"
        "heavy = sorted(m for m in ('litellm', 'pandas', 'ipywidgets') if m in sys.modules)\n"
        "print(repr(out.getvalue() + err.getvalue()), heavy, 'orchestrate' in "
        "ip.magics_manager.magics['cell'], f'{elapsed:.3f}')\n"
    )
    assert done.returncode == 0, done.stderr
    # How long it takes is measured in benchmarks/ (figure 1b), never asserted in a test.
    printed, heavy, registered, _elapsed = done.stdout.rsplit(" ", 3)
    assert printed == "''" and heavy == "[]" and registered == "True", done.stdout


def test_loading_twice_is_harmless_and_unload_removes_the_magics(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    configurables = [c for c in ip.configurables if type(c).__name__ == "Orchestrate"]
    nbtoolkit.load_ipython_extension(ip)  # a second load, straight through the hook
    assert [c for c in ip.configurables if type(c).__name__ == "Orchestrate"] == configurables
    assert capsys.readouterr().out == ""
    ip.run_line_magic("unload_ext", "nbtoolkit")
    assert "orchestrate" not in ip.magics_manager.magics["cell"]
    assert "orchestrate" not in ip.magics_manager.magics["line"]
    assert not [c for c in ip.configurables if type(c).__name__ == "Orchestrate"]
    ip.run_line_magic("load_ext", "nbtoolkit")  # the fixture unloads it again
    assert "orchestrate" in ip.magics_manager.magics["cell"]


def test_config_sets_defaults(ip: InteractiveShell, calls: list[dict[str, Any]]) -> None:
    ip.run_line_magic("config", "Orchestrate.default_models = ['oracle', 'sim/swift-mini']")
    ip.run_line_magic("config", "Orchestrate.default_strategy = 'weighted'")
    ip.run_line_magic("config", "Orchestrate.concurrency = 3")
    ip.run_line_magic("config", "Orchestrate.cache = 'off'")
    ip.run_line_magic("config", "Orchestrate.progress = 'none'")
    res = cell(ip, "", "What is 2+2?")
    assert res.models == ["sim/oracle-large", "sim/swift-mini"]
    assert res.strategy == "weighted"
    assert calls[-1]["concurrency"] == 3 and calls[-1]["cache"] == "off"
    ip.run_line_magic("config", "Orchestrate.aliases = {'big': 'sim/oracle-large'}")
    assert cell(ip, "-m big", "What is 2+2?").models == ["sim/oracle-large"]
    assert "oracle" in usage(ip, "-m oracle", "What is 2+2?")  # the alias table was replaced


# ----------------------------------------------------------------- the cell magic


def test_a_run_over_a_dataframe(ip: InteractiveShell) -> None:
    res = cell(ip, "-m oracle -m budget-a,budget-b --extract number --over questions --out res")
    assert isinstance(res, RunResult)
    assert ip.user_ns["res"] is res
    assert res.models == ["sim/oracle-large", "sim/budget-a", "sim/budget-b"]
    assert len(res.consensus) == 4
    assert list(res.consensus["id"]) == list(ip.user_ns["questions"]["id"])
    assert res.consensus["answer"].str.fullmatch(r"\d+").all()
    assert ip.run_line_magic("orchestrate", "last") is res


def test_the_result_is_the_value_of_the_cell(ip: InteractiveShell) -> None:
    executed = ip.run_cell("%%orchestrate -m swift --no-progress\nWhat is 2+2?\n")
    assert executed.success
    assert isinstance(executed.result, RunResult)
    assert ip.user_ns["_orch"] is executed.result  # the default --out


def test_variables_come_from_the_namespace_and_only_those(
    ip: InteractiveShell, calls: list[dict[str, Any]]
) -> None:
    ip.user_ns["tone"] = "briefly"
    ip.user_ns["unrelated"] = object()
    cell(ip, "-m swift --over questions", '{question}\nAnswer {tone}. JSON: {"a": 1}')
    assert calls[-1]["variables"] == {"tone": "briefly"}
    cell(ip, "-m swift", 'No names here, only {"json": true}')
    assert "variables" not in calls[-1]


def test_options_reach_orchestrate(
    ip: InteractiveShell, calls: list[dict[str, Any]], tmp_path: Path
) -> None:
    cell(
        ip,
        "-m oracle --model swift -s weighted --extract json:answer --extract number "
        "--samples 2 --temperature 0.5 --seed 7 --max-tokens 64 --system 'Be brief.' "
        "--cache refresh --concurrency 2 --timeout 30 --retries 0 --strict --progress text",
        "What is 2+2?",
    )
    call = calls[-1]
    assert call["models"] == ["sim/oracle-large", "sim/swift-mini"]
    assert call["strategy"] == "weighted"
    assert call["extract"] == ["json:answer", "number"]
    assert call["samples"] == 2 and call["temperature"] == 0.5 and call["seed"] == 7
    assert call["max_tokens"] == 64 and call["system"] == "Be brief."
    assert call["cache"] == "refresh" and call["concurrency"] == 2
    assert call["timeout"] == 30.0 and call["retries"] == 0 and call["strict"] is True
    assert callable(call["progress"]) and callable(call["on_start"])
    res = ip.user_ns["_orch"]
    assert sorted(res.outputs["sample"].unique()) == [0, 1]


def test_quoted_values_and_regex_extract_are_taken_literally(ip: InteractiveShell) -> None:
    res = cell(
        ip, '-m swift -m oracle --extract \'"answer": "(\\d{1,5})"\' --over questions --no-progress'
    )
    assert res.consensus["answer"].str.fullmatch(r"\d+").all()


def test_schema(ip: InteractiveShell) -> None:
    class Answer(pydantic.BaseModel):
        answer: int
        reasoning: str

    ip.user_ns["Answer"] = Answer
    res = cell(ip, "-m oracle -m steady --schema Answer --over questions")
    valid = res.outputs[res.outputs["valid"]]
    assert len(valid) and all(isinstance(a, Answer) for a in valid["answer"])


def test_recordings_and_partial_failure_warn_visibly(
    ip: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_text(
        json.dumps({"model": "a", "prompt": "What is 2+2?", "output": "4"})
        + "\n"
        + json.dumps({"model": "b", "prompt": "something else", "output": "5"})
        + "\n"
    )
    res = cell(ip, f"-m replay/a -m replay/b --recordings '{path}' --out rec", "What is 2+2?")
    assert list(res.outputs["output"].isna()) == [False, True]
    assert res.warnings and "1 of 2 calls failed" in res.warnings[0]
    assert "1 of 2 calls failed; see rec.errors" in capsys.readouterr().err
    assert "nbtoolkit-warnings" in res._repr_html_()


def test_every_call_failing_raises_and_keeps_the_result(
    ip: InteractiveShell, tmp_path: Path
) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_text(json.dumps({"model": "a", "prompt": "other", "output": "4"}) + "\n")
    with pytest.raises(RunFailedError):
        cell(ip, f"-m replay/a --recordings {path} --out failed", "What is 2+2?")
    assert ip.user_ns["failed"].errors.shape[0] == 1
    executed = ip.run_cell(f"%%orchestrate -m replay/a --recordings {path}\nWhat is 2+2?")
    assert isinstance(executed.error_in_exec, RunFailedError)  # the cell fails: papermill stops


def test_judge(ip: InteractiveShell, calls: list[dict[str, Any]]) -> None:
    from nbtoolkit import strategies

    if "judge" not in strategies.names():
        assert "not available yet" in usage(ip, "-m oracle -m swift --judge oracle", "What?")
        return
    res = cell(ip, "-m oracle -m swift --judge steady --extract number --over questions")
    assert res.strategy == "judge"
    assert getattr(calls[-1]["strategy"], "name", None) == "judge"


def test_budget(ip: InteractiveShell, calls: list[dict[str, Any]]) -> None:
    import inspect

    if "max_cost_usd" not in inspect.signature(nbtoolkit.api.orchestrate).parameters:
        assert "not available yet" in usage(ip, "-m oracle --budget 0.5", "What?")
        return
    cell(ip, "-m oracle --budget 0.5", "What is 2+2?")
    assert calls[-1]["max_cost_usd"] == 0.5


@pytest.mark.parametrize(
    ("line", "body", "expected"),
    [
        ("-m swift --bogus", PROMPT, "unrecognized arguments: --bogus"),
        ("swift", PROMPT, "unrecognized arguments: swift"),
        ("-m swift --samples x", PROMPT, "invalid int value"),
        ("-m swift --samples 0", PROMPT, "--samples 0"),
        ("-m swift --temperature -1", PROMPT, "--temperature -1"),
        ("-m swift --temperature hot", PROMPT, "invalid float value"),
        ("-m swift --temperature nan", PROMPT, "--temperature nan"),
        ("-m swift --max-tokens 0", PROMPT, "--max-tokens 0"),
        ("-m swift --concurrency 0", PROMPT, "--concurrency 0"),
        ("-m swift --timeout 0", PROMPT, "--timeout 0"),
        ("-m swift --retries -1", PROMPT, "--retries -1"),
        ("-m swift --budget -1", PROMPT, "--budget -1"),
        ("-m swift --cache sometimes", PROMPT, "invalid choice"),
        ("-m swift --progress loud", PROMPT, "invalid choice"),
        ('-m "swift', PROMPT, "check the quotes"),
        ("", PROMPT, "no models"),
        ("-m ,", PROMPT, "no models"),
        ("-m swift", "  \n ", "the cell is empty"),
        ("-m swift --over nowhere", PROMPT, "no variable 'nowhere'"),
        ("-m swift --over not_a_frame", PROMPT, "not a pandas DataFrame"),
        ("-m swift --schema Nowhere", PROMPT, "no variable 'Nowhere'"),
        ("-m swift --schema not_a_frame", PROMPT, "not a pydantic model class"),
        ("-m swift --out 1st", PROMPT, "not a valid Python name"),
        ("-m swift --out class", PROMPT, "not a valid Python name"),
        ("-m swift --over questions", "{question} {missing}", "{missing}"),
        ("-m swift", "{question}", "no variable called 'question'"),
        ("-m sim/nope", "What?", "unknown simulated model"),
        ("-m swift -s nope", "What?", "unknown strategy 'nope'"),
        ("-m swift --extract '(a)(b)'", "What?", "exactly one group"),
        ("-m swift -s vote --judge oracle", "What?", "judge"),
        ("-m replay/x --recordings /no/such/file.jsonl", "What?", "/no/such/file.jsonl"),
    ],
)
def test_mistakes_are_one_usage_error_line(
    ip: InteractiveShell, line: str, body: str, expected: str
) -> None:
    ip.user_ns["not_a_frame"] = [1, 2, 3]
    assert expected in usage(ip, line, body)


def test_a_missing_api_key_is_a_usage_error(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert "OPENAI_API_KEY" in usage(ip, "-m gpt-4o-mini", "What is 2+2?")


def test_usage_errors_show_one_line_without_traceback(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    executed = ip.run_cell("%%orchestrate -m swift --samples 0\nWhat?")
    assert type(executed.error_in_exec) is UsageError
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["UsageError: %%orchestrate: --samples 0: must be more than zero"]


def test_short_errors_off_shows_the_original_exception(ip: InteractiveShell) -> None:
    ip.run_line_magic("config", "Orchestrate.short_errors = False")
    with pytest.raises(nbtoolkit.ModelError):
        cell(ip, "-m sim/nope", "What?")


# ----------------------------------------------------------------- the line magic


def test_line_magic_models_names_keys_without_values(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value-123")
    monkeypatch.setenv("MY_VENDOR_API_KEY", "another-secret")
    ip.run_line_magic("orchestrate", "models")
    out = capsys.readouterr().out
    assert "oracle" in out and "sim/oracle-large" in out and "simulated" in out
    assert "OPENAI_API_KEY       set" in out and "MY_VENDOR_API_KEY" in out
    assert "secret" not in out


def test_line_magic_help_and_mistakes(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_line_magic("orchestrate", "help")
    out = capsys.readouterr().out
    assert "%orchestrate models" in out and "--over" in out and "--judge" in out
    for line, expected in [
        ("nonsense", "unknown command"),
        ("models extra", "takes no arguments"),
        ("last", "no run yet"),
    ]:
        with pytest.raises(UsageError, match=expected):
            ip.run_line_magic("orchestrate", line)


def test_line_magic_ui_builds_the_app(ip: InteractiveShell) -> None:
    from nbtoolkit.jupyter.widgets import App

    app = ip.run_line_magic("orchestrate", "ui")
    assert isinstance(app, App)
    assert "questions" in [value for _label, value in app.data.options]


# ------------------------------------------------------------------ did you mean


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("-m oracel", "Did you mean oracle?"),
        ("-m oracle-large", "Did you mean sim/oracle-large?"),
        ("-m sim/oracel-large", "Did you mean 'sim/oracle-large'?"),
        ("-m oracle --extrct number", "Did you mean: --extrct -> --extract?"),
        ("-m oracle -s votee", "Did you mean 'vote'?"),
        ("-m oracle --judge oracel", "Did you mean oracle?"),
    ],
)
def test_a_mistyped_name_gets_the_closest_accepted_form(
    ip: InteractiveShell, line: str, hint: str
) -> None:
    message = usage(ip, line, "What is 2+2?")
    assert hint in message
    # never a form a cell cannot take
    assert "api_base=..." not in message and "openai/oracel" not in message


def test_a_mistyped_line_command_gets_a_suggestion(ip: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="Did you mean 'models'"):
        ip.run_line_magic("orchestrate", "modles")


def test_the_readmes_first_jupyter_example_runs_as_written() -> None:
    """Every cell of the README's "In Jupyter" example, in order, in a fresh shell."""
    import re as _re

    from IPython.testing import globalipapp

    text = (ROOT / "README.md").read_text()
    section = text.split("## In Jupyter", 1)[1].split("\n## ", 1)[0]
    blocks = _re.findall(r"```(?:python)?\n(.*?)```", section, _re.S)
    assert len(blocks) >= 2 and "%%orchestrate" in blocks[1]
    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    shell.user_ns.pop("questions", None)
    try:
        for block in blocks[:2]:
            executed = shell.run_cell(block)
            assert executed.success, executed.error_in_exec or executed.error_before_exec
        res = shell.user_ns["res"]
        assert res.outputs["valid"].mean() > 0.8 and len(res.consensus) == 8
    finally:
        shell.run_line_magic("unload_ext", "nbtoolkit")
        for name in ("questions", "res", "pd", "sim"):
            shell.user_ns.pop(name, None)


def test_a_missing_key_names_only_what_a_cell_can_do(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    message = usage(ip, "-m gpt-4o-mini", "What is 2+2?")
    assert "OPENAI_API_KEY" in message and "os.environ" in message
    assert "%env OPENAI_API_KEY=" in message
    assert "api_key_env" not in message and "Model(" not in message


def test_a_judge_without_a_model_is_told_the_cells_flag(ip: InteractiveShell) -> None:
    message = usage(ip, "-m oracle -m swift -s judge", "What is 2+2?")
    assert "--judge MODEL" in message and "Judge(" not in message


def test_an_interrupted_cell_keeps_the_finished_rows_in_its_variable_and_still_stops(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = nbtoolkit.api.orchestrate

    def interrupted(prompt: str, models: Any, **kwargs: Any) -> RunResult:
        partial = real(prompt, models, **kwargs)
        raise nbtoolkit.RunInterrupted("interrupted after 3 of 3 calls", partial)

    monkeypatch.setattr(nbtoolkit.api, "orchestrate", interrupted)
    ip.user_ns["question"] = "What is 2 + 2?"
    with pytest.raises(KeyboardInterrupt):  # a Run All goes no further
        cell(ip, "-m sim/swift-mini --out partial")
    assert isinstance(ip.user_ns["partial"], RunResult)
    assert "the finished rows are in partial" in capsys.readouterr().err


def test_a_misspelt_frame_or_column_suggests_the_one_that_exists(ip: InteractiveShell) -> None:
    import pandas as pd

    ip.user_ns["questions"] = pd.DataFrame({"question": ["What is 2 + 2?"]})
    assert "Did you mean 'questions'?" in usage(ip, "-m swift --over questionz", "{question}")
    assert "did you mean {question}?" in usage(ip, "-m swift --over questions", "{qestion}")


@pytest.mark.parametrize("line", ["-m swift --api-base {server.base_url}", "-m $model"])
def test_a_variable_in_the_line_says_the_line_is_not_expanded(
    ip: InteractiveShell, line: str
) -> None:
    # Not expanded on purpose: a regex's {1,5} in --extract would become "(1, 5)".
    assert "is not expanded" in usage(ip, line)


def test_line_magic_models_names_a_key_only_for_the_models_that_send_it(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    local = nbtoolkit.Model("openai/my-local-model", api_base="http://127.0.0.1:8000/v1")
    ip.user_ns.update(mine=local, again=local, hosted=nbtoolkit.Model("openai/gpt-4o-mini"))
    ip.run_line_magic("orchestrate", "models")
    line = next(x for x in capsys.readouterr().out.splitlines() if "OPENAI_API_KEY" in x)
    # A model on its own server never gets the provider's key, so it is not named here.
    assert "(for openai/gpt-4o-mini)" in line and "my-local-model" not in line


def test_a_cell_names_every_missing_key_in_forms_a_cell_can_use(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    message = usage(ip, "-m gpt-4o-mini -m claude-haiku-4-5", "What is 2 + 2?")
    assert "OPENAI_API_KEY" in message and "ANTHROPIC_API_KEY" in message
    assert "%env" in message and "Model(" not in message
