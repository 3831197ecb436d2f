"""Which rows a reviewer can trust at a target error, and which to check: the report's answer
when a calibration is present (issue 14).

Two sources, in this order:

- the run's own strategy is calibrated (``strategy=cal.recommendation``; rebuilt from the
  run's record, so a saved or replayed run keeps it): its held-out measures give the
  threshold (``Threshold``), and this run's rows below it are the ones to review; the rest
  are expected to be wrong about ``threshold.error`` of the time;
- the report has gold answers: ``calibrate`` on these rows, and each row's held-out
  calibrated confidence (from a model fitted without it) sorts them the same way.

``about_run`` and ``about_calibration`` return a ``Trust``; ``html`` writes it. Nothing here
calls a model.
"""

from __future__ import annotations

import html as html_lib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..reliability import HeldOut, Threshold
from . import markup as mk
from .replay import used_strategy
from .values import short

if TYPE_CHECKING:
    from ..calibration_result import Calibration
    from ..results import RunResult

__all__ = ["Trust", "about_calibration", "about_run", "html", "strategy_note"]

# Below this many labelled rows a held-out error rate moves by whole percents with one row.
_FEW = 50


def _held_out(strategy: Any) -> HeldOut | None:
    held = getattr(strategy, "calibration", None)
    return held if isinstance(held, HeldOut) and held.confidence else None


@dataclass(frozen=True)
class Trust:
    """What the Key questions say about trusting rows at ``threshold.target_error``.

    ``source``: where the threshold comes from, in words (HTML); ``threshold``: the held-out
    ``Threshold`` (``.threshold``, ``.rows``, ``.total_rows``, ``.error``, ``.sentence``);
    ``rows``: the rows considered here (index ``row``) with their ``answer`` and
    ``confidence`` (and ``right`` when known); ``review``: the rows to check, least confident
    first; ``held_out_here``: the rows here are the held-out rows the threshold was measured on.
    """

    source: str
    threshold: Threshold
    rows: pd.DataFrame
    review: list[int]
    held_out_here: bool


def about_run(res: RunResult, target_error: float) -> Trust | None:
    """From the run's own calibrated strategy; None when its strategy carries no calibration."""
    strategy = used_strategy(res)
    held = _held_out(strategy)
    if held is None:
        return None
    chosen = held.threshold(target_error)
    c = res.consensus
    rows = pd.DataFrame(
        {"answer": list(c["answer"]), "confidence": list(c["confidence"].astype(float))},
        index=pd.Index(c["row"].astype(int), name="row"),
    )
    source = (
        f"the run's calibrated confidence (<code>{mk.esc(getattr(strategy, 'name', ''))}</code> "
        f"calibrated by <code>calibrate</code>, measured on {len(held.confidence)} held-out "
        "labelled rows when it was fitted)"
    )
    return Trust(source, chosen, rows, _below(rows, chosen), held_out_here=False)


def about_calibration(cal: Calibration, target_error: float) -> Trust | None:
    """From ``calibrate`` on the report's own labelled rows, each scored held out."""
    if cal.held_out.empty:
        return None
    chosen = cal.threshold_for(target_error)
    held = cal.held_out
    rows = pd.DataFrame(
        {
            "answer": list(held["answer"]),
            "confidence": list(held["confidence"].astype(float)),
            "right": list(held["correct"].astype(bool)),
        },
        index=pd.Index(held.index.astype(int), name="row"),
    )
    name = getattr(cal.recommendation, "name", "")
    source = (
        f"<code>calibrate</code>'s recommendation (<code>{mk.esc(name)}</code>) and its "
        "calibrated confidence on these rows, each row scored by a confidence model fitted "
        "without it"
    )
    return Trust(source, chosen, rows, _below(rows, chosen), held_out_here=True)


def _below(rows: pd.DataFrame, chosen: Threshold) -> list[int]:
    """The rows under the threshold (every row when no threshold meets the target)."""
    low = rows[rows["confidence"] < chosen.threshold] if chosen.rows else rows
    return [int(r) for r in low.sort_values("confidence", kind="stable").index]


def html(trust: Trust, res: RunResult, max_rows: int = 25) -> str:
    """The Key questions' paragraph and table for ``trust``."""
    t = trust.threshold
    target = f"{t.target_error:.0%}" if t.target_error >= 0.01 else f"{t.target_error:.1%}"
    n, k = len(trust.rows), len(trust.review)
    kept = n - k
    head = f"<p><strong>Which rows can be trusted at {html_lib.escape(target)} error?</strong> "
    if not t.rows:
        body = (
            f"Measured held out, no confidence keeps the error under {target}: check all {n} "
            f"row(s) (from {trust.source})."
        )
    elif trust.held_out_here:  # the sentence is about these very rows: it says it all
        body = f"From {trust.source}: {html_lib.escape(t.sentence)}." + (
            " The rows to check, least confident first:" if k else ""
        )
    else:
        review = (
            f"{k} of {n} row(s) have confidence below {t.threshold:.3g}: review them"
            if k
            else f"no row has confidence below {t.threshold:.3g}: none to review"
        )
        body = (
            f"From {trust.source}: there, {html_lib.escape(t.sentence)}. Here, {review}; on "
            f"the other {kept} expect about {t.error:.1%} to be wrong (the held-out error "
            "above that threshold)."
        )
    if t.total_rows < _FEW:
        body += f" Measured on only {t.total_rows} labelled row(s): a rough guide."
    parts = [head + body + "</p>"]
    if k:
        parts.append(mk.table(_review_table(trust, res, max_rows)))
        if k > max_rows:
            parts.append(f"<p><em>and {k - max_rows} more.</em></p>")
    return "".join(parts)


def _review_table(trust: Trust, res: RunResult, max_rows: int) -> pd.DataFrame:
    c = res.consensus.set_index("row")
    inputs = [col for col in res.input_columns.values() if col in c.columns]
    # The input people recognise a row by: its longest text column (a question, not an id).
    text = max(inputs, key=lambda col: c[col].astype(str).str.len().mean()) if inputs else None
    out = []
    for row in trust.review[:max_rows]:
        rec = trust.rows.loc[row]
        item: dict[str, Any] = {"row": int(row)}
        if text is not None and row in c.index:
            item["input"] = short(c.at[row, text], 90)
        item["answer"] = short(rec["answer"])
        item["confidence"] = f"{float(rec['confidence']):.3f}"
        if "right" in trust.rows.columns:
            item["right?"] = "yes" if rec["right"] else "no"
        out.append(item)
    return pd.DataFrame(out)


def strategy_note(res: RunResult) -> str:
    """A sentence on the run's confidence when it is calibrated, else ""."""
    calibrated = res.consensus.get("calibrated")
    if calibrated is None or not calibrated.astype(bool).any():
        return ""
    held = _held_out(used_strategy(res))
    if held is None:
        return (
            " Its confidence is a probability fitted by calibrate, but the fitted model is not "
            "in the run's record: what-if numbers below use the plain strategy."
        )
    return (
        " Its confidence is a probability fitted by calibrate (expected calibration error "
        f"{held.ece():.3f} on {len(held.confidence)} held-out labelled rows), kept in the run's "
        "record."
    )
