"""What the screen and the reports say is true: each number and comparative word is checked
against the frames it was made from (issue 11)."""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit.calibration import calibrate
from nbtoolkit.cli import summary_lines
from nbtoolkit.extract import canonical_number
from nbtoolkit.extract.jsonread import ends_inside_json
from nbtoolkit.jupyter.display import html_repr, text_repr
from nbtoolkit.progress import status_line
from nbtoolkit.providers import sim
from nbtoolkit.report import analysis as an
from nbtoolkit.report import failures
from nbtoolkit.report import sections as rs

PROMPT = "{question}\nReason briefly, then reply as JSON with an 'answer' field."
EXTRACT = ["json:answer", "number"]
PANEL = ["sim/oracle-large", "sim/steady-medium", "sim/swift-mini", "sim/budget-a", "sim/budget-b"]


def _norm(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\x00"
    try:
        return canonical_number(str(value).strip())
    except Exception:
        return str(value).strip()


def _run(gold_name: str = "gold", rows: int = 12, models: list[str] = PANEL, **kw: Any) -> Any:
    data = pd.DataFrame(sim.question_bank()[:rows])
    gold = data.pop("answer")
    data[gold_name] = gold  # the user's gold column, named as the user likes
    return nbt.orchestrate(PROMPT, models, data=data, extract=EXTRACT, seed=0, audit=False, **kw)


def _truth(res: Any) -> tuple[float, dict[str, float]]:
    """The consensus's and each model's accuracy, counted by hand from the frames."""
    gold = {r: _norm(sim.question_bank()[r]["answer"]) for r in res.consensus["row"]}
    cons = sum(
        _norm(a) == gold[r]
        for r, a in zip(res.consensus["row"], res.consensus["answer"], strict=True)
    )
    first = res.outputs[res.outputs["sample"] == 0]
    per_model = {
        m: sum(
            bool(v) and _norm(a) == gold[r]
            for r, a, v in zip(g["row"], g["answer"], g["valid"], strict=True)
        )
        / len(gold)
        for m, g in first.groupby("model")
    }
    return cons / len(gold), per_model


def _check_comparative(sentence: str, share: float, other: float) -> None:
    """The words say what the numbers say: better/worse by the gap shown, or as good as."""
    gap = round(share * 100) - round(other * 100)
    if gap > 0:
        assert "better than" in sentence and f"by {gap} point" in sentence, sentence
    elif gap < 0:
        assert "worse than" in sentence and f"by {-gap} point" in sentence, sentence
    else:
        assert "as good as" in sentence, sentence
    assert "no better than" not in sentence


# ------------------------------------------------------------------------------ gold


def test_gold_named_answer_is_read_even_when_the_data_has_an_answer_input_column() -> None:
    data = pd.DataFrame(sim.question_bank()[:12]).assign(answer_input="zzz")
    res = nbt.orchestrate(PROMPT, PANEL, data=data, extract=EXTRACT, seed=0, audit=False)
    assert res.consensus["answer_input"].eq("zzz").all()  # the user's own column, kept
    _, per_model = _truth(res)
    cal = calibrate(res, gold="answer", folds=3)
    for model, share in per_model.items():
        assert cal.per_model.loc[model, "accuracy"] == pytest.approx(share), model
    assert max(per_model.values()) > 0.5
    assert an.gold_of(res, "answer_input").eq("zzz").all()


@pytest.mark.parametrize("name", ["answer", "gold", "label", "row", "confidence"])
def test_gold_is_read_from_the_users_column_whatever_its_name(name: str) -> None:
    res = _run(name)
    acc, per_model = _truth(res)
    best = max(per_model, key=lambda m: (per_model[m], -PANEL.index(m)))
    assert acc < 1.0  # the panel is wrong somewhere: a self-scored consensus would read 100 %
    # calibrate() by the column's name
    cal = calibrate(res, gold=name, folds=3)
    for model, share in per_model.items():
        assert cal.per_model.loc[model, "accuracy"] == pytest.approx(share), model
    # every section every template calls, as the templates call them
    report = rs.Report(res, gold=name, template="batch_eval")
    bottom = report.executive_summary()._repr_html_()
    m = re.search(r"right on (\d+)% of (\d+) row\(s\), ([^;]*);", bottom)
    assert m, bottom
    assert int(m.group(1)) == round(acc * 100) and int(m.group(2)) == len(res.consensus)
    assert f"({best}, {round(per_model[best] * 100)}%)" in m.group(3)
    _check_comparative(m.group(3), acc, per_model[best])
    assert f"Accuracy against the gold answers: {round(acc * 100)}%" in bottom
    usage = an.usage(res, an.gold_of(res, name)).set_index("model")["accuracy"]
    assert {k: int(v.rstrip("%")) for k, v in usage.items()} == {
        k: round(v * 100) for k, v in per_model.items()
    }
    for section in (
        report.header(),
        report.strategies(),
        report.calibration(folds=3),
        report.workflow(),
        report.validation(),
        report.optimisation(),
        report.key_questions(),
        report.appendix(),
    ):
        assert "No gold answers" not in section._repr_html_()
    summary = report.appendix()._repr_mimebundle_()[rs.RECORD_MIME]["summary"]
    assert summary["accuracy"] == pytest.approx(acc)
    assert summary["best_model_accuracy"] == pytest.approx(per_model[best])


def test_a_pipeline_report_reads_gold_named_answer_too() -> None:
    from nbtoolkit.pipelines import Step, pipeline

    data = pd.DataFrame(sim.question_bank()[:6])  # its gold column is called "answer"
    res = pipeline(
        [
            Step(
                "final", PROMPT, ["sim/budget-a", "sim/budget-b", "sim/swift-mini"], extract=EXTRACT
            )
        ],
        data=data,
        seed=0,
    )
    final = res.steps["final"]
    gold = an.gold_of(final, "answer")
    assert gold is not None
    expected = [_norm(q["answer"]) for q in sim.question_bank()[:6]]
    assert list(gold) == expected  # the input's gold, not the consensus


# ---------------------------------------------------------------------- comparatives


@pytest.mark.parametrize(
    "models",
    [
        ["sim/budget-a", "sim/budget-b", "sim/oracle-large"],  # correlated mistakes: worse
        PANEL,
        ["sim/coin-flip", "sim/swift-mini"],
    ],
)
def test_every_comparative_sentence_matches_its_numbers(models: list[str]) -> None:
    res = _run(models=models, rows=20)
    acc, per_model = _truth(res)
    best = max(per_model, key=lambda m: (per_model[m], -models.index(m)))
    report = rs.Report(res, gold="gold")
    line = report._bottom_line()
    _check_comparative(line, acc, per_model[best])
    summary = an.summary(report.runs, an.gold_of(res, "gold"))
    consensus_line = next(x for x in summary_lines(summary, 1.0) if "consensus" in x)
    _check_comparative(consensus_line, acc, per_model[best])
    # calibrate's recommendation: its comparative agrees with the shares it prints
    cal = calibrate(res, gold="gold", folds=4)
    shares = [int(x) / 100 for x in re.findall(r"(\d+)%", cal.message)]
    assert len(shares) >= 2, cal.message
    _check_comparative(cal.message, shares[0], shares[-1])
    # the cascade note: the cost change's sign agrees with the two costs it names
    note = an.cascade_note(res, an.gold_of(res, "gold"))
    m = re.search(r"cost \$([\d.e-]+) instead of \$([\d.e-]+) \(([+-]\d+)%\)", note)
    if m:
        then, now, change = float(m.group(1)), float(m.group(2)), int(m.group(3))
        assert (change < 0) == (then < now) or change == 0, note


def test_the_worse_consensus_is_called_worse_with_the_gap() -> None:
    assert an.compared(0.92, 1.0, "the best") == "worse than the best, by 8 points"
    assert an.compared(0.7, 0.8, "x") == "worse than x, by 10 points"
    assert an.compared(0.8, 0.8, "x") == "as good as x"
    assert an.compared(0.81, 0.8, "x") == "better than x, by 1 point"


# ------------------------------------------------------------ four kinds of not-an-answer


class _CancelAfterFirst:
    """A progress reporter that cancels the run once the first call has finished."""

    def __init__(self) -> None:
        self.runner: Any = None
        self.states: list[Any] = []

    def start(self, runner: Any) -> None:
        self.runner = runner

    def __call__(self, state: Any) -> None:
        self.states.append(state)
        if state.completed >= 1 and not self.runner.cancelled:
            self.runner.cancel()


def test_a_reports_call_counts_are_the_calls_made_not_those_a_cancel_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The report's workflow diagram counted every call not skipped, cancelled ones
    included, while its health table and res.totals() did not."""
    from nbtoolkit.report.analysis import health
    from nbtoolkit.report.workflow import run_flow

    monkeypatch.setenv("NBTOOLKIT_SIM_TIME_SCALE", "0.01")
    reporter = _CancelAfterFirst()
    res = _run(
        rows=6,
        models=["sim/swift-mini", "sim/budget-a"],
        concurrency=1,
        progress=reporter,
        on_start=reporter.start,
    )
    assert res.cancelled and res.cancelled_mask().any()
    kinds = res.call_kinds()
    table = health(res).set_index("model")
    svg, _ = run_flow(res, "6 rows", "number", set(res.models))
    for model in res.models:
        made = int((kinds["made"] & (kinds["model"] == model)).sum())
        assert table.loc[model, "calls"] == made
        assert f"{made} calls, 0 failed" in svg
    assert int(kinds["made"].sum()) == res.totals()["calls"]


def test_cancelled_calls_are_neither_failed_nor_of_unknown_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NBTOOLKIT_SIM_TIME_SCALE", "0.01")  # calls take a little time
    reporter = _CancelAfterFirst()
    res = _run(
        rows=6,
        models=["sim/swift-mini", "sim/budget-a"],
        concurrency=1,
        progress=reporter,
        on_start=reporter.start,
    )
    assert res.cancelled
    t = res.totals()
    assert t["cancelled"] > 0 and t["failed"] == 0
    assert t["calls"] + t["cancelled"] == len(res.outputs)
    assert not math.isnan(t["cost_usd"])  # every price is known
    assert res.errors.empty and len(res.per_model()["failed"].loc[lambda s: s > 0]) == 0
    assert res.per_model()["calls"].sum() == t["calls"]
    state = reporter.states[-1]
    assert state.finished and sum(state.failed.values()) == 0
    line = status_line(state, cancelled=True)
    assert "cancelled" in line and "failed" not in line and "unknown" not in line, line
    page = html_repr(res)
    assert "(0 failed," in page and "cancelled" in page and "unknown" not in page
    # a row's confidence counts the answers it got, not the calls a cancel stopped
    for rec in res.consensus.to_dict("records"):
        if rec["n_valid"]:
            asked = res.outputs[(res.outputs["row"] == rec["row"]) & ~res.cancelled_mask()]
            assert rec["confidence"] == pytest.approx(
                rec["agreement"] * rec["n_valid"] / len(asked)
            )


def test_a_cascades_skipped_calls_are_not_calls_nor_invalid() -> None:
    res = _run(
        rows=10, models=["sim/swift-mini", "sim/budget-a", "sim/oracle-large"], strategy="cascade"
    )
    t = res.totals()
    assert t["skipped"] > 0
    made = res.outputs[~res.skipped_mask()]
    assert t["calls"] == len(made)
    assert t["invalid"] == int((made["output"].notna() & ~made["valid"]).sum())
    per = res.per_model()
    for model, g in made.groupby("model"):
        assert per.loc[model, "calls"] == len(g)
        assert per.loc[model, "valid"] == pytest.approx(g["valid"].mean())
    health = an.health(res).set_index("model")
    assert health["calls"].sum() == t["calls"]
    assert health["not needed (skipped)"].sum() == t["skipped"]
    for row, g in res.outputs.groupby("row"):
        rec = res.consensus.set_index("row").loc[row]
        asked = g[~g["error"].fillna("").str.startswith("Skipped:")]
        if rec["n_valid"]:
            assert rec["confidence"] <= rec["agreement"] + 1e-9
            assert rec["n_valid"] == int(asked["valid"].sum())


# --------------------------------------------------------------------------- heatmap


def test_pairs_that_never_both_answered_show_n_a() -> None:
    res = _run(rows=4, models=["sim/swift-mini", "sim/budget-a"])
    res.outputs.loc[
        (res.outputs["model"] == "sim/budget-a") & (res.outputs["row"] < 2), "valid"
    ] = False
    res.outputs.loc[
        (res.outputs["model"] == "sim/swift-mini") & (res.outputs["row"] >= 2), "valid"
    ] = False
    assert math.isnan(res.agreement_matrix().loc["sim/swift-mini", "sim/budget-a"])
    page = html_repr(res)
    table = page[page.index("nbtoolkit-agreement") :]
    assert ">n/a</td>" in table and ">0%</td>" not in table
    assert "n/a" in text_repr(res).split("agreement between models")[1]
    from nbtoolkit.report import figures

    nan = float("nan")
    drawing = figures.svg(figures.heatmap(["a", "b"], [[1.0, nan], [nan, 1.0]], title="t"))
    assert ">n/a<" in drawing and ">0%<" not in drawing
    section = rs.Report(res).key_questions()._repr_html_()
    assert ">n/a<" in section


# ---------------------------------------------------------------------------- digest


def test_the_digest_changes_with_what_would_change_a_rerun() -> None:
    a = _run(rows=3, models=["sim/swift-mini"])
    b = _run(rows=3, models=["sim/swift-mini"])
    c = nbt.orchestrate(
        PROMPT,
        ["sim/swift-mini"],
        data=pd.DataFrame(sim.question_bank()[:3]),
        extract=EXTRACT,
        seed=1,
        audit=False,
    )
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert a.meta["cache_keys_sha256"] != empty
    assert a.meta["cache_keys_sha256"] == b.meta["cache_keys_sha256"]
    assert a.meta["cache_keys_sha256"] != c.meta["cache_keys_sha256"]


# ------------------------------------------------------------------------------ time


def test_simulated_latency_is_named_beside_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBTOOLKIT_SIM_TIME_SCALE", "0.001")
    res = _run(rows=2, models=["sim/swift-mini", "sim/budget-a"])
    assert res.meta["sim_time_scale"] == 0.001
    page = html_repr(res)
    assert "simulated latency" in page and "0.001x their simulated latency" in page
    report = rs.Report(res, gold="gold")
    assert "0.001x their simulated latency" in report._bottom_line()
    assert "(simulated)" in report.optimisation()._repr_html_()
    summary = an.summary(report.runs, None)
    time_line = next(x for x in summary_lines(summary, 1.0) if x.strip().startswith("time"))
    assert "simulated latency" in time_line


# ------------------------------------------------------------------------- unknown cost


def test_an_unknown_cost_is_never_shown_as_zero() -> None:
    from nbtoolkit.runner import Progress

    state = Progress(
        total={"m": 2}, done={"m": 2}, failed={"m": 0}, cost_usd=0.0, unpriced=2, finished=True
    )
    line = status_line(state)
    assert "$0" not in line and "unknown" in line
    state.cost_usd, state.unpriced = 0.002, 1
    assert "at least $0.002 " in status_line(state)
    import io

    from nbtoolkit.progress import TerminalProgress

    out = io.StringIO()
    TerminalProgress(out)(
        Progress(total={"m": 1}, done={"m": 1}, failed={"m": 0}, unpriced=1, finished=True)
    )
    assert "$0.0000" not in out.getvalue() and "unknown" in out.getvalue()


def test_simulated_prices_are_named_only_for_the_simulated_models() -> None:
    runs = [("", _run(rows=2, models=["sim/swift-mini"]))]
    assert an.price_note(runs) == " at simulated prices"
    mixed = runs[0][1]
    mixed.models = ["sim/swift-mini", "gpt-4o-mini"]
    assert an.price_note([("", mixed)]) == " (simulated prices for sim/swift-mini)"


# ----------------------------------------------------------------- what went wrong


def test_problems_are_grouped_by_kind_with_one_example() -> None:
    res = _run(rows=40, models=["sim/budget-a", "sim/budget-b", "sim/coin-flip"])
    table = failures.problems(res)
    invalid = res.outputs[res.invalid_mask()]
    assert len(invalid) > 3
    assert table["count"].sum() == len(invalid)
    assert len(table) <= 4 and table["kind"].is_unique
    cut = [o for o in invalid["output"] if ends_inside_json(o)]
    if cut:
        row = table.set_index("kind").filter(like="JSON cut off", axis=0)
        assert int(row["count"].sum()) == len(cut)
    cut_rows = table[table["kind"].str.startswith("JSON cut off")]
    assert "no JSON object" not in " ".join(cut_rows["kind"]) + " ".join(cut_rows["example"])


def test_a_reply_cut_inside_its_json_says_so_in_its_error_row() -> None:
    from nbtoolkit.extract import apply, build_extractor

    cut = '```json\n{"reasoning": "12 trays of 18 is 216; 216 - 150 = 6'
    for spec in ("json", "json:answer", ["json:answer", "number"]):
        answer, valid, error = apply(build_extractor(spec), cut)
        assert (answer, valid) == (None, False)
        assert error is not None and error.startswith("extract: JSON cut off"), error
        assert "no JSON object" not in error
        assert failures.failure_kind(error, cut).startswith("JSON cut off")
    # A whole object with a brace in a string is not cut off; prose without JSON is not either.
    assert not ends_inside_json('{"answer": "a } and a {"}')
    _, _, error = apply(build_extractor("json"), "I think it is 6.")
    assert error is not None and "no JSON object" in error


# --------------------------------------------------------- the README's report command


@pytest.mark.slow
@pytest.mark.parametrize("template", ["batch_eval", "compare_models", "pipeline"])
def test_a_report_with_gold_named_answer_scores_against_the_users_column(
    template: str, tmp_path: Any
) -> None:
    """`nbtoolkit report batch_eval -p data questions.csv -p gold answer`: the README's own
    example once reported "100 %" by scoring the consensus against itself."""
    import html as html_mod
    import importlib.util

    from nbtoolkit import report

    if importlib.util.find_spec("ipykernel") is None:
        pytest.skip("ipykernel is not installed")
    data = tmp_path / "questions.csv"
    pd.DataFrame(sim.question_bank()[:10]).to_csv(data, index=False)  # gold column: "answer"
    out = tmp_path / f"{template}.ipynb"
    params: dict[str, Any] = {"data": str(data), "gold": "answer", "rows": 10}
    if template == "batch_eval":
        params["folds"] = 3
    run = report.run_report(template, out, parameters=params, progress=False)
    page = html_mod.unescape(re.sub(r"<[^>]+>", " ", run.html.read_text() if run.html else ""))
    consensus = report.collect_frames(out)["consensus"]
    if template == "pipeline":
        consensus = consensus[consensus["step"] == "final"]
    right = sum(
        _norm(a) == _norm(g)
        for a, g in zip(consensus["answer"], consensus["answer_input"], strict=True)
    )
    acc = right / len(consensus)
    m = re.search(r"right on (\d+)% of (\d+) row\(s\)", page)
    assert m, page[:2000]
    assert int(m.group(1)) == round(acc * 100) and int(m.group(2)) == len(consensus)
    assert "No gold answers" not in page


@pytest.mark.parametrize("blank", [math.nan, None, ""])
def test_rows_without_a_gold_answer_are_scored_neither_right_nor_wrong(blank: Any) -> None:
    """A NaN gold counted as a miss: calibrate called the best model 63 % right (truly 90 %)
    and recommended against the panel; an unanswered row with NaN gold counted as right."""
    data = pd.DataFrame(sim.question_bank()[:30])
    labelled = data["answer"].astype(object)
    data["gold"] = labelled.where(data.index % 3 != 0, blank)
    res = nbt.orchestrate(PROMPT, PANEL[:3], data=data, extract=EXTRACT, seed=0, audit=False)
    kept = [r for r in range(30) if r % 3 != 0]
    only = calibrate(res, gold=list(labelled.where(data.index % 3 != 0)), folds=4)
    truth = calibrate(res, gold="answer", rows=kept, folds=4)
    cal = calibrate(res, gold="gold", folds=4)
    pd.testing.assert_series_equal(cal.per_model["accuracy"], truth.per_model["accuracy"])
    pd.testing.assert_series_equal(only.per_model["accuracy"], truth.per_model["accuracy"])
    assert "10 rows without a gold answer were left out" in cal.message
    report = rs.Report(res, gold="gold")
    gold = an.gold_of(res, "gold")
    assert sorted(gold.index) == kept
    consensus = res.consensus.set_index("row")["answer"]
    right = sum(_norm(consensus[r]) == _norm(data["answer"][r]) for r in kept)
    assert an.accuracy(consensus, gold) == pytest.approx(right / len(kept))
    assert "of the 20 labelled row(s)" in report._bottom_line()
    data["gold"] = blank
    res = nbt.orchestrate(PROMPT, PANEL[:3], data=data, extract=EXTRACT, seed=0, audit=False)
    with pytest.raises(nbt.ConfigError, match="got 0 .30 more have no gold answer"):
        calibrate(res, gold="gold")
    assert "right on" not in rs.Report(res, gold="gold")._bottom_line()


def test_a_gold_series_is_read_by_row_everywhere_or_refused() -> None:
    """calibrate read a Series by position and the plots by index: the same reversed
    Series scored the best model 0 % in one and 100 % in the other."""
    res = _run(rows=10, models=PANEL[:2])
    truth = pd.Series([q["answer"] for q in sim.question_bank()[:10]])
    reversed_gold = truth.iloc[::-1]  # the same labels, in another order
    by_position = calibrate(res, gold=truth.tolist(), folds=2).per_model["accuracy"]
    pd.testing.assert_series_equal(
        calibrate(res, gold=reversed_gold, folds=2).per_model["accuracy"], by_position
    )
    assert (
        an.accuracy(res.answers[PANEL[0]], an.gold_answers(res, reversed_gold))
        == (by_position[PANEL[0]])
    )
    shifted = pd.Series(truth.to_numpy(), index=range(100, 110))
    with pytest.raises(nbt.ConfigError, match="not row numbers .*to_numpy"):
        calibrate(res, gold=shifted)
    with pytest.raises(nbt.ConfigError, match="not row numbers"):
        res.plot.accuracy(gold=shifted)
    with pytest.raises(nbt.ConfigError, match="no row an answer"):
        res.plot.accuracy(gold=[math.nan] * 10)
