"""The numbers behind a report's sections, from a finished run and no new call.

"What if" questions (drop a model, use a cascade, another strategy) are answered with
``rescore`` over the recorded answers; their cost and waiting time come from the recorded
calls the strategy would have needed. ``report_sections`` turns these frames into HTML.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from . import providers
from .errors import clip, redact
from .formatting import format_cost, sim_time_note
from .results import (
    CONSENSUS_COLUMNS,
    EXTRA_CONSENSUS_COLUMNS,
    RunResult,
    agreement_counts,
    data_column,
)
from .runner import is_cancelled, is_skipped
from .spec import Model
from .strategies import answer_key
from .strategies.cascade import Cascade
from .strategies.medoid import Medoid
from .strategies.vote import FirstValid, Vote, Weighted

# ---------------------------------------------------------------------------- values


def missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def norm(value: Any) -> str:
    """Answers and gold compare as canonical numbers when they are numbers, else as text."""
    if missing(value):
        return "\x00missing"
    return answer_key(value)


def short(answer: Any, limit: int = 60) -> str:
    if missing(answer):
        return "no answer"
    return clip(" ".join(str(answer).split()), limit, "…")


def compared(share: float, other: float, what: str) -> str:
    """``"better than WHAT, by 5 points"``, ``"worse than ..."`` or ``"as good as ..."``.

    The gap is between the percentages as shown, so the words agree with the numbers
    printed beside them.
    """
    from .calibration import _compared

    return _compared(share, other, what)


def cost_total(values: Iterable[float]) -> float:
    """The sum, or NaN when any part is unknown (an unknown price is not $0)."""
    values = list(values)
    return math.nan if any(missing(v) for v in values) else float(sum(values))


def jsonable(value: Any) -> Any:
    """``value`` with NaN as None and numpy scalars as Python ones, for notebook metadata."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return int(value)
    if hasattr(value, "item"):
        return jsonable(value.item())
    return None if missing(value) else str(value)


def price_note(runs: Sequence[tuple[str, RunResult]]) -> str:
    """`` at simulated prices`` when every model is simulated; which ones, when some are."""
    models = {m for _, r in runs for m in r.models}
    simulated = {m for _, r in runs for m in r.simulated}
    if not simulated:
        return ""
    if simulated >= models:
        return " at simulated prices"
    return f" (simulated prices for {', '.join(sorted(simulated))})"


# ------------------------------------------------------------------------------ gold


def gold_column(res: RunResult, gold: str) -> str | None:
    """The consensus column holding the user's gold column ``gold`` (never the consensus's)."""
    return data_column(res, gold) if gold else None


def gold_of(res: RunResult, gold: str) -> pd.Series | None:
    """The gold answers by row (normalised), or None when the data has no such column."""
    column = gold_column(res, gold)
    if column is None:
        return None
    return pd.Series([norm(v) for v in res.consensus[column]], index=res.consensus["row"])


def accuracy(answers: pd.Series, gold: pd.Series) -> float:
    """The share of ``gold``'s rows whose answer (by row) matches."""
    if not len(gold):
        return math.nan
    return sum(norm(answers.get(r)) == g for r, g in gold.items()) / len(gold)


def best_single(res: RunResult, gold: pd.Series) -> tuple[str, float]:
    table = res.answers
    scores = {m: accuracy(table[m], gold) for m in res.models}
    best = max(res.models, key=lambda m: (scores[m], -res.models.index(m)))
    return best, scores[best]


# ---------------------------------------------------------------------------- models


def models_of(res: RunResult) -> list[Model]:
    """The run's models, rebuilt from its manifest."""
    out = []
    for dump in res.meta.get("models", []):
        options = {k: v for k, v in dump.items() if k not in ("id", "fallbacks")}
        try:
            out.append(Model(dump["id"], **options))
        except Exception:
            out.append(Model(dump["id"]))
    if not out:
        out = [Model(m) for m in res.models]
    return out


def cheapest_first(res: RunResult, labels: Sequence[str]) -> list[str]:
    price = {m.label: providers.price_per_token(m) for m in models_of(res)}

    def key(label: str) -> tuple[bool, float, int]:
        p = price.get(label, math.nan)
        return (math.isnan(p), 0.0 if math.isnan(p) else p, labels.index(label))

    return sorted(labels, key=key)


