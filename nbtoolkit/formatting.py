"""The one way each number and word about a run is written, on every screen and in reports.

A cost that is not known is ``unknown`` (never ``$0``), tokens not reported are never a 0,
and a simulated run's times say they are simulated. Pure functions: the HTML of
``nbtoolkit.jupyter.display``, the report sections, the CLI and the progress line all write
their numbers through here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .errors import clip

if TYPE_CHECKING:
    from .results import RunResult

_RED = (252, 165, 165)
_YELLOW = (253, 230, 138)
_GREEN = (134, 239, 172)
MUTED = "#e5e7eb"


def colour(value: float) -> str:
    """A hex colour for a share in [0, 1]: red at 0, yellow at 0.5, green at 1; grey for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MUTED
    v = min(1.0, max(0.0, float(value)))
    low, high, t = (_RED, _YELLOW, v * 2) if v < 0.5 else (_YELLOW, _GREEN, v * 2 - 1)
    rgb = (round(a + (b - a) * t) for a, b in zip(low, high, strict=True))
    return "#" + "".join(f"{c:02x}" for c in rgb)


def format_cost(value: Any) -> str:
    """``$0.0031``; a cost that is not known (NaN) is ``unknown``, never ``$0``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "unknown"
    if math.isnan(x):
        return "unknown"
    if x == 0:
        return "$0"
    if abs(x) >= 1:
        return f"${x:,.2f}"
    if abs(x) >= 0.01:
        return f"${x:.4f}"
    small = f"{x:.6f}".rstrip("0")
    return f"${small}" if small not in ("0.", "-0.") else f"${x:.1e}"


def format_tokens(prompt: Any, completion: Any, unknown_calls: int = 0) -> str:
    """``90 (6 in, 84 out)``; ``at least 90 (...), unknown for 3 call(s)`` when some calls'
    counts are unknown; ``unknown`` when none is known. Never a 0 that stands for unknown."""
    try:
        p, c = int(prompt), int(completion)
    except (TypeError, ValueError):
        return "unknown" + (f" ({unknown_calls} call(s) without counts)" if unknown_calls else "")
    total = f"{p + c:,} ({p:,} in, {c:,} out)"
    if not unknown_calls:
        return total
    if p + c == 0:
        return f"unknown ({unknown_calls} call(s) without counts)"
    return f"at least {total}; unknown for {unknown_calls} call(s)"


def _number(value: Any, shown: str) -> str:
    """``value`` formatted by ``shown`` (a format spec); ``—`` when it is not a number or NaN."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(x) else format(x, shown)


def seconds(value: Any) -> str:
    shown = _number(value, ".2f")
    return shown if shown == "—" else f"{shown} s"


def sim_time_note(result: RunResult) -> str:
    """Words for beside a wall-clock time when simulated models slept a scaled latency.

    A simulated call records its simulated latency (``latency_s``) but waits only
    ``NBTOOLKIT_SIM_TIME_SCALE`` times it, so the wall-clock time is not their sum.
    """
    if not result.simulated:
        return ""
    scale = result.meta.get("sim_time_scale")
    if scale is None:
        from .providers import sim

        scale = sim.time_scale()
    return (
        f"simulated models slept {float(scale):g}x their simulated latency, "
        f"NBTOOLKIT_SIM_TIME_SCALE={float(scale):g}"
    )


def latency_label(result: RunResult) -> str:
    """``latency`` or ``simulated latency`` (all models simulated) or a mixed note."""
    if not result.simulated:
        return "latency"
    if set(result.simulated) >= set(result.models):
        return "simulated latency"
    return "latency (simulated for " + ", ".join(result.simulated) + ")"


def unpriced_calls(result: RunResult) -> int:
    """Answered calls whose cost is not known (NaN): a total over them is a lower bound."""
    return int(result.totals()["unknown_cost_calls"])


def share(value: Any) -> str:
    return _number(value, ".0%")


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    import pandas as pd  # here: the progress line writes costs before pandas is needed

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array: present
        return False


def text(value: Any, limit: int | None = None) -> str:
    if is_missing(value):
        return ""
    text = value if isinstance(value, str) else str(value)
    return clip(text, limit, "…") if limit is not None else text
