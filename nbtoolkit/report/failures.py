"""What went wrong in a run, by kind: for the report's validation section.

An error message carries a preview of the reply, so grouping by message would give one group
per reply; a reader acts on the kind (a connection that failed, JSON cut off, no number).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..extract.jsonread import ends_inside_json
from ..results import RunResult
from .values import missing, short

# What an extraction message says, as a kind of failure a reader can act on. The messages
# carry a preview of the reply, so grouping by message would give one group per reply.
_EXTRACT_KINDS = (
    ("the reply is empty", "empty reply"),
    ("JSON cut off", "JSON cut off (the reply ends inside it: max_tokens?)"),
    ("no JSON object", "no JSON object in the reply"),
    ("has no field", "JSON without the asked field"),
    ("is empty", "JSON field empty"),
    ("no number", "no number in the reply"),
    ("not a number", "not a number"),
    ("no answer letter", "no answer letter in the reply"),
    ("does not match", "regex did not match"),
    ("validation failed", "schema validation failed"),
)


def failure_kind(error: Any, output: Any = None) -> str:
    """The kind of a failed call or unreadable reply: ``JSON cut off``, ``Timeout``..."""
    text = "" if missing(error) else str(error)
    if text.startswith("extract:") or (not missing(output) and text):
        if ends_inside_json(output):
            return "JSON cut off (the reply ends inside it: max_tokens?)"
        for needle, kind in _EXTRACT_KINDS:
            if needle in text:
                return kind
        if "[simulated" in text or "simulated models only know" in text:
            return "outside the simulated models' question bank"
        return "unreadable reply"
    head = text.split(":", 1)[0].strip()
    return head if head and len(head) <= 40 else "failed call"


def problems(res: RunResult, top: int = 10) -> pd.DataFrame:
    """Each kind of failure (a failed call's error kind, or why a reply could not be read):
    how often, from which models, and one example message."""
    out = res.outputs
    error = out["error"].fillna("")
    bad = out[(error != "") & res.made_mask() & ~res.fallback_mask()]
    if bad.empty:
        return pd.DataFrame(columns=["kind", "count", "models", "example"])
    kinds = [failure_kind(e, o) for e, o in zip(bad["error"], bad["output"], strict=True)]
    examples = [_example(e, o) for e, o in zip(bad["error"], bad["output"], strict=True)]
    grouped = bad.assign(kind=kinds, example=examples).groupby("kind", sort=False)
    table = pd.DataFrame(
        {
            "count": grouped.size(),
            "models": grouped["model"].agg(lambda s: ", ".join(dict.fromkeys(s))),
            "example": grouped["example"].first(),
        }
    ).reset_index()
    return table.sort_values("count", ascending=False, kind="stable").head(top)


def _example(error: Any, output: Any) -> str:
    """One line that shows the kind: for a cut-off reply its end, where the cut is (the
    extractor's own message would only say it found no JSON object)."""
    if ends_inside_json(output):
        tail = " ".join(str(output).split())[-100:]
        return f"the reply ends: …{tail}"
    return short(error, 140)
