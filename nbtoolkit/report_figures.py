"""The figures of a report, built from a finished run: its workflow diagram and its charts.

Drawn with ``report_svg`` (hand-written inline SVG); the numbers come from ``report_analysis``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from . import report_analysis as an
from . import report_svg as svg
from .results import RunResult

# ---------------------------------------------------------------------------- charts


def latency_chart(res: RunResult) -> str:
    out = res.outputs[~res.skipped_mask() & ~res.cancelled_mask()]
    items = []
    for model in res.models:
        lat = out.loc[out["model"] == model, "latency_s"].dropna()
        med = float(lat.median()) if len(lat) else math.nan
        shown = f"median {med:.2f} s, p90 {lat.quantile(0.9):.2f} s" if len(lat) else "unknown"
        items.append((model, med, shown))
    note = "simulated latencies" if res.simulated else "recorded latency of each call"
    return svg.bars(items, title="Latency per model (median per call)", note=note)


def cost_accuracy_chart(res: RunResult, gold: pd.Series | None) -> str:
    rows_n = max(1, len(res.consensus))
    out = res.outputs
    consensus = res.consensus.set_index("row")["answer"]
    points = []
    for model in res.models:
        cost = an.cost_total(out.loc[out["model"] == model, "cost_usd"]) / rows_n
        if gold is not None:
            y = an.accuracy(res.answers[model], gold)
        else:
            y = 1 - an.changed(res.answers[model], consensus) / rows_n
        points.append((model, cost, y, "model"))
    if gold is not None:
        points.append(
            (
                f"consensus ({res.strategy})",
                an.cost_total(out["cost_usd"]) / rows_n,
                an.accuracy(consensus, gold),
                "strategy",
            )
        )
    unknown = [p[0] for p in points if math.isnan(p[1])]
    note = f"price unknown, not shown: {', '.join(unknown)}" if unknown else ""
    y_label = "accuracy (gold)" if gold is not None else "agrees with the consensus"
    return svg.scatter(
        points,
        title=f"Cost per row against {y_label}",
        x_label="cost per row (USD)",
        y_label=y_label,
        note=note,
    )


def run_flow(res: RunResult, data_label: str, extract: Any, simulated: set[str]) -> tuple[str, str]:
    """One run drawn as input -> models -> extraction -> strategy -> consensus."""
    c = res.consensus
    rows = len(c)
    kinds = an.kinds(res)
    samples = int(res.outputs["sample"].max()) + 1 if len(res.outputs) else 1
    source = f"{rows} row(s)" + (f" of {data_label}" if data_label else "")
    inputs = [
        svg.Box(
            "in",
            "Input",
            [source, f"prompt: {res.prompt}"]
            + ([f"× {samples} samples per model"] if samples > 1 else []),
            "input",
        )
    ]
    boxes = []
    for i, model in enumerate(res.models):
        k = kinds[kinds["model"] == model]
        lines = [f"{int((~k['skipped']).sum())} calls, {int(k['failed'].sum())} failed"]
        if model in simulated:
            lines.append("simulated model")
        boxes.append(svg.Box(f"m{i}", model, lines, "simulated" if model in simulated else "model"))
    invalid = int(kinds["unreadable"].sum())
    extract_box = svg.Box(
        "x", "Extract answers", [an.describe_extract(extract), f"{invalid} unreadable"], "rule"
    )
    strategy_box = svg.Box("s", f"Strategy: {res.strategy}", [an.strategy_label(res)], "rule")
    low = int(c["low_confidence"].sum())
    out_box = svg.Box(
        "out",
        "Consensus",
        [
            f"{rows} answer(s)",
            f"mean confidence {c['confidence'].mean():.2f}",
            f"{low} low-confidence",
        ],
        "output",
    )
    edges = [svg.Edge("in", b.id, "prompt" if i == 0 else "") for i, b in enumerate(boxes)]
    edges += [svg.Edge(b.id, "x", "reply" if i == 0 else "") for i, b in enumerate(boxes)]
    edges += [svg.Edge("x", "s", "answers"), svg.Edge("s", "out", "answer, confidence")]
    drawing = svg.flow(
        [inputs, boxes, [extract_box], [strategy_box], [out_box]],
        edges,
        title="Orchestration workflow",
    )
    words = (
        f"The prompt was rendered for {source} and sent to {len(res.models)} model(s) "
        f"({', '.join(res.models)}){f', {samples} samples each' if samples > 1 else ''}; "
        f"each reply was read with {an.describe_extract(extract)}, and the answers were combined "
        f"by {an.strategy_label(res)} into one answer and a confidence per row."
    )
    return drawing, words


def _wrap_names(names: list[str], *, first: str, width: int = 30) -> list[str]:
    """``names`` joined by commas over lines of at most ``width`` characters."""
    if not names:
        return [first + "no variable"]
    lines, line = [], first
    for name in names:
        piece = name if line in (first, "") else f", {name}"
        if len(line) + len(piece) > width and line not in (first, ""):
            lines.append(line + ",")
            line, piece = "", name
        line += piece
    return [*lines, line]


def pipeline_flow(runs: Sequence[tuple[str, RunResult]], data_label: str) -> tuple[str, str]:
    """A pipeline drawn as input -> step -> step ... -> output.

    Each step's box says which variables its prompt reads; the arrow from the step before
    is named by what it carries. (Arrows that skip a step would cross boxes: the box says it.)
    """
    from .templating import Template

    names = [n for n, _ in runs]
    rows = len(runs[-1][1].consensus)
    source = f"{rows} row(s)" + (f" of {data_label}" if data_label else "")
    columns: list[list[svg.Box]] = [[svg.Box("in", "Input", [source], "input")]]
    edges: list[svg.Edge] = []
    words = []
    previous = "in"
    for k, (name, r) in enumerate(runs):
        used = list(Template(r.prompt).names)
        shown = list(r.models[:3]) + ([f"+{len(r.models) - 3} more"] if len(r.models) > 3 else [])
        reads = _wrap_names(["{" + v + "}" for v in used], first="reads ")
        lines = [*shown, *reads, f"{len(r.outputs)} calls"]
        columns.append([svg.Box(name, f"{name}: {r.strategy}", lines, "step")])
        if k == 0:
            carried = [v for v in used if v not in names]
        else:
            carried = [v for v in used if v in (previous, f"{previous}_outputs")]
        edges.append(svg.Edge(previous, name, ", ".join("{" + v + "}" for v in carried)))
        earlier = [v for v in used if any(v in (n, f"{n}_outputs") for n in names[:k])]
        words.append(
            f"{name} asks {len(r.models)} model(s) and combines their answers by {r.strategy}"
            + (f", reading {', '.join(earlier)} from the steps before" if earlier else "")
        )
        previous = name
    columns.append([svg.Box("out", "Final answer", [f"from step {names[-1]}"], "output")])
    edges.append(svg.Edge(names[-1], "out", "answer"))
    drawing = svg.flow(columns, edges, title="Pipeline workflow")
    return drawing, "; then ".join(words) + "."
