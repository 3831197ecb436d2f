"""A strategy as plain JSON and back, so a run's record says exactly how it combined answers.

A run's manifest (``res.meta["strategy_record"]``, saved by ``res.save`` and written into a
report's notebook) holds ``to_record(strategy)``; ``of_run(res)`` rebuilds the strategy from
it. A ``Calibrated`` strategy keeps its fitted ``ConfidenceModel`` and its held-out measures,
so a re-run, a ``rescore`` or a report built from the record gives the same calibrated
confidence and the same ``confidence_threshold="auto:..."`` threshold, not the plain vote::

    {"name": "weighted", "options": {"weights": {...}, "models": [...]}}
    {"name": "calibrated", "strategy": {...the wrapped one...},
     "confidence_model": {"accuracy": {...}, "best": ..., "weights": [...], "mean": [...],
                          "scale": [...], "rows": [...]},
     "held_out": {"confidence": [...], "correct": [...]}}

A strategy is recorded by its registered ``name`` and the constructor arguments it keeps as
attributes of the same names (every built-in that decides from the panel's answers alone); one
that cannot be (a judge's model object, a custom class keeping other state) records as None,
and the manifest's ``strategy`` repr is all there is.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from typing import Any

from ..errors import StrategyError

__all__ = ["describe", "from_record", "of_run", "to_record"]

CALIBRATED = "calibrated"


def to_record(strategy: Any) -> dict[str, Any] | None:
    """``strategy`` as JSON-able data (module doc), or None when it cannot be rebuilt."""
    from .calibrated import Calibrated

    if isinstance(strategy, Calibrated):
        inner = to_record(strategy.strategy)
        if inner is None:
            return None
        model = strategy.confidence_model
        held = strategy.calibration
        return {
            "name": CALIBRATED,
            "strategy": inner,
            "confidence_model": {
                "accuracy": {str(k): float(v) for k, v in model.accuracy.items()},
                "best": str(model.best),
                "weights": [float(w) for w in model.weights],
                "mean": [float(m) for m in model.mean],
                "scale": [float(s) for s in model.scale],
                "rows": [int(r) for r in model.rows],
            },
            "held_out": None
            if held is None
            else {
                "confidence": [float(c) for c in held.confidence],
                "correct": [bool(c) for c in held.correct],
            },
        }
    name = getattr(strategy, "name", None)
    if not isinstance(name, str):
        return None
    options: dict[str, Any] = {}
    for param in list(inspect.signature(type(strategy).__init__).parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if not hasattr(strategy, param.name):
            return None  # it keeps the argument under another name: it cannot be rebuilt
        options[param.name] = getattr(strategy, param.name)
    record = {"name": name, "options": options}
    try:
        # A value JSON cannot carry (a model object) would come back as something else.
        if json.loads(json.dumps(record)) != record:
            return None
    except (TypeError, ValueError):
        return None
    # Kept under the same names is not always kept the same: a rebuild must print the same.
    shown = repr(strategy)
    if " object at 0x" not in shown:
        try:
            if repr(from_record(record)) != shown:
                return None
        except Exception:  # a user's constructor may refuse what it keeps: not rebuildable
            return None
    return record


def from_record(record: Mapping[str, Any]) -> Any:
    """The strategy ``to_record`` described. Raises ``StrategyError`` when its name is not
    registered here (a custom strategy: register it first) or its options no longer fit."""
    from . import get

    if record.get("name") == CALIBRATED:
        from ..confidence import ConfidenceModel
        from ..reliability import HeldOut
        from .calibrated import Calibrated

        fitted = record["confidence_model"]
        model = ConfidenceModel(
            accuracy=dict(fitted["accuracy"]),
            best=fitted["best"],
            weights=tuple(fitted["weights"]),
            mean=tuple(fitted["mean"]),
            scale=tuple(fitted["scale"]),
            rows=tuple(fitted["rows"]),
        )
        held = record.get("held_out")
        measured = (
            None
            if held is None
            else HeldOut(tuple(held["confidence"]), tuple(bool(c) for c in held["correct"]))
        )
        return Calibrated(from_record(record["strategy"]), model, measured)
    name = str(record.get("name"))
    try:
        return get(name, **dict(record.get("options") or {}))
    except StrategyError as exc:
        raise StrategyError(f"the recorded strategy cannot be rebuilt: {exc}") from None


def of_run(result: Any) -> Any | None:
    """The strategy a run used, rebuilt from its record (``result.meta``); None when the run
    recorded none (a strategy that cannot be recorded, or a run saved before records)."""
    record = getattr(result, "meta", {}).get("strategy_record")
    return from_record(record) if isinstance(record, Mapping) else None


def describe(record: Mapping[str, Any] | None) -> str:
    """A short line for a record, as a report's manifest table shows it (the full record is
    in the notebook's metadata and the saved run)."""
    if not isinstance(record, Mapping):
        return "not recorded (the strategy cannot be rebuilt from plain data)"
    if record.get("name") == CALIBRATED:
        fitted = record.get("confidence_model") or {}
        held = record.get("held_out") or {}
        return (
            f"calibrated {describe(record.get('strategy'))}: a confidence model fitted on "
            f"{len(fitted.get('rows', []))} labelled rows, measured on "
            f"{len(held.get('confidence', []))} held-out rows"
        )
    options = ", ".join(
        f"{k}={json.dumps(v)}" for k, v in (record.get("options") or {}).items() if v is not None
    )
    return f"{record.get('name')}({options})"
