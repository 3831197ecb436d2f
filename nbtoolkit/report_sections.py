"""The sections of a report, as HTML, from a finished run: what the report templates call.

A template runs the Python API, then shows one section per cell::

    from nbtoolkit import report_sections as rs
    report = rs.Report(res, gold="gold", parameters=PARAMETERS)
    report.header()
    report.executive_summary()      # what was asked, panel, strategy and why, outcome, cost
    report.workflow()               # the steps and models as an inline SVG diagram
    report.validation()             # rules, thresholds, repairs, fallbacks, errors per model
    report.optimisation()           # cost/tokens/latency; what dropping a model would change
    report.key_questions()          # low-confidence and disagreeing rows, unchecked assumptions
    report.appendix(output_prefix)  # the run manifest; saves the result frames as CSV

Each method returns a ``Section``: it shows itself as HTML in a notebook (and so in the HTML
nbconvert writes) with no IPython import. Charts are hand-written SVG (``report_svg``): a
static HTML file shows them offline. Nothing here makes a model call: "what if" numbers come
from ``rescore`` over the answers already recorded.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import report_analysis as an
from . import report_failures as failures
from . import report_figures as fig
from . import report_svg as svg
from .errors import ConfigError, clip
from .formatting import (
    format_cost,
    format_tokens,
    sim_time_note,
    unpriced_calls,
)
from .results import RunResult, agreement_counts, agreement_matrix, agreement_sentence
from .spec import Model

if TYPE_CHECKING:
    from .pipelines import PipelineResult

__all__ = ["BUILTIN_DATA", "RECORD_MIME", "Report", "Section", "load_inputs", "panel"]

#: The ``data`` value meaning "the simulated models' own question bank, with gold answers".
BUILTIN_DATA = "builtin:sim-questions"
#: The mimetype of the machine-readable record a report's appendix carries.
RECORD_MIME = "application/vnd.nbtoolkit.record+json"

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


# ---------------------------------------------------------------------------- inputs


def load_inputs(data: str, rows: int = 0) -> pd.DataFrame | None:
    """The rows a template runs on: ``""`` none (one prompt), ``BUILTIN_DATA`` the simulated
    question bank (gold answers in ``gold``), else a CSV, Parquet or JSON Lines file."""
    if not data:
        return None
    if data == BUILTIN_DATA:
        from .providers import sim

        frame = pd.DataFrame(sim.question_bank()).rename(columns={"answer": "gold"})
    else:
        lower = data.lower()
        if not os.path.exists(data):
            raise ConfigError(f"data file {data!r} does not exist (or use {BUILTIN_DATA!r})")
        if lower.endswith(".csv"):
            frame = pd.read_csv(data)
        elif lower.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(data)
        elif lower.endswith((".jsonl", ".ndjson")):
            frame = pd.read_json(data, lines=True)
        else:
            raise ConfigError(f"data file {data!r}: use a .csv, .parquet or .jsonl file")
    if rows and rows > 0:
        frame = frame.head(rows)
    return frame.reset_index(drop=True)


def panel(
    models: Sequence[str | Mapping[str, Any] | Model], *, api_base: str = "", api_key_env: str = ""
) -> list[Model]:
    """Models from ids or dicts; ``api_base``/``api_key_env`` apply to every non-offline one.

    ``api_key_env`` is the NAME of an environment variable: a key never goes in a parameter.
    """
    out = []
    for m in models:
        if isinstance(m, Model):
            out.append(m)
            continue
        options = dict(m) if isinstance(m, Mapping) else {"id": m}
        model_id = str(options.pop("id"))
        if not model_id.startswith(("sim/", "replay/")):
            if api_base:
                options.setdefault("api_base", api_base)
            if api_key_env:
                options.setdefault("api_key_env", api_key_env)
        out.append(Model(model_id, **options))
    return out


# --------------------------------------------------------------------------- pieces


class Section:
    """A piece of a report: HTML in a notebook or in nbconvert's output, text elsewhere."""

    def __init__(self, markup: str, text: str = "", record: dict[str, Any] | None = None) -> None:
        self.html = markup
        self.text = text
        self.record = record

    def _repr_html_(self) -> str:
        return self.html

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/html": self.html, "text/plain": repr(self)}
        if self.record is not None:
            bundle[RECORD_MIME] = self.record
        return bundle

    def __repr__(self) -> str:
        return self.text or f"<report section: {len(self.html)} characters of HTML>"


def _e(value: Any, limit: int | None = None) -> str:
    text = "" if an.missing(value) else str(value)
    return html.escape(clip(text, limit, "…") if limit is not None else text, quote=True)