def restricted(res: RunResult, labels: Sequence[str]) -> Any:
    """The run's kind of strategy over ``labels`` only (a vote for kinds that need calls)."""
    labels = list(labels)
    if res.strategy == "cascade":
        return Cascade(order=cheapest_first(res, labels), threshold=2)
    if res.strategy == "medoid":
        return Medoid(models=labels)
    if res.strategy == "first_valid":
        return FirstValid(models=labels)
    if res.strategy == "weighted":
        weights = {m.label: m.weight for m in models_of(res)}
        return Weighted(weights={m: weights.get(m, 1.0) for m in labels})
    return Vote(models=labels)


# ---------------------------------------------------------------------------- replay


@dataclass
class Replayed:
    """A strategy replayed over a run's recorded answers: per row answer, calls, cost, wait."""

    answers: pd.Series
    calls: pd.Series
    cost: pd.Series
    wait: pd.Series


def _per_call(res: RunResult) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    error = res.outputs["error"]
    out = res.outputs[~error.map(is_skipped).astype(bool) & ~error.map(is_cancelled).astype(bool)]
    cost = out.groupby(["row", "model"])["cost_usd"].agg(lambda s: cost_total(s)).unstack()
    wait = out.groupby(["row", "model"])["latency_s"].max().unstack()
    samples = int(res.outputs["sample"].max()) + 1 if len(res.outputs) else 1
    return cost, wait, samples


def replay(res: RunResult, strategy: Any) -> Replayed:
    from .calibration import rescore

    scored = rescore(res, strategy)
    cost, wait, samples = _per_call(res)
    costs, waits = {}, {}
    stages = getattr(strategy, "stages", None)
    for row, calls in scored["calls"].items():
        if callable(stages):
            order = list(strategy.order or res.models)
            asked = order[: max(1, math.ceil(int(calls) / samples))]
            first = asked[: max(1, math.ceil(strategy.threshold))]
            lat = [wait.at[row, m] for m in asked if m in wait.columns]
            head = [wait.at[row, m] for m in first if m in wait.columns]
            waits[row] = max(head, default=math.nan) + sum(lat[len(head) :])
        else:
            asked = list(getattr(strategy, "models", None) or res.models)
            waits[row] = max(
                (wait.at[row, m] for m in asked if m in wait.columns), default=math.nan
            )
        costs[row] = cost_total(cost.at[row, m] for m in asked if m in cost.columns)
    return Replayed(
        answers=scored["answer"],
        calls=scored["calls"],
        cost=pd.Series(costs, dtype="float64"),
        wait=pd.Series(waits, dtype="float64"),
    )


def changed(a: pd.Series, b: pd.Series) -> int:
    return sum(norm(a.get(r)) != norm(b.get(r)) for r in a.index)


# ---------------------------------------------------------------------------- tables


def strategy_label(res: RunResult) -> str:
    """The strategy as the manifest states it (its repr), or its name when the repr is an
    object address (which would differ on every run)."""
    text = str(res.meta.get("strategy", res.strategy))
    return res.strategy if " object at 0x" in text else text


def describe_extract(extract: Any) -> str:
    if extract is None or extract == [] or extract == "":
        return "the whole reply, whitespace collapsed"
    if isinstance(extract, (list, tuple)):
        return "extract=" + " then ".join(repr(s) for s in extract)
    return f"extract={getattr(extract, '__name__', extract)!r}"


def fallbacks_configured(res: RunResult) -> str:
    chains = []
    for dump in res.meta.get("models", []):
        if dump.get("fallbacks"):
            names = [f if isinstance(f, str) else f.get("id", "?") for f in dump["fallbacks"]]
            chains.append(f"{dump.get('name') or dump['id']} → {', '.join(names)}")
    return "; ".join(chains)


def kinds(res: RunResult) -> pd.DataFrame:
    out = res.outputs
    error = out["error"].fillna("")
    return pd.DataFrame(
        {
            "model": out["model"],
            "skipped": error.map(is_skipped).astype(bool),
            "cancelled": error.map(is_cancelled).astype(bool),
            "failed": out["output"].isna()
            & ~error.map(is_skipped).astype(bool)
            & ~error.map(is_cancelled).astype(bool),
            "unreadable": out["output"].notna() & ~out["valid"].astype(bool),
            "valid": out["valid"].astype(bool),
            "retried": out["attempts"] > 1,
            "fallback": error.str.startswith("answered by fallback"),
        }
    )


def health(res: RunResult) -> pd.DataFrame:
    """Per model: calls made, valid answers, unreadable replies, failures, retries, fallbacks."""
    table = kinds(res)
    rows = []
    for model in res.models:
        k = table[table["model"] == model]
        made = int((~k["skipped"] & ~k["cancelled"]).sum())
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
    error = res.outputs["error"]
    out = res.outputs[~error.map(is_skipped).astype(bool) & ~error.map(is_cancelled).astype(bool)]
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
        made = int((~res.skipped_mask() & ~res.cancelled_mask()).sum())
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


