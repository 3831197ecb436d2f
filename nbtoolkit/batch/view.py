"""How a ``Job`` shows itself: per batch its model, batch id, status, counts and the saving
against the live price (measured once collected, the price ratio before)."""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

from ..formatting import format_cost, share
from ..providers import batches as provider_batches

if TYPE_CHECKING:
    from .job import Job

__all__ = ["job_html", "job_rows", "job_text"]

_HEAD = ("model", "batch id", "status", "done", "failed", "total", "est. saving")


def _saving(job: Job, label: str, part: int, collected: bool) -> str:
    model = job.model(label)
    if collected:
        pairs = [
            (r.live_cost_usd, r.cost_usd)
            for r in job.store.requests(job.id, part)
            if r.cost_usd is not None
        ]
        if pairs and all(live is not None for live, _ in pairs):
            return format_cost(sum(float(live or 0) - float(cost or 0) for live, cost in pairs))
    if model is None:
        return "unknown"
    batch_in, _, estimated = provider_batches.prices(model)
    live_in, _ = provider_batches.live_prices(model)
    if math.isnan(batch_in) or math.isnan(live_in) or not live_in:
        return "unknown"
    return f"{share(1 - batch_in / live_in)} of live price" + (" (estimate)" if estimated else "")


def job_rows(job: Job) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for part in job.parts:
        rows.append(
            (
                part.model,
                part.batch_id or "—",
                part.status + (f" ({part.error})" if part.error else ""),
                str(part.completed),
                str(part.failed),
                str(part.total),
                _saving(job, part.model, part.part, part.collected),
            )
        )
    for label, reason in job.live.items():
        rows.append((label, "—", f"runs live: {reason}", "", "", "", "none"))
    return rows


def job_text(job: Job) -> str:
    rows = [_HEAD, *job_rows(job)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEAD) - 1)]
    lines = [f"<Job {job.id}>"]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        lines.append("  " + "  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def job_html(job: Job) -> str:
    def cell(tag: str, value: Any) -> str:
        return f"<{tag} style='text-align:left'>{html.escape(str(value))}</{tag}>"

    head = "".join(cell("th", h) for h in _HEAD)
    body = "".join("<tr>" + "".join(cell("td", c) for c in row) + "</tr>" for row in job_rows(job))
    return (
        f"<div><b>Batch job</b> <code>{html.escape(job.id)}</code> "
        f"(<code>nbt.attach({html.escape(repr(job.id))})</code> picks it up elsewhere)"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )
