"""How a ``RunResult`` looks: its HTML and plain-text reprs, and the agreement matrix.

The HTML shows, at a glance, where the models disagree:

- the consensus table (class ``nbtoolkit-consensus``, one ``<tr>`` per input row), each row's
  confidence as a colour from red (unsure) to green (sure), rows where the models disagree
  marked, and every model's answer to the row behind a ``<details>``;
- the totals (calls, failures, tokens, cost, latency) and a per-model table;
- a model-by-model heatmap of how often two models gave the same answer to the same row
  (``RunResult.agreement_matrix``);
- warnings, cancellation and simulated models, stated in words.

Everything is escaped, styles are inline (they survive untrusted notebooks and nbconvert),
and nothing loads from the network: no scripts, no CDN. ``RunResult`` shows itself through
these functions by way of ``nbtoolkit.views`` (the core never imports this module).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

from .. import results as _results
from ..errors import clip
from ..formatting import (
    MUTED,
    colour,
    format_cost,
    format_tokens,
    is_missing,
    latency_label,
    seconds,
    share,
    sim_time_note,
    text,
    unpriced_calls,
)
from ..runner import is_cancelled, is_skipped
from ..strategies.base import answer_key

if TYPE_CHECKING:
    from ..results import RunResult

__all__ = ["html_repr", "text_repr"]

#: Rows of the consensus table shown in the HTML; ``res.consensus`` always has them all.
MAX_ROWS = 100
_CELL_CHARS = 80  # input values are cut to this in the table (the full text is the title)
_OUTPUT_CHARS = 300  # each reply is cut to this behind the row's <details>

_INK = "#111827"  # dark text on the coloured cells, readable in light and dark themes
# Jupyter right-aligns every table cell; text reads better on the left. Inline, because a
# <style> block is dropped where outputs are sanitised (e.g. inside an Output widget).
_L = " style='text-align:left'"


def _e(value: Any, limit: int | None = None) -> str:
    return html.escape(text(value, limit), quote=True)


# ---------------------------------------------------------------------------- HTML

_TABLE = "border-collapse:collapse;margin:0.4em 0;font-size:0.92em"
# Layout only: the colours that carry meaning are inline, so they survive a sanitiser
# that drops <style> (an untrusted notebook); the tables stay readable without this.
_CSS = (
    "<style>"
    ".nbtoolkit-result table{border-collapse:collapse;margin:0.4em 0}"
    ".nbtoolkit-result td,.nbtoolkit-result th{padding:2px 8px;text-align:left;"
    "vertical-align:top}"
    ".nbtoolkit-result td.num{text-align:right}"
    ".nbtoolkit-result summary{cursor:pointer}"
    "</style>"
)
_BADGE = (
    "display:inline-block;padding:0 6px;margin-left:6px;border-radius:8px;"
    "font-size:0.8em;background:#ede9fe;color:#4c1d95"
)


def _badge(text: str) -> str:
    return f"<span class='nbtoolkit-badge' style='{_BADGE}'>{html.escape(text)}</span>"


def _model_name(model: str, simulated: Iterable[str]) -> str:
    name = html.escape(model)
    return name + (_badge("simulated") if model in set(simulated) else "")


def _coloured(value: float, shown: str, title: str = "") -> str:
    title_attr = f" title='{html.escape(title, quote=True)}'" if title else ""
    return (
        f"<td class='num' style='background-color:{colour(value)};color:{_INK}'"
        f"{title_attr}>{html.escape(shown)}</td>"
    )


def _own_columns() -> set[str]:
    extra = getattr(_results, "EXTRA_CONSENSUS_COLUMNS", [])
    return {*_results.CONSENSUS_COLUMNS, *extra}


def _input_columns(result: RunResult) -> list[Any]:
    # The labels as they are: pd.read_csv(header=None) names its columns 0, 1, ...
    own = _own_columns()
    return [c for c in result.consensus.columns if c not in own]


def _row_details(
    result: RunResult, row: int, consensus_answer: Any, rows: pd.DataFrame, simulated: set[str]
) -> str:
    """The ``<details>`` of one input row: every model's answer, error and reply."""
    target = None if is_missing(consensus_answer) else answer_key(consensus_answer)
    keys: dict[str, int] = {}
    shown: dict[str, str] = {}
    body = []
    for rec in rows.itertuples(index=False):
        valid = bool(rec.valid)
        key = answer_key(rec.answer) if valid else None
        if key is not None:
            keys[key] = keys.get(key, 0) + 1
            shown.setdefault(key, text(rec.answer, 24))
        if not valid:
            shade = "background-color:#f3f4f6;color:#6b7280"  # failed, unreadable or skipped
        elif target is not None and key != target:
            shade = f"background-color:{colour(0.0)};color:{_INK}"
        else:
            shade = ""
        note = _e(rec.error, 200) if not is_missing(rec.error) else ""
        sample = f" #{int(rec.sample)}" if result.outputs["sample"].max() > 0 else ""
        body.append(
            "<tr>"
            f"<td{_L}>{_model_name(str(rec.model), simulated)}{sample}</td>"
            f"<td style='text-align:left;{shade}'>{_e(rec.answer, 200) if valid else '—'}</td>"
            f"<td{_L}>{note}</td>"
            f"<td style='text-align:left;white-space:pre-wrap;max-width:40em'>"
            f"{_e(rec.output, _OUTPUT_CHARS)}</td>"
            f"<td class='num'>{seconds(rec.latency_s)}</td>"
            f"<td class='num'>{format_cost(rec.cost_usd)}</td>"
            "</tr>"
        )
    error = rows["error"]
    made = ~error.map(is_skipped).astype(bool) & ~error.map(is_cancelled).astype(bool)
    n = int(made.sum())
    unmade = len(rows) - n
    n_valid = sum(keys.values())
    if not n:
        summary = "not asked (skipped or cancelled)"
        unmade = 0
    elif not n_valid:
        summary = f"no valid answer ({n} asked)"
    elif len(keys) == 1:
        summary = f"{n_valid}/{n} agree"
    else:
        ranked = sorted(keys, key=lambda k: -keys[k])
        spread = ", ".join(f"{shown[k]} ×{keys[k]}" for k in ranked[:3])
        summary = f"split: {spread}" + (", …" if len(ranked) > 3 else "")
    if unmade:
        summary += f" ({unmade} not asked: skipped or cancelled)"
    head = "".join(
        f"<th{_L}>{h}</th>" for h in ("model", "answer", "error", "reply", "latency", "cost")
    )
    return (
        f"<details><summary>{html.escape(summary)}</summary>"
        f"<table style='{_TABLE}'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></details>"
    )


