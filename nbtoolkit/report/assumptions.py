"""What a report's numbers rest on that the run could not check: unknown prices, seeds a
provider ignores, keys not set here, answers from the cache, gold taken as given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .. import providers
from ..results import RunResult
from ..spec import Model
from .replay import models_of
from .values import gold_column

__all__ = ["assumptions"]


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
    final = runs[-1][1]
    calibrated = final.consensus.get("calibrated")
    if calibrated is not None and len(calibrated) and calibrated.astype(bool).all():
        notes.append(
            "Confidence is a probability fitted by calibrate on labelled rows: it holds for "
            "new rows like those (same kind of question, same models); on other rows it is "
            "unchecked."
        )
    else:
        notes.append(
            "Confidence measures how much the panel agrees, not whether it is right; "
            "models that share mistakes can agree with high confidence."
        )
    return notes
