"""The widget app and the live progress widget, driven from code on simulated models."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

from nbtoolkit.jupyter.widgets import App, ui
from nbtoolkit.runner import Progress

from .conftest import loaded_shell

PROMPT = "{question}\nAnswer with a number."


@pytest.fixture
def ip() -> Iterator[InteractiveShell]:
    """The test shell, with the extension loaded the way a user loads it."""
    yield from loaded_shell(5)


@pytest.fixture
def app(ip: InteractiveShell) -> App:
    return ui(shell=ip)


def html_of(output: Any) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in output.outputs)


def text_of(output: Any) -> str:
    return "".join(o.get("text", "") for o in output.outputs)


def fill(app: App) -> None:
    app.models.value = ("budget-a", "budget-b", "oracle")
    app.strategy.value = "vote"
    app.extract.value = "number"
    app.data.value = "questions"
    app.seed.value = "3"
    app.temperature.value = "0.2"
    app.out.value = "app_res"
    app.prompt.value = PROMPT


def test_the_app_has_its_dom_hooks(app: App) -> None:
    assert "nbtoolkit-app" in app.root._dom_classes
    assert app.run_button.description == "Run"
    assert "nbtoolkit-run" in app.run_button._dom_classes
    assert "questions" in [value for _label, value in app.data.options]
    bundle = app._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_a_run_shows_the_result_and_the_cell_reruns_the_same(
    app: App, ip: InteractiveShell
) -> None:
    fill(app)
    expected = (
        "%%orchestrate -m budget-a -m budget-b -m oracle -s vote --extract number "
        "--over questions --temperature 0.2 --seed 3 --out app_res\n" + PROMPT + "\n"
    )
    assert app.cell_text() == expected
    assert "--over questions" in app.cell.value  # the preview follows the fields

    result = app.run(wait=True)
    assert result is not None and app.result is result
    assert ip.user_ns["app_res"] is result
    assert "nbtoolkit-consensus" in html_of(app.result_output)
    assert len(result.consensus) == 5
    assert app.run_button.disabled is False and app.cancel_button.disabled is True
    assert app.reporter is not None and "done" in app.reporter.cost.value

    executed = ip.run_cell(app.cell_text())
    assert executed.success, executed.error_in_exec
    again = ip.user_ns["app_res"]
    assert again is not result
    pd.testing.assert_frame_equal(again.consensus, result.consensus)


def test_typed_model_ids_judge_and_samples_in_the_cell(app: App) -> None:
    app.models.value = ("oracle",)
    app.other_models.value = "sim/swift-mini, sim/steady-medium"
    app.strategy.value = "judge"
    app.judge.value = "steady"
    app.samples.value = 2
    app.prompt.value = "What is 'two' + 2?"
    assert app.cell_text() == (
        "%%orchestrate -m oracle -m sim/swift-mini -m sim/steady-medium --judge steady "
        "--samples 2\nWhat is 'two' + 2?\n"
    )
    result = app.run(wait=True)
    assert result.strategy == "judge" and len(result.outputs) == 6


def test_mistakes_are_shown_in_the_app(app: App) -> None:
    fill(app)
    app.temperature.value = "hot"
    assert app.run(wait=True) is None
    assert "invalid float value: 'hot'" in text_of(app.messages)
    app.temperature.value = ""
    app.other_models.value = "sim/nope"
    assert app.run(wait=True) is None
    assert "unknown simulated model" in text_of(app.messages)
    assert app.run_button.disabled is False


def test_callback_errors_are_shown_not_swallowed(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("the refresh broke")

    monkeypatch.setattr(app, "refresh", broken)
    app.refresh_button.click()
    assert "RuntimeError: the refresh broke" in text_of(app.messages)


def test_background_run_and_cancel(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBTOOLKIT_SIM_TIME_SCALE", "1")  # oracle-large takes ~2.5 s a call
    app.models.value = ("oracle", "swift")
    app.extract.value = "number"
    app.data.value = "questions"
    app.prompt.value = PROMPT
    started = time.monotonic()
    assert app.run() is None  # returns at once: the run is on a thread
    assert app.running
    assert app.run_button.disabled is True and app.cancel_button.disabled is False
    time.sleep(1.2)  # swift-mini (~0.6 s) answers, oracle-large does not
    app.cancel_button.click()
    result = app.wait(timeout=30)
    assert time.monotonic() - started < 5
    assert result is not None and result.cancelled
    assert "Cancelled" in text_of(app.messages)
    assert "nbtoolkit-cancelled" in html_of(app.result_output)
    finished = result.outputs[result.outputs["output"].notna()]
    assert set(finished["model"]) == {"sim/swift-mini"}


def test_the_data_picker_refreshes(app: App, ip: InteractiveShell) -> None:
    ip.user_ns["later"] = pd.DataFrame({"x": [1]})
    ip.user_ns["_private"] = pd.DataFrame({"x": [1]})
    app.refresh()
    values = [value for _label, value in app.data.options]
    assert "later" in values and "_private" not in values


# ------------------------------------------------------------------ progress widget


def progress(done: int, failed: int = 0, finished: bool = False) -> Progress:
    return Progress(
        total={"a": 4, "b": 4},
        done={"a": done, "b": 4},
        failed={"a": failed, "b": 0},
        cost_usd=0.0125,
        finished=finished,
    )


class FakeRunner:
    def __init__(self) -> None:
        self.cancels = 0

    def cancel(self) -> None:
        self.cancels += 1


def test_progress_bars_per_model_cost_and_throttle() -> None:
    from nbtoolkit.jupyter.progress import WidgetProgress

    reporter = WidgetProgress()
    reporter(progress(1))
    bar_a, text_a = reporter._rows["a"]
    assert (bar_a.value, bar_a.max, text_a.value) == (1, 4, "1/4")
    assert "$0.0125 spent" in reporter.cost.value
    reporter(progress(2))  # within 0.1 s of the last update: skipped
    assert bar_a.value == 1
    reporter(progress(2, failed=1, finished=True))  # the last one always goes through
    assert (bar_a.value, text_a.value, bar_a.bar_style) == (3, "3/4 (1 failed)", "warning")
    assert reporter._rows["b"][0].bar_style == "success"
    assert reporter.cost.value.startswith("done")


def test_progress_cancel_before_and_after_start() -> None:
    from nbtoolkit.jupyter.progress import WidgetProgress

    reporter = WidgetProgress()
    reporter.cancel()  # before the runner exists: passed on when it does
    runner = FakeRunner()
    reporter.attach(runner)
    assert runner.cancels == 1
    reporter(progress(1))  # still running: asked again, harmless
    assert runner.cancels == 2
    reporter(progress(4, finished=True))
    assert reporter.cost.value.startswith("cancelled")
    reporter.close()
    reporter.cancel()  # after the run: nothing to stop
    assert runner.cancels == 2


def test_progress_mode_guess(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbtoolkit.progress import resolve_mode

    class Kernel:
        _allow_stdin = True

    class Shell:
        kernel = Kernel()

    monkeypatch.delenv("NBTOOLKIT_PROGRESS", raising=False)
    monkeypatch.delenv("PAPERMILL_EXECUTION", raising=False)
    assert resolve_mode("auto", Shell()) == "widget"
    assert resolve_mode("auto", None) == "text"
    assert resolve_mode("none", Shell()) == "none"
    Kernel._allow_stdin = False  # nbclient, papermill, nbconvert
    assert resolve_mode("auto", Shell()) == "text"
    Kernel._allow_stdin = True
    monkeypatch.setenv("NBTOOLKIT_PROGRESS", "none")
    assert resolve_mode("auto", Shell()) == "none"


def test_the_app_keeps_the_users_model_order(app: App) -> None:
    app.models.value = ["swift", "oracle", "budget-a"]  # not alphabetical: a tie goes first
    app.prompt.value = "{question}"
    assert app.model_list() == ["swift", "oracle", "budget-a"]
    assert app.cell_text().startswith("%%orchestrate -m swift -m oracle -m budget-a")
    app.models.value = ["budget-a", "swift", "oracle"]  # reordered (a drag in the browser)
    assert app.model_list()[0] == "budget-a"


def test_after_an_error_no_stale_progress_or_result_is_shown(app: App) -> None:
    fill(app)
    assert app.run(wait=True) is not None
    assert "nbtoolkit-consensus" in html_of(app.result_output)
    assert app.progress_box.children
    app.other_models.value = "sim/nope"  # fails when the run starts
    assert app.run(wait=True) is None
    assert "unknown simulated model" in text_of(app.messages)
    assert html_of(app.result_output) == ""  # not the previous run's table under the error
    assert not app.progress_box.children  # not a bar stuck at "starting…"


def test_progress_bars_after_a_cancel_say_cancelled_not_failed() -> None:
    from nbtoolkit.jupyter.progress import WidgetProgress

    reporter = WidgetProgress()
    state = Progress(
        total={"a": 12, "b": 12},
        done={"a": 6, "b": 5},
        failed={"a": 0, "b": 0},
        cancelled={"a": 6, "b": 7},
        cost_usd=0.004,
        finished=True,
    )
    reporter.cancel_requested = True
    reporter(state)
    bar, text = reporter._rows["b"]
    assert text.value == "5/5 (7 cancelled)" and "failed" not in text.value
    assert bar.bar_style == "success" and bar.value == bar.max == 5
    assert reporter.cost.value.startswith("cancelled") and "unknown" not in reporter.cost.value
    assert "$0.004 spent" in reporter.cost.value


def test_progress_of_a_cascade_names_its_skipped_calls() -> None:
    from nbtoolkit.jupyter.progress import WidgetProgress

    reporter = WidgetProgress()
    reporter(
        Progress(total={"a": 6}, done={"a": 2}, failed={"a": 0}, skipped={"a": 4}, finished=True)
    )
    assert reporter._rows["a"][1].value == "2/2 (4 skipped)"


def test_the_app_starts_from_the_default_models_in_their_order(ip: InteractiveShell) -> None:
    ip.run_line_magic("config", 'Orchestrate.default_models = ["swift", "oracle", "sim/coin-flip"]')
    app = ui(shell=ip)
    assert app.model_list() == ["swift", "oracle", "sim/coin-flip"]  # not sorted, none dropped


def test_own_server_fields_go_with_the_typed_ids_only(app: App) -> None:
    app.models.value = ("oracle",)
    app.other_models.value = "openai/mine"
    app.api_base.value = "http://127.0.0.1:8000/v1"
    app.api_key_env.value = "LOCAL_KEY"
    app.budget.value = "0.5"
    app.prompt.value = "Hi"
    assert app.cell_text() == (
        "%%orchestrate -m oracle --api-base http://127.0.0.1:8000/v1 --api-key-env LOCAL_KEY "
        "-m openai/mine -s vote --budget 0.5\nHi\n"
    )


def test_estimate_and_clear(app: App) -> None:
    fill(app)
    found = app.estimate()
    assert found is not None and "<table" in html_of(app.messages)
    assert app.result is None  # nothing was run
    app.run(wait=True)
    assert html_of(app.result_output)
    app.clear()
    assert not app.result_output.outputs and not app.progress_box.children
    assert app.result is not None  # the result stays bound


def test_alias_buttons_add_models_in_click_order(app: App) -> None:
    app.models.value = ()
    app.picks["swift"].value = True
    app.picks["oracle"].value = True
    assert list(app.models.value) == ["swift", "oracle"]
    assert app.cell_text().startswith("%%orchestrate -m swift -m oracle ")
    app.picks["swift"].value = False  # a second click takes it out
    assert list(app.models.value) == ["oracle"]
    app.models.value = ["budget-a", "oracle"]  # typed or dragged in the tags
    assert [a for a, b in app.picks.items() if b.value] == ["budget-a", "oracle"]


def test_cascade_and_judge_options_show_only_with_their_strategy(app: App) -> None:
    app.models.value = ("swift", "steady", "oracle")
    app.strategy.value = "vote"
    assert app.judge.layout.display == "none" and app.threshold.layout.display == "none"
    app.strategy.value = "cascade"
    assert app.threshold.layout.display == "" and app.judge.layout.display == "none"
    app.threshold.value = 3
    app.prompt.value = "What is 2+2?"
    assert app.cell_text().split("\n")[0].endswith(" -s cascade --threshold 3")
    result = app.run(wait=True)
    assert result.meta["strategy"] == "Cascade(order=None, threshold=3)"
    app.strategy.value = "judge"
    assert app.judge.layout.display == "" and app.threshold.layout.display == "none"
    assert "--threshold" not in app.cell_text()


def test_threshold_is_the_cascades_option() -> None:
    from IPython.core.error import UsageError

    from nbtoolkit.jupyter import cells
    from nbtoolkit.jupyter.settings import Orchestrate

    with pytest.raises(UsageError, match="--threshold 3 is the cascade's option: add -s cascade"):
        cells.prepare("-m oracle --threshold 3", "What is 2+2?", {}, Orchestrate())
    run = cells.prepare("-m oracle -s cascade --threshold 3", "What is 2+2?", {}, Orchestrate())
    assert run.options["strategy"].threshold == 3