def _consensus_table(result: RunResult, max_rows: int) -> str:
    consensus = result.consensus
    inputs = _input_columns(result)[:3]
    simulated = set(result.simulated)
    by_row = {int(r): g for r, g in result.outputs.groupby("row", sort=False)}
    empty = result.outputs.iloc[0:0]
    has_note = "note" in consensus.columns and consensus["note"].notna().any()
    head = ["row", *inputs, "answer", "confidence", "agreement", "valid", "cost", "by model"]
    if has_note:
        head.append("note")
    rows_html = []
    for rec in consensus.head(max_rows).to_dict("records"):
        row = int(rec["row"])
        agreement = float(rec["agreement"])
        n_valid = int(rec["n_valid"])
        # fewer than two valid answers: nothing to disagree about, so no orange mark
        disagree = n_valid >= 2 and not math.isnan(agreement) and agreement < 1.0
        style = "border-left:4px solid #f97316" if disagree else "border-left:4px solid transparent"
        cells = [f"<td style='{style}'>{row}</td>"]
        for col in inputs:
            full = text(rec[col])
            cells.append(
                f"<td style='text-align:left;max-width:28em' title='{html.escape(clip(full, 1000), quote=True)}'>"
                f"{_e(full, _CELL_CHARS)}</td>"
            )
        answer = rec["answer"]
        shown = _e(answer, 200) if n_valid and not is_missing(answer) else "—"
        cells.append(f"<td style='text-align:left;font-weight:600'>{shown}</td>")
        confidence = float(rec["confidence"])
        flag = rec.get("low_confidence")
        low = " (low)" if not is_missing(flag) and bool(flag) else ""
        cells.append(_coloured(confidence, f"{confidence:.2f}{low}", "confidence"))
        cells.append(_coloured(agreement, share(agreement), "share of valid answers agreeing"))
        cells.append(f"<td class='num'>{n_valid}</td>")
        cells.append(f"<td class='num'>{format_cost(rec['cost_usd'])}</td>")
        details = _row_details(result, row, answer, by_row.get(row, empty), simulated)
        cells.append(f"<td{_L}>{details}</td>")
        if has_note:
            cells.append(f"<td{_L}>{_e(rec.get('note'), 200)}</td>")
        klass = " class='nbtoolkit-disagree'" if disagree else ""
        rows_html.append(f"<tr{klass}>{''.join(cells)}</tr>")
    header = "".join(f"<th{_L}>{html.escape(str(h))}</th>" for h in head)
    table = (
        f"<table class='nbtoolkit-consensus' style='{_TABLE}'>"
        f"<thead><tr>{header}</tr></thead><tbody>{''.join(rows_html)}</tbody></table>"
    )
    if len(consensus) > max_rows:
        table += (
            f"<p style='margin:0.2em 0'><em>showing the first {max_rows} of "
            f"{len(consensus)} rows; <code>.consensus</code> has them all</em></p>"
        )
    return table