def waits_note(res: RunResult) -> str:
    """Beside waits summed from recorded latencies: whose latencies were simulated."""
    if not res.simulated:
        return ""
    if set(res.simulated) >= set(res.models):
        return ", simulated latency"
    return f", simulated latency for {', '.join(res.simulated)}"


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
        if gold is not None:
            right = norm(rec["answer"]) == gold.get(row)
            item["right?"] = "yes" if right else f"no (gold: {short(gold.get(row), 24)})"
        item["answers by model"] = "; ".join(
            f"{m}: {short(answers.at[row, m], 24)}" for m in answers.columns
        )
        rows.append(item)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------- assumptions


def _key_names(model: Model) -> list[str]:
    if model.api_key_env:
        return [model.api_key_env]
    if model.api_base:
        return []
    try:
        env = providers.get_litellm().validate_environment(providers.litellm_id(model))
    except Exception:
        return []
    keys = list(env.get("missing_keys") or [])
    return [k for k in keys if not k.endswith(("_API_BASE", "_BASE_URL", "_ENDPOINT"))]


def _takes_seed(model: Model) -> bool | None:
    try:
        litellm = providers.get_litellm()
        routed = providers.litellm_id(model)
        provider = litellm.get_llm_provider(routed)[1]
        params = litellm.get_supported_openai_params(model=routed, custom_llm_provider=provider)
    except Exception:
        return None
    return None if params is None else "seed" in params


def assumptions(runs: Sequence[tuple[str, RunResult]], gold: str, cache: str) -> list[str]:
    """What the report's numbers rest on that this run could not check."""
    notes: list[str] = []
    models: dict[str, Model] = {}
    seeds = set()
    for _, r in runs:
        seeds.add(r.meta.get("seed"))
        for m in models_of(r):
            models.setdefault(m.label, m)
    unpriced = [label for label, m in models.items() if not providers.price_known(m)]
    if unpriced:
        notes.append(
            f"No known price for {', '.join(unpriced)}: their cost is shown as unknown (not $0), "
            "and totals that include them are lower bounds."
        )
    live = {label: m for label, m in models.items() if not providers.is_offline(m.id)}
    seed = next(iter(seeds)) if len(seeds) == 1 else None
    if live and seed is None:
        notes.append(
            "No seed was set: a live model may answer differently when asked again; the cache "
            "(and --replay-only) gives back the recorded answers."
        )
    elif live:
        ignored = [label for label, m in live.items() if _takes_seed(m) is False]
        unknown = [label for label, m in live.items() if _takes_seed(m) is None]
        if ignored:
            notes.append(
                f"seed={seed} was sent, but {', '.join(ignored)} take(s) no seed "
                "(litellm drops it): their answers may change when asked again."
            )
        if unknown:
            notes.append(
                f"Whether {', '.join(unknown)} honour(s) seed={seed} is not known; "
                "even providers that take a seed only try to be deterministic."
            )
    replayed = [label for label, m in models.items() if m.id.startswith("replay/")]
    if replayed:
        notes.append(
            f"{', '.join(replayed)} answer(s) from recordings: the answers, tokens and "
            "latencies are the recorded ones, and the seed changes nothing."
        )
    for label, m in live.items():
        names = _key_names(m)
        unset = [n for n in names if not os.environ.get(n)]
        if unset:
            notes.append(
                f"{label}: the key variable {', '.join(unset)} is not set here; its "
                "answers came from the cache, and whether the key still works is unchecked."
            )
    cached = sum(int(r.outputs["cached"].sum()) for _, r in runs)
    calls = sum(len(r.outputs) for _, r in runs)
    if cached:
        notes.append(
            f"{cached} of {calls} answers came from the cache (recorded earlier"
            + (", as --replay-only asks" if cache == "replay-only" else "")
            + "), not from a new call."
        )
    final = runs[-1][1]
    if gold_column(final, gold) is None:
        notes.append(
            "No gold answers: agreement between models is not correctness, and a "
            "panel can agree on a wrong answer."
        )
    else:
        notes.append(
            "Accuracy is measured against the gold column as given; mistakes in it "
            "are not detected."
        )
    sim = sorted({m for _, r in runs for m in r.simulated})
    if sim:
        notes.append(
            f"{', '.join(sim)} are simulated: their accuracy, latency and prices are "
            "configured for teaching, not measured on real models."
        )
    notes.append(
        "Confidence measures how much the panel agrees, not whether it is right; "
        "models that share mistakes can agree with high confidence."
    )
    return notes


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