def _h2(title: str) -> str:
    anchor = title.lower().replace(" ", "-").replace(":", "")
    return f"<h2 id='{anchor}'>{html.escape(title)}</h2>"


def _table(frame: pd.DataFrame, *, models: set[str] | None = None) -> str:
    """An HTML table; with ``models``, the "model"/"drop" column gets simulated badges."""
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    body = []
    for rec in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, rec, strict=True):
            cls = " class='num'" if isinstance(value, (int, float)) else ""
            shown = _e(value)
            if models is not None and column in ("model", "drop"):
                shown = _model(str(value), models)
            cells.append(f"<td{cls}>{shown}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        "<table class='nbtoolkit-table'><thead><tr>" + head + "</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _badge(text: str) -> str:
    return f"<span class='nbtoolkit-badge'>{html.escape(text)}</span>"


def _model(label: str, simulated: set[str]) -> str:
    return html.escape(label) + (_badge("simulated") if label in simulated else "")


def _share(x: Any) -> str:
    return "—" if an.missing(x) else f"{float(x):.0%}"


def _secs(x: Any) -> str:
    return "—" if an.missing(x) else f"{float(x):.2f} s"


_READABLE = {
    "calls_per_row": "calls per row",
    "cost_per_row": "cost per row",
    "median_row_wait": "median row wait",
    "answers_changed": "answers changed vs this run",
    "latency_s": "median latency",
}


def _list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>" if items else ""


_CSS = """<style>
.nbtoolkit-report table{border-collapse:collapse;margin:0.4em 0 0.8em;font-size:0.92em}
.nbtoolkit-report td,.nbtoolkit-report th{border-bottom:1px solid #e5e7eb;padding:3px 9px;
text-align:left;vertical-align:top}
.nbtoolkit-report td.num{text-align:right;font-variant-numeric:tabular-nums}
.nbtoolkit-badge{display:inline-block;padding:0 6px;margin-left:6px;border-radius:8px;
font-size:0.8em;background:#ede9fe;color:#4c1d95}
.nbtoolkit-callout{padding:6px 10px;margin:6px 0;border-left:4px solid #a855f7;
background:#faf5ff;color:#3b0764}
.nbtoolkit-report dt{font-weight:600;margin-top:0.5em}
.nbtoolkit-report dd{margin:0.1em 0 0.3em 1.2em}
.nbtoolkit-report pre{white-space:pre-wrap;background:#f9fafb;padding:6px 8px;margin:0.2em 0}
</style>"""


def _wrap(*parts: str) -> str:
    return f"<div class='nbtoolkit-report'>{_CSS}{''.join(parts)}</div>"


def _manifest_table(manifest: Mapping[str, Any]) -> str:
    """The manifest as rows of name and compact JSON; a pipeline's steps one after another."""
    if "steps" in manifest and len(manifest) == 1:
        return "".join(
            f"<h3>Step {html.escape(name)}</h3>{_manifest_table(meta)}"
            for name, meta in manifest["steps"].items()
        )
    rows = []
    for key, value in manifest.items():
        if key == "models" and all(isinstance(m, dict) and list(m) == ["id"] for m in value):
            shown = ", ".join(m["id"] for m in value)
        else:
            shown = json.dumps(value, default=str, ensure_ascii=False)
        rows.append((key, shown))
    return _table(pd.DataFrame(rows, columns=["item", "value"]))


# ---------------------------------------------------------------------------- report


@dataclass
class Report:
    """The sections of a report on ``result`` (a ``RunResult`` or a ``PipelineResult``).

    ``gold`` names the column of right answers (ignored when the data has none);
    ``parameters`` are the template's, shown in the appendix; the rest describe the rules
    the run was made with, for the validation section.
    """

    result: RunResult | PipelineResult = field(repr=False)
    gold: str = ""
    parameters: Mapping[str, Any] | None = None
    title: str = "Report"
    template: str = ""
    rationale: str = ""
    data_label: str = ""
    extract: Any = None
    confidence_threshold: float = 0.5
    retries: int = 2
    repair: int = 0
    cache: str = "use"

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
        return an.gold_of(res, self.gold)

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
        return Section(_wrap(*parts), f"{self.title}: {what}")

    def executive_summary(self) -> Section:
        """What was asked, the panel and strategy and why, the outcome, total cost and time."""
        final, runs = self.final, self.runs
        items = [("Bottom line", html.escape(self._bottom_line()))]
        if len(runs) == 1:
            rows = len(final.consensus)
            over = f" over {rows} row(s)" + (f" of {self.data_label}" if self.data_label else "")
            items.append(
                ("What was asked", f"<pre>{_e(final.prompt, 1200)}</pre>{html.escape(over)}")
            )
        else:
            chain = " → ".join(
                f"{name} ({len(r.models)} model(s), {r.strategy})" for name, r in runs
            )
            items.append(("What was asked", html.escape(f"A pipeline: {chain}.")))
        panels = []
        for name, r in runs:
            names = ", ".join(_model(m, self.simulated) for m in r.models)
            panels.append((f"<strong>{html.escape(name)}</strong>: " if name else "") + names)
        items.append(("Panel", "<br>".join(panels)))
        strategies = []
        for name, r in runs:
            why = STRATEGY_WHY.get(r.strategy, "a custom strategy")
            strategies.append(
                (f"<strong>{html.escape(name)}</strong>: " if name else "")
                + f"<code>{_e(an.strategy_label(r))}</code>, {html.escape(why)}."
            )
        if self.rationale:
            strategies.append("Why this panel: " + html.escape(self.rationale))
        items.append(("Strategy and why", "<br>".join(strategies)))
        items.append(("Consensus outcome", html.escape(self._outcome(final))))
        items.append(("Cost and time", html.escape(self._cost_line())))
        body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
        return Section(_wrap(_h2("Executive summary"), f"<dl>{body}</dl>"), self._bottom_line())

    def workflow(self) -> Section:
        """The steps and models, their inputs and outputs, as an inline SVG diagram."""
        if len(self.runs) == 1:
            drawing, words = fig.run_flow(self.final, self.data_label, self.extract, self.simulated)
        else:
            drawing, words = fig.pipeline_flow(self.runs, self.data_label)
        caption = f"<p>{html.escape(words)}</p>"
        return Section(_wrap(_h2("Orchestration workflow"), drawing, caption), words)

    def validation(self) -> Section:
        """Aggregation rule, thresholds, repairs, fallbacks, invalid outputs and errors."""
        parts = [_h2("Validation and error handling")]
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
        parts.append(_table(pd.DataFrame(rules, columns=["rule", "setting"])))
        for name, r in self.runs:
            if name:
                parts.append(f"<h3>Step {html.escape(name)}</h3>")
            parts.append(_table(an.health(r), models=self.simulated))
            problems = failures.problems(r)
            if len(problems):
                parts.append(
                    "<p>What went wrong, by kind (one example of each):</p>" + _table(problems)
                )
            else:
                parts.append("<p>Every call answered and every answer could be read.</p>")
            if r.warnings:
                parts.append("<p>Warnings:</p>" + _list([html.escape(w) for w in r.warnings]))
        return Section(_wrap(*parts), "validation and error handling")

    def optimisation(self) -> Section:
        """Cost, tokens and latency per model; dropping a model; a cascade instead."""
        parts = [_h2("Optimisation notes")]
        for name, r in self.runs:
            gold = self._gold(r)
            if name:
                parts.append(f"<h3>Step {html.escape(name)}</h3>")
            parts.append(_table(an.usage(r, gold), models=self.simulated))
            if len(r.models) >= 2:
                drops = an.drop_each(r, gold)
                parts.append(
                    "<p>What dropping each model would change (recombined from the "
                    "recorded answers, no new call):</p>" + _table(drops, models=self.simulated)
                )
                parts.append(f"<p>{html.escape(an.cascade_note(r, gold))}</p>")
            parts.append(fig.latency_chart(r))
            parts.append(fig.cost_accuracy_chart(r, gold))
        return Section(_wrap(*parts), "optimisation notes")

    def key_questions(self, max_rows: int = 25) -> Section:
        """The rows to look at, the agreement heatmap, and assumptions not checked."""
        parts = [_h2("Key questions")]
        final = self.final
        flagged = an.flagged_rows(final, self._gold(final))
        if len(flagged):
            parts.append(
                f"<p>{len(flagged)} row(s) with low confidence or disagreeing models"
                + (" (the final step)" if len(self.runs) > 1 else "")
                + ":</p>"
                + _table(flagged.head(max_rows))
            )
            if len(flagged) > max_rows:
                parts.append(
                    f"<p><em>and {len(flagged) - max_rows} more: see the consensus "
                    "CSV saved with this report.</em></p>"
                )
        else:
            parts.append("<p>No row has low confidence or a disagreement.</p>")
        if len(final.models) >= 2:
            matrix = agreement_matrix(final)
            parts.append(
                svg.heatmap(
                    list(matrix.index),
                    matrix.to_numpy().tolist(),
                    title="How often two models gave the same answer",
                    note="share of rows where both gave a valid answer and it was the same; "
                    "n/a: they never both answered one row",
                )
            )
        assumptions = [html.escape(a) for a in an.assumptions(self.runs, self.gold, self.cache)]
        parts.append("<p><strong>Assumptions that could not be checked</strong></p>")
        parts.append(_list(assumptions) or "<p>None.</p>")
        return Section(_wrap(*parts), f"{len(flagged)} row(s) to look at")

    def strategies(self) -> Section:
        """Accuracy, cost and latency per model and per strategy, by ``rescore`` (no calls)."""
        final = self.final
        gold = self._gold(final)
        table = an.strategy_table(final, gold)
        points = [
            (
                str(rec["candidate"]),
                rec["cost_per_row"],
                rec["accuracy"],
                "model" if rec["kind"] == "single model" else "strategy",
            )
            for rec in table.to_dict("records")
        ]
        chart = svg.scatter(
            points,
            title="Cost against accuracy, per model and strategy",
            x_label="cost per row (USD)",
            y_label="accuracy",
        )
        shown = table.assign(
            accuracy=[_share(a) for a in table["accuracy"]],
            cost_per_row=[format_cost(c) for c in table["cost_per_row"]],
            calls_per_row=[f"{c:.2f}" for c in table["calls_per_row"]],
            median_row_wait=[_secs(s) for s in table["median_row_wait"]],
        ).rename(columns=_READABLE)
        return Section(
            _wrap(
                _h2("Accuracy, cost and latency by model and strategy"),
                "<p>Every strategy recombines the same recorded answers (<code>rescore</code>): "
                "no new call. A cascade's calls are the ones it would have needed; a row's "
                f"wait is built from the recorded latencies{html.escape(an.waits_note(final))}."
                "</p>",
                _table(shown),
                chart,
            ),
            "strategies compared",
        )

    def calibration(self, folds: int = 5) -> Section:
        """``calibrate``'s recommendation: the best panel and strategy by held-out accuracy."""
        from .calibration import calibrate

        final = self.final
        column = an.gold_column(final, self.gold)
        if column is None:
            return Section(
                _wrap(
                    _h2("Calibration recommendation"),
                    "<p>No gold answers: nothing to calibrate on.</p>",
                )
            )
        cal = calibrate(final, gold=self.gold, folds=min(folds, len(final.consensus)))
        per_model = cal.per_model.reset_index()
        per_model["accuracy"] = [_share(a) for a in per_model["accuracy"]]
        per_model["valid"] = [_share(a) for a in per_model["valid"]]
        per_model["latency_s"] = [_secs(x) for x in per_model["latency_s"]]
        per_model["cost_per_row"] = [format_cost(c) for c in per_model["cost_per_row"]]
        per_model = per_model.rename(columns=_READABLE)
        cands = cal.candidates.reset_index()
        cands["accuracy"] = [_share(a) for a in cands["accuracy"]]
        cands["cost_per_row"] = [format_cost(c) for c in cands["cost_per_row"]]
        cands["calls_per_row"] = [f"{c:.2f}" for c in cands["calls_per_row"]]
        cands = cands.rename(columns=_READABLE)
        return Section(
            _wrap(
                _h2("Calibration recommendation"),
                f"<p class='nbtoolkit-callout'><strong>{html.escape(cal.message)}</strong></p>",
                f"<p>Use it: <code>strategy={_e(repr(cal.recommendation))}</code></p>",
                f"<p>Per model, in-sample: accuracy on all {len(final.consensus)} rows, the "
                "rows the weights were fitted on (not held out, so not comparable with the "
                "held-out figures in the recommendation):</p>",
                _table(per_model),
                f"<p>Candidates, by accuracy on held-out rows ({folds}-fold):</p>",
                _table(cands),
            ),
            cal.message,
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
        parts = [_h2("Appendix: run manifest")]
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
            parts.append("<p>Template parameters:</p>" + _table(params))
        if frames:
            parts.append(
                "<p>Result frames saved beside this report: "
                + ", ".join(f"<code>{_e(p)}</code> ({_e(k)})" for k, p in frames.items())
                + ".</p>"
            )
        parts.append("<p>Run manifest:</p>" + _manifest_table(record["manifest"]))
        return Section(_wrap(*parts), "run manifest", record=record)

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
            return f"The consensus was right on {acc:.0%} of {rows} row(s), {verdict}; {cost}."
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
                f"{_share(rec['agreement'])} of the {int(rec['n_valid'])} valid answer(s) agree."
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