def _totals(result: RunResult) -> str:
    t = result.totals()
    latency = result.outputs["latency_s"]
    median = float(latency.median()) if latency.notna().any() else math.nan
    cost = format_cost(t["cost_usd"])
    if math.isnan(t["cost_usd"]) and t["known_cost_usd"]:
        cost += (
            f" (at least {format_cost(t['known_cost_usd'])}; "
            f"no price known for {unpriced_calls(result)} call(s))"
        )
    unmade = [
        f"{t[k]} {k}" for k in ("skipped", "cancelled") if t.get(k)
    ]  # not calls: never among the failed
    items = [
        (
            "calls",
            f"{t['calls']} ({t['failed']} failed, {t['invalid']} invalid, {t['cached']} cached)"
            + (f"; not made: {', '.join(unmade)}" if unmade else ""),
        ),
        (
            "tokens",
            format_tokens(t["prompt_tokens"], t["completion_tokens"], t["unknown_token_calls"]),
        ),
        ("cost", cost),
        ("spent now", _spent(result, t["spent_usd"])),
        (latency_label(result), f"median {seconds(median)} per call"),
        (
            "wall-clock",
            seconds(t["wall_s"]) + (f" ({note})" if (note := sim_time_note(result)) else ""),
        ),
    ]
    cells = "".join(
        f"<tr><th{_L}>{html.escape(k)}</th><td{_L}>{html.escape(v)}</td></tr>" for k, v in items
    )
    return f"<table class='nbtoolkit-totals' style='{_TABLE}'><tbody>{cells}</tbody></table>"


def _spent(result: RunResult, known: float) -> str:
    """What the calls made now (not cached) cost; prices not known make it unknown."""
    out = result.outputs
    fresh = out.loc[~out["cached"].astype(bool), "cost_usd"]
    if fresh.isna().all() and len(fresh):
        return "unknown"
    if fresh.isna().any():
        return f"at least {format_cost(known)}"
    return format_cost(known)


def _per_model(result: RunResult) -> str:
    table = result.per_model()
    simulated = set(result.simulated)
    head = ("model", "calls", "valid", "failed", "median latency", "tokens", "cost")
    rows = []
    for model, rec in table.iterrows():
        tokens = rec["prompt_tokens"] + rec["completion_tokens"]
        tokens = "unknown" if pd.isna(tokens) else f"{int(tokens):,}"
        rows.append(
            "<tr>"
            f"<td{_L}>{_model_name(str(model), simulated)}</td>"
            f"<td class='num'>{text(rec['calls'])}</td>"
            f"<td class='num'>{share(rec['valid'])}</td>"
            f"<td class='num'>{text(rec['failed'])}</td>"
            f"<td class='num'>{seconds(rec['latency_s'])}</td>"
            f"<td class='num'>{_e(tokens)}</td>"
            f"<td class='num'>{format_cost(rec['cost_usd'])}</td>"
            "</tr>"
        )
    header = "".join(f"<th{_L}>{h}</th>" for h in head)
    return (
        f"<table class='nbtoolkit-models' style='{_TABLE}'><thead><tr>{header}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _heatmap(result: RunResult) -> str:
    matrix = result.agreement_matrix()
    models = list(matrix.index)
    simulated = set(result.simulated)
    header = "<th></th>" + "".join(f"<th>{html.escape(m)}</th>" for m in models)
    rows = []
    for a in models:
        cells = [f"<th{_L}>{_model_name(a, simulated)}</th>"]
        for b in models:
            value = float(matrix.loc[a, b])
            if a == b:
                cells.append(f"<td style='background-color:{MUTED};color:{_INK}'>—</td>")
            elif math.isnan(value):
                cells.append(
                    f"<td style='background-color:{MUTED};color:{_INK}' title='{html.escape(a)} "
                    f"and {html.escape(b)} never both gave a valid answer to one row'>n/a</td>"
                )
            else:
                cells.append(
                    _coloured(value, share(value), f"{a} and {b} agree on {share(value)} of rows")
                )
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        "<div><strong>Agreement between models</strong> "
        "<span style='font-size:0.85em'>(share of rows where both gave the same valid "
        "answer; red = they often disagree; n/a = never both answered one row)</span>"
        f"<table class='nbtoolkit-agreement' style='{_TABLE}'><thead><tr>{header}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _notes(result: RunResult) -> str:
    parts = []
    if result.cancelled:
        parts.append(
            "<div class='nbtoolkit-cancelled' style='padding:4px 8px;margin:4px 0;"
            "border-left:4px solid #dc2626;background-color:#fef2f2;color:#7f1d1d'>"
            "<strong>Cancelled</strong>: the calls not finished are rows whose error says "
            "'Cancelled' (not failures: they were stopped).</div>"
        )
    if result.warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in result.warnings)
        parts.append(
            "<div class='nbtoolkit-warnings' style='padding:4px 8px;margin:4px 0;"
            "border-left:4px solid #d97706;background-color:#fffbeb;color:#78350f'>"
            f"<strong>Warning</strong><ul style='margin:0.2em 0'>{items}</ul></div>"
        )
    if result.simulated:
        parts.append(
            "<p class='nbtoolkit-simulated' style='margin:0.3em 0'><em>Simulated models "
            "(not real LLMs, offline): " + html.escape(", ".join(result.simulated)) + "</em></p>"
        )
    return "".join(parts)


