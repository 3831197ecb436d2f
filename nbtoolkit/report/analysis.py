"""The tables behind a report's sections, from a finished run and no new call.

"What if" questions (drop a model, use a cascade, another strategy) are answered by
``replay`` over the recorded answers; their cost and waiting time come from the recorded
calls the strategy would have needed. ``sections`` turns these frames into HTML, ``figures``
into charts. The values they are made of (``values``) are named here too, for one import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from .. import providers
from ..errors import redact
from ..formatting import format_cost, sim_time_note
from ..results import CONSENSUS_COLUMNS, EXTRA_CONSENSUS_COLUMNS, RunResult, agreement_counts
from ..strategies.cascade import Cascade
from ..strategies.vote import FirstValid, Vote, Weighted
from .replay import changed, cheapest_first, models_of, replay, restricted
from .values import (
    accuracy,
    best_single,
    calls_made,
    compared,
    cost_total,
    describe_extract,
    gold_answers,
    gold_column,
    gold_of,
    jsonable,
    missing,
    norm,
    price_note,
    short,
    strategy_label,
    waits_note,
)

__all__ = [
    "accuracy",
    "best_single",
    "calls_made",
    "cascade_note",
    "changed",
    "compared",
    "cost_total",
    "describe_extract",
    "drop_each",
    "fallbacks_configured",
    "flagged_rows",
    "gold_answers",
    "gold_column",
    "gold_of",
    "health",
    "jsonable",
    "kinds",
    "missing",
    "norm",
    "per_model",
    "price_note",
    "save_frames",
    "short",
    "strategy_label",
    "strategy_table",
    "summary",
    "usage",
    "waits_note",
]


# ---------------------------------------------------------------------------- tables


def fallbacks_configured(res: RunResult) -> str:
    chains = []
    for dump in res.meta.get("models", []):
        if dump.get("fallbacks"):
            names = [f if isinstance(f, str) else f.get("id", "?") for f in dump["fallbacks"]]
            chains.append(f"{dump.get('name') or dump['id']} → {', '.join(names)}")
    return "; ".join(chains)


def kinds(res: RunResult) -> pd.DataFrame:
    """What happened to each call: ``RunResult.call_kinds``."""
    return res.call_kinds()


def health(res: RunResult) -> pd.DataFrame:
    """Per model: calls made, valid answers, unreadable replies, failures, retries, fallbacks."""
    table = kinds(res)
    rows = []
    for model in res.models:
        k = table[table["model"] == model]
        made = int(k["made"].sum())
        rows.append(
            {
                "model": model,
                "calls": made,
                "valid answers": int(k["valid"].sum()),
                "unreadable replies": int(k["unreadable"].sum()),
                "failed calls": int(k["failed"].sum()),
                "retried or repaired": int(k["retried"].sum()),
                "answered by fallback": int(k["fallback"].sum()),
                "not needed (skipped)": int(k["skipped"].sum()),
                "cancelled": int(k["cancelled"].sum()),
                "valid share": f"{k['valid'].sum() / made:.0%}" if made else "—",
            }
        )
    return pd.DataFrame(rows)


def usage(res: RunResult, gold: pd.Series | None) -> pd.DataFrame:
    """Per model: calls, tokens, cost, latency, and accuracy or agreement with the consensus."""
    rows_n = max(1, len(res.consensus))
    consensus = res.consensus.set_index("row")["answer"]
    table = res.answers
    out = calls_made(res)
    rows = []
    for model in res.models:
        mine = out[out["model"] == model]
        sim = " (simulated)" if model in res.simulated else ""
        cost = cost_total(mine["cost_usd"])
        lat = mine["latency_s"].dropna()
        rec = {
            "model": model,
            "calls": len(mine),
            "prompt tokens": _token_sum(mine, "prompt_tokens"),
            "completion tokens": _token_sum(mine, "completion_tokens"),
            "cost": format_cost(cost),
            "cost per row": format_cost(cost / rows_n),
            "median latency": f"{lat.median():.2f} s{sim}" if len(lat) else "—",
            "p90 latency": f"{lat.quantile(0.9):.2f} s{sim}" if len(lat) else "—",
            "agrees with consensus": f"{1 - changed(table[model], consensus) / rows_n:.0%}",
        }
        if gold is not None:
            rec["accuracy"] = f"{accuracy(table[model], gold):.0%}"
        rows.append(rec)
    return pd.DataFrame(rows)


def _token_sum(calls: pd.DataFrame, column: str) -> Any:
    """The model's token count, or "unknown" when a reply of it carried no usage (never a
    smaller sum that reads as exact)."""
    if (calls[column].isna() & calls["output"].notna()).any():
        return "unknown"
    return int(calls[column].sum(skipna=True))


def drop_each(res: RunResult, gold: pd.Series | None) -> pd.DataFrame:
    """For each model: the consensus without it (answers changed, accuracy, money, wait)."""
    base = replay(res, restricted(res, res.models))
    rows = []
    for model in res.models:
        others = [m for m in res.models if m != model]
        after = replay(res, restricted(res, others))
        saved = cost_total(base.cost) - cost_total(after.cost)
        rec = {
            "drop": model,
            "consensus answers changed": f"{changed(base.answers, after.answers)} of {len(base.answers)}",
            "saves": format_cost(saved),
            "median row wait after": f"{after.wait.median():.2f} s (now "
            f"{base.wait.median():.2f} s){waits_note(res)}",
        }
        if gold is not None:
            rec["accuracy after"] = (
                f"{accuracy(after.answers, gold):.0%} (now {accuracy(base.answers, gold):.0%})"
            )
        rows.append(rec)
    return pd.DataFrame(rows)


def cascade_note(res: RunResult, gold: pd.Series | None) -> str:
    """What a cheapest-first cascade (stop once 2 agree) would have saved on this run."""
    if res.strategy == "cascade":
        made = int(res.made_mask().sum())
        return (
            f"This run already used a cascade: it made {made} of {len(res.outputs)} possible calls."
        )
    order = cheapest_first(res, res.models)
    cascade = replay(res, Cascade(order=order, threshold=2))
    base = replay(res, restricted(res, res.models))
    made, possible = int(cascade.calls.sum()), int(base.calls.sum())
    now, then = cost_total(base.cost), cost_total(cascade.cost)
    if math.isnan(now) and math.isnan(then):
        money = "cost unknown (the prices are not known)"
    else:
        money = f"cost {format_cost(then)} instead of {format_cost(now)}"
    if not (math.isnan(now) or math.isnan(then)) and now > 0:
        money += f" ({(then - now) / now:+.0%})"
    known = sum(not math.isnan(providers.price_per_token(m)) for m in models_of(res))
    how = (
        "cheapest first"
        if known == len(res.models)
        else (
            "in the listed order, no price being known"
            if not known
            else "cheapest first, unknown prices last"
        )
    )
    text = (
        f"A cascade ({how}: {' → '.join(order)}; stop once 2 answers agree) would have "
        f"made {made} of {possible} calls, {money}, and changed "
        f"{changed(base.answers, cascade.answers)} of {len(base.answers)} consensus answers"
    )
    if gold is not None:
        text += (
            f" (accuracy {accuracy(cascade.answers, gold):.0%} vs "
            f"{accuracy(base.answers, gold):.0%})"
        )
    return text + (
        f"; rows wait for its stages one after another (median {cascade.wait.median():.2f} s "
        f"vs {base.wait.median():.2f} s{waits_note(res)})."
    )


def strategy_table(res: RunResult, gold: pd.Series | None) -> pd.DataFrame:
    """Each model alone and several strategies, replayed over the recorded answers."""
    consensus = res.consensus.set_index("row")["answer"]
    candidates: list[tuple[str, str, Any]] = [
        (m, "single model", FirstValid(models=[m])) for m in res.models
    ]
    n = len(res.models)
    candidates.append((f"vote over all {n}", "strategy", Vote()))
    if gold is not None:
        weights = {}
        for m in res.models:
            acc, n_rows = accuracy(res.answers[m], gold), len(gold)
            p = (acc * n_rows + 1) / (n_rows + 2)
            weights[m] = max(0.0, math.log(p / (1 - p)))
        candidates.append(
            ("weighted vote (weights fitted on these rows)", "strategy", Weighted(weights=weights))
        )
        if n > 3:
            top = sorted(res.models, key=lambda m: -accuracy(res.answers[m], gold))[:3]
            candidates.append(("vote over the 3 most accurate", "strategy", Vote(models=top)))
    if n >= 2:
        candidates.append(
            (
                "cascade, cheapest first, 2 agree",
                "strategy",
                Cascade(order=cheapest_first(res, res.models), threshold=2),
            )
        )
    rows = []
    for name, kind, strategy in candidates:
        played = replay(res, strategy)
        rows.append(
            {
                "candidate": name,
                "kind": kind,
                "accuracy": accuracy(played.answers, gold) if gold is not None else math.nan,
                "calls_per_row": float(played.calls.mean()),
                "cost_per_row": cost_total(played.cost) / max(1, len(played.cost)),
                "median_row_wait": float(played.wait.median()),
                "answers_changed": changed(consensus, played.answers),
            }
        )
    return pd.DataFrame(rows)


def flagged_rows(res: RunResult, gold: pd.Series | None) -> pd.DataFrame:
    """The rows with low confidence, disagreeing models or no valid answer; least sure first."""
    c = res.consensus
    own = set(CONSENSUS_COLUMNS + EXTRA_CONSENSUS_COLUMNS)
    inputs = [col for col in c.columns if col not in own]
    mask = (
        c["low_confidence"].astype(bool)
        | ((c["agreement"] < 1.0) & (c["n_valid"] >= 2))
        | (c["n_valid"] == 0)
    )
    picked = c[mask].sort_values(["confidence", "row"], kind="stable")
    # The input people recognise a row by: its longest text column (a question, not an id).
    if inputs:
        lengths = {col: c[col].astype(str).str.len().mean() for col in inputs}
        inputs = [max(inputs, key=lambda col: lengths[col])]
    answers = res.answers
    rows = []
    for rec in picked.to_dict("records"):
        row = int(rec["row"])
        item: dict[str, Any] = {"row": row}
        if inputs:
            item["input"] = short(rec[inputs[0]], 90)
        item["consensus"] = short(rec["answer"])
        item["confidence"] = f"{float(rec['confidence']):.2f}" + (
            " (low)" if rec["low_confidence"] else ""
        )
        item["agreement"] = f"{float(rec['agreement']):.0%}"
        if gold is not None and row not in gold.index:
            item["right?"] = "no gold answer"
        elif gold is not None:
            right = norm(rec["answer"]) == gold.get(row)
            item["right?"] = "yes" if right else f"no (gold: {short(gold.get(row), 24)})"
        item["answers by model"] = "; ".join(
            f"{m}: {short(answers.at[row, m], 24)}" for m in answers.columns
        )
        rows.append(item)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ the record


def summary(runs: Sequence[tuple[str, RunResult]], gold: pd.Series | None) -> dict[str, Any]:
    """The few numbers a command line prints after a report."""
    final = runs[-1][1]
    c = final.consensus
    totals = [r.totals() for _, r in runs]
    out: dict[str, Any] = {
        "rows": len(c),
        "models": sorted({m for _, r in runs for m in r.models}),
        "simulated": sorted({m for _, r in runs for m in r.simulated}),
        "strategy": final.strategy,
        "steps": [n for n, _ in runs if n],
        "mean_confidence": float(c["confidence"].mean()) if len(c) else None,
        "low_confidence": int(c["low_confidence"].sum()),
        # agree + disagree + one_answer + no_answer == rows (see agreement_counts)
        **{("disagreements" if k == "disagree" else k): v for k, v in agreement_counts(c).items()},
        "cost_usd": cost_total(t["cost_usd"] for t in totals),
        "calls": sum(t["calls"] for t in totals),
        "tokens": sum(t["prompt_tokens"] + t["completion_tokens"] for t in totals),
        "unknown_token_calls": sum(t["unknown_token_calls"] for t in totals),
        "cached": sum(t["cached"] for t in totals),
        "wall_s": sum(t["wall_s"] for t in totals),
        "accuracy": None,
        "price_note": price_note(runs),
        "time_note": sim_time_note(final),
    }
    if gold is not None:
        out["accuracy"] = accuracy(c.set_index("row")["answer"], gold)
        out["best_model"], out["best_model_accuracy"] = best_single(final, gold)
    return out


def save_frames(runs: Sequence[tuple[str, RunResult]], prefix: str) -> dict[str, str]:
    """Write ``<prefix>.outputs.csv`` and ``<prefix>.consensus.csv``; returns their paths."""
    if len(runs) == 1:
        outputs, consensus = runs[0][1].outputs, runs[0][1].consensus
    else:
        outputs = pd.concat([r.outputs.assign(step=n) for n, r in runs], ignore_index=True)
        consensus = pd.concat([r.consensus.assign(step=n) for n, r in runs], ignore_index=True)
    paths = {"outputs": f"{prefix}.outputs.csv", "consensus": f"{prefix}.consensus.csv"}
    for name, frame in (("outputs", outputs), ("consensus", consensus)):
        with open(paths[name], "w", encoding="utf-8", newline="") as fh:
            fh.write(redact(frame.to_csv(index=False)))
    return paths


def per_model(res: RunResult, gold: pd.Series | None = None) -> pd.DataFrame:
    """One row per model (indexed by model, in the run's order), as numbers: the charts'
    data. ``res.per_model()``'s calls made, ``valid`` share of them, median ``latency_s``
    and ``cost_usd`` (NaN when a price is unknown), and: ``latency_p90_s``,
    ``cost_per_row_usd``, ``agrees_with_consensus`` (share of rows) and ``accuracy`` on
    ``gold`` (normalised answers by row, ``gold_answers``; NaN without)."""
    table = res.per_model()[["calls", "valid", "latency_s", "cost_usd"]].copy()
    made = calls_made(res)
    rows_n = max(1, len(res.consensus))
    consensus = res.consensus.set_index("row")["answer"]
    answers = res.answers
    table["latency_p90_s"] = [
        made.loc[made["model"] == m, "latency_s"].dropna().quantile(0.9) for m in table.index
    ]
    table["cost_per_row_usd"] = table["cost_usd"] / rows_n
    table["agrees_with_consensus"] = [
        1 - changed(answers[m], consensus) / rows_n for m in table.index
    ]
    table["accuracy"] = [
        accuracy(answers[m], gold) if gold is not None else math.nan for m in table.index
    ]
    return table.astype("float64").assign(calls=table["calls"])
