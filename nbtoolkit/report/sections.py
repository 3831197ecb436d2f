"""The sections of a report, as HTML, from a finished run: what the report templates call.

A template runs the Python API, then shows one section per cell::

    from nbtoolkit.report import sections as rs
    report = rs.Report(res, gold="gold", parameters=PARAMETERS)
    report.header()
    report.executive_summary()      # what was asked, panel, strategy and why, outcome, cost
    report.workflow()               # the steps and models as an inline SVG diagram
    report.validation()             # rules, thresholds, repairs, fallbacks, errors per model
    report.optimisation()           # cost/tokens/latency; what dropping a model would change
    report.key_questions()          # low-confidence and disagreeing rows, unchecked assumptions
    report.appendix(output_prefix)  # the run manifest; saves the result frames as CSV

Each method returns a ``Section`` (``markup``): it shows itself as HTML in a notebook (and so
in the HTML nbconvert writes) with no IPython import. Charts are matplotlib figures embedded
as inline SVG (``figures``), the workflow a hand-built diagram (``workflow``): a static HTML
file shows them offline. Nothing here makes a model call: "what if" numbers come from
``rescore`` over the answers already recorded (``analysis``).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import ConfigError
from ..formatting import format_cost, format_tokens, sim_time_note, unpriced_calls
from ..results import RunResult, agreement_counts, agreement_sentence
from . import analysis as an
from . import failures, figures, trust, workflow
from . import markup as mk
from .assumptions import assumptions
from .inputs import BUILTIN_DATA, load_inputs, panel
from .markup import Section
from .run import RECORD_MIME

if TYPE_CHECKING:
    from ..calibration_result import Calibration
    from ..pipelines import PipelineResult

# BUILTIN_DATA, RECORD_MIME, load_inputs and panel live in inputs.py and run.py; they are
# named here too because a template imports this one module for all it needs.
__all__ = [
    "BUILTIN_DATA",
    "RECORD_MIME",
    "STRATEGY_WHY",
    "Report",
    "Section",
    "load_inputs",
    "panel",
]

#: Why a strategy was used, in the words of the executive summary.
STRATEGY_WHY = {
    "vote": "a majority vote: it corrects a model's mistake when the others err independently; "
    "ties go to the model listed first",
    "weighted": "a weighted vote: stronger models count more (weights from calibration or "
    "Model(weight=...))",
    "cascade": "a cascade: the cheapest models first, more only while they disagree, which "
    "saves calls when most rows are easy",
    "medoid": "the medoid: for free text, the answer most like all the others",
    "first_valid": "a fallback chain: the first model, in order, whose reply could be read",
    "judge": "a judge model picks the best of the panel's answers",
    "fuse": "an aggregator model writes one answer from the panel's answers",
}


# ---------------------------------------------------------------------------- report


@dataclass
class Report:
    """The sections of a report on ``result`` (a ``RunResult`` or a ``PipelineResult``).

    ``gold`` names the column of right answers (ignored when the data has none);
    ``parameters`` are the template's, shown in the appendix; the rest describe the rules
    the run was made with, for the validation section (``confidence_threshold`` None: the
    one the final run recorded, an ``"auto:..."`` one resolved, else 0.5).
    ``target_error``: the error rate the Key questions keep the trusted rows under when a
    calibration is present (0.05: 5 %); ``ConfigError`` outside (0, 1).
    """

    result: RunResult | PipelineResult = field(repr=False)
    gold: str = ""
    parameters: Mapping[str, Any] | None = None
    title: str = "Report"
    template: str = ""
    rationale: str = ""
    data_label: str = ""
    extract: Any = None
    confidence_threshold: float | None = None
    retries: int = 2
    repair: int = 0
    cache: str = "use"
    target_error: float = 0.05
    _calibrations: dict[int, Calibration] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.target_error < 1:
            raise ConfigError(
                f"target_error={self.target_error!r} is not an error rate between 0 and 1; "
                "give a share such as 0.05 (5 %)"
            )
        if self.confidence_threshold is None:
            recorded = self.final.meta.get("confidence_threshold")
            self.confidence_threshold = float(recorded) if recorded is not None else 0.5

    # -- plumbing ------------------------------------------------------------------------

    @property
    def runs(self) -> list[tuple[str, RunResult]]:
        if isinstance(self.result, RunResult):
            return [("", self.result)]
        return list(self.result.steps.items())  # a PipelineResult

    @property
    def final(self) -> RunResult:
        return self.runs[-1][1]

    @property
    def simulated(self) -> set[str]:
        return {m for _, r in self.runs for m in r.simulated}

    def _gold(self, res: RunResult) -> pd.Series | None:
        found = an.gold_of(res, self.gold)
        # Every row unlabelled: nothing to score against, as with no gold column at all.
        return found if found is not None and len(found) else None

    def calibrated(self, folds: int | None = None) -> Calibration | None:
        """``calibrate`` on the final run's gold answers, computed once per ``folds`` (None:
        the one the calibration section made, else 5 folds) and shared by the sections;
        None without gold answers."""
        final = self.final
        if an.gold_column(final, self.gold) is None:
            return None
        if folds is None:
            folds = next(iter(self._calibrations), 5)
        folds = min(folds, len(final.consensus))
        if folds not in self._calibrations:
            from ..calibration import calibrate

            self._calibrations[folds] = calibrate(final, gold=self.gold, folds=folds)
        return self._calibrations[folds]

    # -- sections ------------------------------------------------------------------------

    def header(self) -> Section:
        """The title, what the report is about, and a banner when models are simulated."""
        runs = self.runs
        models = sorted({m for _, r in runs for m in r.models})
        what = f"{len(self.final.consensus)} row(s), {len(models)} model(s)"
        if len(runs) > 1:
            what = f"a {len(runs)}-step pipeline, " + what
        sub = f"nbtoolkit report · {what}" + (
            f" · template {self.template}" if self.template else ""
        )
        parts = [f"<h1>{html.escape(self.title)}</h1><p><em>{html.escape(sub)}</em></p>"]
        if self.simulated:
            parts.append(
                "<div class='nbtoolkit-callout nbtoolkit-simulated'><strong>Simulated models."
                "</strong> " + html.escape(", ".join(sorted(self.simulated))) + " are simulated "
                "(not real LLMs, offline): their answers, latencies and prices are made up to "
                "show how the orchestration behaves.</div>"
            )
        return Section(mk.wrap(*parts), f"{self.title}: {what}")

    def executive_summary(self) -> Section:
        """What was asked, the panel and strategy and why, the outcome, total cost and time."""
        final, runs = self.final, self.runs
        items = [("Bottom line", html.escape(self._bottom_line()))]
        if len(runs) == 1:
            rows = len(final.consensus)
            over = f" over {rows} row(s)" + (f" of {self.data_label}" if self.data_label else "")
            items.append(
                ("What was asked", f"<pre>{mk.esc(final.prompt, 1200)}</pre>{html.escape(over)}")
            )
        else:
            chain = " → ".join(
                f"{name} ({len(r.models)} model(s), {r.strategy})" for name, r in runs
            )
            items.append(("What was asked", html.escape(f"A pipeline: {chain}.")))
        panels = []
        for name, r in runs:
            names = ", ".join(mk.model_name(m, self.simulated) for m in r.models)
            panels.append((f"<strong>{html.escape(name)}</strong>: " if name else "") + names)
        items.append(("Panel", "<br>".join(panels)))
        strategies = []
        for name, r in runs:
            why = STRATEGY_WHY.get(r.strategy, "a custom strategy")
            strategies.append(
                (f"<strong>{html.escape(name)}</strong>: " if name else "")
                + f"<code>{mk.esc(an.strategy_label(r))}</code>, {html.escape(why)}."
                + html.escape(trust.strategy_note(r))
            )
        if self.rationale:
            strategies.append("Why this panel: " + html.escape(self.rationale))
        items.append(("Strategy and why", "<br>".join(strategies)))
        items.append(("Consensus outcome", html.escape(self._outcome(final))))
        items.append(("Cost and time", html.escape(self._cost_line())))
        body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
        return Section(mk.wrap(mk.h2("Executive summary"), f"<dl>{body}</dl>"), self._bottom_line())

    def workflow(self) -> Section:
        """The steps and models, their inputs and outputs, as an inline SVG diagram."""
        if len(self.runs) == 1:
            drawing, words = workflow.run_flow(
                self.final, self.data_label, self.extract, self.simulated
            )
        else:
            drawing, words = workflow.pipeline_flow(self.runs, self.data_label)
        caption = f"<p>{html.escape(words)}</p>"
        return Section(mk.wrap(mk.h2("Orchestration workflow"), drawing, caption), words)

    def validation(self) -> Section:
        """Aggregation rule, thresholds, repairs, fallbacks, invalid outputs and errors."""
        parts = [mk.h2("Validation and error handling")]
        extract = an.describe_extract(self.extract)
        rules = [
            (
                "Answer extraction",
                f"{extract}; a reply it cannot read is an invalid answer, "
                "kept in the outputs with the reason, never dropped",
            ),
            (
                "Confidence threshold",
                f"rows whose consensus confidence is below "
                f"{self.confidence_threshold:g} are flagged low-confidence (see Key questions)",
            ),
            (
                "Retries",
                f"up to {self.retries} retries on rate limits, server errors, timeouts "
                "and broken replies, with backoff; the server's Retry-After is honoured",
            ),
            (
                "Repairs",
                f"up to {self.repair} re-ask(s) with the validation error"
                if self.repair
                else "off (an unreadable reply stays invalid)",
            ),
            (
                "Cache",
                f"cache={self.cache!r}"
                + (
                    ": no provider call was made; every answer comes from the recorded cache"
                    if self.cache == "replay-only"
                    else ""
                ),
            ),
        ]
        aggregation = []
        for name, r in self.runs:
            label = f" ({name})" if name else ""
            why = STRATEGY_WHY.get(r.strategy, "a custom strategy")
            aggregation.append((f"Aggregation rule{label}", f"{an.strategy_label(r)}: {why}"))
            fallbacks = an.fallbacks_configured(r)
            rules.append((f"Fallbacks{label}", fallbacks or "none configured"))
        rules = aggregation + rules
        parts.append(mk.table(pd.DataFrame(rules, columns=["rule", "setting"])))
        for name, r in self.runs:
            if name:
                parts.append(f"<h3>Step {html.escape(name)}</h3>")
            parts.append(mk.table(an.health(r), models=self.simulated))
            problems = failures.problems(r)
            if len(problems):
                parts.append(
                    "<p>What went wrong, by kind (one example of each):</p>" + mk.table(problems)
                )
            else:
                parts.append("<p>Every call answered and every answer could be read.</p>")
            if r.warnings:
                parts.append("<p>Warnings:</p>" + mk.bullets([html.escape(w) for w in r.warnings]))
        return Section(mk.wrap(*parts), "validation and error handling")

    def optimisation(self) -> Section:
        """Cost, tokens and latency per model; dropping a model; a cascade instead."""
        parts = [mk.h2("Optimisation notes")]
        for name, r in self.runs:
            gold = self._gold(r)
            if name:
                parts.append(f"<h3>Step {html.escape(name)}</h3>")
            parts.append(mk.table(an.usage(r, gold), models=self.simulated))
            if len(r.models) >= 2:
                drops = an.drop_each(r, gold)
                parts.append(
                    "<p>What dropping each model would change (recombined from the "
                    "recorded answers, no new call):</p>" + mk.table(drops, models=self.simulated)
                )
                parts.append(f"<p>{html.escape(an.cascade_note(r, gold))}</p>")
            charts = figures.Plots(r)
            parts.append(figures.svg(charts.latency()))
            # The column's name, not the answers: the chart reads the gold column itself.
            parts.append(
                figures.svg(charts.cost_accuracy(gold=self.gold if gold is not None else None))
            )
        return Section(mk.wrap(*parts), "optimisation notes")

    def key_questions(self, max_rows: int = 25) -> Section:
        """The rows to look at, the agreement heatmap, and assumptions not checked."""
        parts = [mk.h2("Key questions")]
        final = self.final
        flagged = an.flagged_rows(final, self._gold(final))
        if len(flagged):
            parts.append(
                f"<p>{len(flagged)} row(s) with low confidence or disagreeing models"
                + (" (the final step)" if len(self.runs) > 1 else "")
                + ":</p>"
                + mk.table(flagged.head(max_rows))
            )
            if len(flagged) > max_rows:
                parts.append(
                    f"<p><em>and {len(flagged) - max_rows} more: see the consensus "
                    "CSV saved with this report.</em></p>"
                )
        else:
            parts.append("<p>No row has low confidence or a disagreement.</p>")
        trusted = trust.about_run(final, self.target_error)
        # One labelled row cannot be held out from itself: no calibration to speak of.
        if trusted is None and len(final.consensus) >= 2 and (cal := self.calibrated()):
            trusted = trust.about_calibration(cal, self.target_error)
        if trusted is not None:
            parts.append(trust.html(trusted, final, max_rows))
        if len(final.models) >= 2:
            parts.append(figures.svg(figures.Plots(final).agreement()))
        notes = [html.escape(a) for a in assumptions(self.runs, self.gold, self.cache)]
        parts.append("<p><strong>Assumptions that could not be checked</strong></p>")
        parts.append(mk.bullets(notes) or "<p>None.</p>")
        return Section(mk.wrap(*parts), f"{len(flagged)} row(s) to look at")

    def strategies(self) -> Section:
        """Accuracy, cost and latency per model and per strategy, by ``rescore`` (no calls)."""
        final = self.final
        gold = self._gold(final)
        table = an.strategy_table(final, gold)
        chart = figures.svg(figures.strategy_scatter(table))
        shown = table.assign(
            accuracy=[mk.share(a) for a in table["accuracy"]],
            cost_per_row=[format_cost(c) for c in table["cost_per_row"]],
            calls_per_row=[f"{c:.2f}" for c in table["calls_per_row"]],
            median_row_wait=[mk.seconds(s) for s in table["median_row_wait"]],
        ).rename(columns=mk.READABLE)
        return Section(
            mk.wrap(
                mk.h2("Accuracy, cost and latency by model and strategy"),
                "<p>Every strategy recombines the same recorded answers (<code>rescore</code>): "
                "no new call. A cascade's calls are the ones it would have needed; a row's "
                f"wait is built from the recorded latencies{html.escape(an.waits_note(final))}."
                "</p>",
                mk.table(shown),
                chart,
            ),
            "strategies compared",
        )

    def calibration(self, folds: int = 5) -> Section:
        """``calibrate``'s recommendation: the best panel and strategy by held-out accuracy,
        and how far its calibrated confidence can be trusted (held out), with the reliability
        diagram."""
        final = self.final
        cal = self.calibrated(folds)
        if cal is None:
            return Section(
                mk.wrap(
                    mk.h2("Calibration recommendation"),
                    "<p>No gold answers: nothing to calibrate on.</p>",
                )
            )
        per_model = cal.per_model.reset_index()
        per_model["accuracy"] = [mk.share(a) for a in per_model["accuracy"]]
        per_model["valid"] = [mk.share(a) for a in per_model["valid"]]
        per_model["latency_s"] = [mk.seconds(x) for x in per_model["latency_s"]]
        per_model["cost_per_row"] = [format_cost(c) for c in per_model["cost_per_row"]]
        per_model = per_model.rename(columns=mk.READABLE)
        cands = cal.candidates.reset_index()
        cands["accuracy"] = [mk.share(a) for a in cands["accuracy"]]
        cands["cost_per_row"] = [format_cost(c) for c in cands["cost_per_row"]]
        cands["calls_per_row"] = [f"{c:.2f}" for c in cands["calls_per_row"]]
        cands = cands.rename(columns=mk.READABLE)
        return Section(
            mk.wrap(
                mk.h2("Calibration recommendation"),
                f"<p class='nbtoolkit-callout'><strong>{html.escape(cal.message)}</strong></p>",
                f"<p>Use it: <code>strategy={mk.esc(repr(cal.recommendation))}</code></p>",
                f"<p>Per model, in-sample: accuracy on all {len(final.consensus)} rows, the "
                "rows the weights were fitted on (not held out, so not comparable with the "
                "held-out figures in the recommendation):</p>",
                mk.table(per_model),
                f"<p>Candidates, by accuracy on held-out rows ({folds}-fold):</p>",
                mk.table(cands),
                self._confidence(cal),
            ),
            cal.message,
        )

    def _confidence(self, cal: Calibration) -> str:
        if cal.held_out.empty:
            return ""
        from .calibration_figures import CalibrationPlots

        lines = [
            f"expected calibration error {cal.ece:.3f} on {len(cal.held_out)} held-out rows "
            f"(10 bins; the strategy's own confidence: {cal.strategy_ece:.3f})",
            *(str(cal.threshold_for(t)) for t in sorted({*cal.TARGETS, self.target_error})),
        ]
        if cal.paired is not None:
            lines.append(str(cal.paired))
        return (
            f"<p>{html.escape(cal.CONFIDENCE_LABEL.capitalize())}: a probability that the row "
            "is right, each row scored by a confidence model fitted without it.</p>"
            + mk.bullets([html.escape(line) for line in lines])
            + figures.svg(CalibrationPlots(cal).reliability())
        )

    def appendix(self, output_prefix: str = "") -> Section:
        """The run manifest; saves the result frames as CSV beside the report when asked."""
        frames = an.save_frames(self.runs, output_prefix) if output_prefix else {}
        manifest = (
            self.final.meta
            if len(self.runs) == 1
            else {"steps": {name: r.meta for name, r in self.runs}}
        )
        record = an.jsonable(
            {
                "manifest": manifest,
                "frames": frames,
                "summary": an.summary(self.runs, self._gold(self.final)),
                "parameters": dict(self.parameters or {}),
                "template": self.template,
            }
        )
        parts = [mk.h2("Appendix: run manifest")]
        parts.append(
            "<p>Everything the numbers above were made from. Re-running the report with "
            "<code>--replay-only</code> answers every call from the recorded cache (no "
            "provider call) and gives the same consensus and the same numbers; only "
            "wall-clock times, the <code>cached</code> flags and the latency of simulated "
            "models (simulated again, never cached) differ.</p>"
        )
        if self.parameters:
            params = pd.DataFrame(
                [(k, json.dumps(v, default=str)) for k, v in self.parameters.items()],
                columns=["parameter", "value"],
            )
            parts.append("<p>Template parameters:</p>" + mk.table(params))
        if frames:
            parts.append(
                "<p>Result frames saved beside this report: "
                + ", ".join(f"<code>{mk.esc(p)}</code> ({mk.esc(k)})" for k, p in frames.items())
                + ".</p>"
            )
        parts.append("<p>Run manifest:</p>" + mk.manifest_table(record["manifest"]))
        return Section(mk.wrap(*parts), "run manifest", record=record)

    # -- sentences -----------------------------------------------------------------------

    def _bottom_line(self) -> str:
        final = self.final
        gold = self._gold(final)
        rows = len(final.consensus)
        cost = self._cost_line(short=True)
        if gold is not None:
            acc = an.accuracy(final.consensus.set_index("row")["answer"], gold)
            best, best_acc = an.best_single(final, gold)
            verdict = an.compared(acc, best_acc, f"the best single model ({best}, {best_acc:.0%})")
            scored = f"{rows} row(s)" if len(gold) == rows else f"the {len(gold)} labelled row(s)"
            return f"The consensus was right on {acc:.0%} of {scored}, {verdict}; {cost}."
        low = int(final.consensus["low_confidence"].sum())
        counts = agreement_counts(final.consensus)
        if rows == 1:
            rec = final.consensus.iloc[0]
            return (
                f"The consensus answer is {an.short(rec['answer'])} with confidence "
                f"{float(rec['confidence']):.2f}; {cost}."
            )
        return (
            f"{agreement_sentence(counts).capitalize()}; {low} row(s) are below the "
            f"{self.confidence_threshold:g} confidence threshold and need a look; {cost}."
        )

    def _outcome(self, res: RunResult) -> str:
        c = res.consensus
        if len(c) == 1:
            rec = c.iloc[0]
            return (
                f"{an.short(rec['answer'])}: confidence {float(rec['confidence']):.2f}, "
                f"{mk.share(rec['agreement'])} of the {int(rec['n_valid'])} valid answer(s) agree."
            )
        low = int(c["low_confidence"].sum())
        text = (
            f"{len(c)} rows: mean confidence {c['confidence'].mean():.2f}; "
            f"{agreement_sentence(agreement_counts(c))}; {low} below the "
            f"{self.confidence_threshold:g} threshold."
        )
        gold = self._gold(res)
        if gold is not None:
            text += f" Accuracy against the gold answers: {an.accuracy(c.set_index('row')['answer'], gold):.0%}."
        return text

    def _cost_line(self, short: bool = False) -> str:
        totals = [r.totals() for _, r in self.runs]
        cost = an.cost_total(t["cost_usd"] for t in totals)
        known = sum(t["known_cost_usd"] for t in totals)
        wall = sum(t["wall_s"] for t in totals)
        calls = sum(t["calls"] for t in totals)
        tokens = format_tokens(
            sum(t["prompt_tokens"] for t in totals),
            sum(t["completion_tokens"] for t in totals),
            sum(t["unknown_token_calls"] for t in totals),
        )
        cached = sum(t["cached"] for t in totals)
        money = format_cost(cost)
        if math.isnan(cost):
            unpriced = sum(unpriced_calls(r) for _, r in self.runs)
            floor = f"at least {format_cost(known)}; " if known else ""
            money = f"unknown ({floor}no price known for {unpriced} call(s))"
        money += an.price_note(self.runs)
        note = sim_time_note(self.final)
        took = f"{wall:.1f} s of wall-clock time" + (f" ({note})" if note else "")
        if short:
            return f"it cost {money} and took {took}"
        return (
            f"{money} for {calls} calls ({cached} answered from the cache), tokens {tokens}; "
            f"{took}."
        )