def html_repr(result: RunResult, *, max_rows: int = MAX_ROWS) -> str:
    """The HTML of a ``RunResult``: consensus, totals, per-model table, agreement heatmap."""
    counts = _results.agreement_counts(result.consensus)
    prompt = (
        "<details><summary>prompt</summary>"
        f"<pre style='white-space:pre-wrap;margin:0.2em 0'>{html.escape(result.prompt)}</pre>"
        "</details>"
    )
    verdict = _results.agreement_sentence(counts) + (
        " (disagreements marked in orange)" if counts["disagree"] else ""
    )
    sections = [
        f"<p style='margin:0.2em 0'><strong>{html.escape(result.summary_line())}</strong></p>",
        _notes(result),
        prompt,
        f"<p style='margin:0.2em 0'>{html.escape(verdict)}</p>",
        _consensus_table(result, max_rows),
        "<div style='display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start'>",
        f"<div><strong>Totals</strong>{_totals(result)}</div>",
        f"<div><strong>Per model</strong>{_per_model(result)}</div>",
        _heatmap(result) if len(result.models) > 1 else "",
        "</div>",
    ]
    # tex2jax_ignore: Jupyter would typeset "$3 ... $20" in a question as LaTeX.
    return (
        f"<div class='nbtoolkit-result tex2jax_ignore mathjax_ignore'>{_CSS}"
        f"{''.join(sections)}</div>"
    )


# ---------------------------------------------------------------------------- text


def text_repr(result: RunResult, *, max_rows: int = 20) -> str:
    """The plain-text repr: summary, warnings, the consensus table and the agreement matrix."""
    lines = [result.summary_line()]
    if result.cancelled:
        lines.append("CANCELLED: the calls not finished are rows whose error says 'Cancelled'")
    if result.simulated:
        lines.append(
            "simulated models (not real LLMs): "
            + ", ".join(result.simulated)
            + f"; wall-clock time: {sim_time_note(result)}"
        )
    lines += [f"warning: {w}" for w in result.warnings]
    n_rows = len(result.consensus)
    lines.append(_results.agreement_sentence(_results.agreement_counts(result.consensus)))
    consensus = result.consensus
    columns = [*_input_columns(result)[:2], "answer", "confidence", "agreement", "n_valid"]
    if "note" in consensus.columns and consensus["note"].notna().any():
        columns.append("note")
    shown = consensus[columns].head(max_rows)
    shown = shown.assign(cost=[format_cost(c) for c in consensus["cost_usd"].head(max_rows)])
    shown = shown.round({"confidence": 2, "agreement": 2})
    lines.append(shown.to_string(max_colwidth=40))
    if n_rows > max_rows:
        lines.append(f"... {n_rows} rows in all")
    if len(result.models) > 1:
        lines.append("agreement between models (share of rows with the same answer):")
        lines.append(result.agreement_matrix().round(2).to_string(na_rep="n/a"))
    lines.append("-> .outputs for every model's reply, .consensus for every row")
    return "\n".join(lines)
