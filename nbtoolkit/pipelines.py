"""Pipelines: steps run in sequence (or side by side), each feeding the next.

A step's consensus answer becomes the template variable ``{<step name>}`` of the steps after
it, and its per-model outputs ``{<step name>_outputs}`` (one "model: reply" block each). With
``data``, these are per row. A list of steps inside the list runs in parallel.

>>> res = nbt.pipeline([
...     nbt.Step("draft", "Write a haiku about {topic}.", models=["sim/swift-mini", "sim/budget-a", "sim/steady-medium"], strategy="medoid"),
...     nbt.Step("critique", "Critique these drafts:\\n{draft_outputs}", models=["sim/steady-medium", "sim/oracle-large"]),
...     nbt.Step("final", "Improve {draft} using: {critique}", models=["sim/oracle-large"]),
... ], variables={"topic": "autumn"})                          # doctest: +SKIP
>>> res.final.consensus, res["draft"].outputs                  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .errors import ConfigError
from .results import RunResult
from .spec import Model


@dataclass
class Step:
    """One step: a prompt template, a panel, a strategy, and any other orchestrate options."""

    name: str
    prompt: str
    models: Sequence[Model | str]
    strategy: Any = "vote"
    extract: Any = None
    options: dict[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        name: str,
        prompt: str,
        models: Sequence[Model | str] | Model | str,
        *,
        strategy: Any = "vote",
        extract: Any = None,
        **options: Any,
    ) -> None:
        if not name.isidentifier():
            raise ConfigError(f"step name {name!r} must be an identifier: it becomes {{{name}}}")
        self.name = name
        self.prompt = prompt
        self.models = [models] if isinstance(models, (str, Model)) else list(models)
        self.strategy = strategy
        self.extract = extract
        self.options = options


@dataclass
class PipelineResult:
    """Every step's ``RunResult``, by name, in the order they ran."""

    steps: dict[str, RunResult]

    @property
    def final(self) -> RunResult:
        return list(self.steps.values())[-1]

    def __getitem__(self, name: str) -> RunResult:
        return self.steps[name]

    def totals(self) -> pd.DataFrame:
        """Calls, tokens, cost and time per step."""
        # Built row by row: transposing a frame of mixed columns would make every count a float.
        return pd.DataFrame.from_records(
            [r.totals() for r in self.steps.values()], index=list(self.steps)
        )

    def __repr__(self) -> str:
        lines = [f"PipelineResult: {len(self.steps)} steps"]
        for name, r in self.steps.items():
            lines.append(f"  {name}: {r.summary_line()}")
        lines.append("-> .final, ['step name'] for a step's RunResult, .totals()")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        parts = [f"<h4>step {name}</h4>{r._repr_html_()}" for name, r in self.steps.items()]
        return "<div class='nbtoolkit-pipeline'>" + "".join(parts) + "</div>"


def format_outputs(result: RunResult, row: int) -> str:
    """One row's replies, as "### model" blocks, for the next step's prompt."""
    mine = result.outputs[(result.outputs["row"] == row) & result.outputs["output"].notna()]
    return "\n\n".join(
        f"### {m}\n{str(o).strip()}" for m, o in zip(mine["model"], mine["output"], strict=True)
    )


def _carry(
    result: RunResult, name: str, data: pd.DataFrame | None, variables: dict[str, Any]
) -> pd.DataFrame | None:
    answers = [_text(a) for a in result.consensus["answer"]]
    outputs = [format_outputs(result, r) for r in result.consensus["row"]]
    if data is None:
        variables[name] = answers[0]
        variables[f"{name}_outputs"] = outputs[0]
        return None
    data = data.copy()
    data[name] = answers
    data[f"{name}_outputs"] = outputs
    return data


def _text(answer: Any) -> str:
    if answer is None:
        return ""
    dump = getattr(answer, "model_dump_json", None)
    return dump() if callable(dump) else str(answer)


class _Stop:
    """The runs of a pipeline in flight, to cancel together on an interrupt; once stopped,
    a step that starts is cancelled before its first call and no later step starts."""

    def __init__(self) -> None:
        self.runners: list[Any] = []
        self.stopped = False

    def started(self, runner: Any) -> None:
        self.runners.append(runner)
        if self.stopped:
            runner.cancel()

    def stop(self) -> bool:
        self.stopped = True
        for runner in self.runners:
            runner.cancel()
        return True  # the pipeline's own result (the finished steps) is still awaited


async def apipeline(
    steps: Sequence[Step | Sequence[Step]],
    *,
    data: pd.DataFrame | None = None,
    variables: Mapping[str, Any] | None = None,
    _stop: _Stop | None = None,
    **common: Any,
) -> PipelineResult:
    """The async twin of ``pipeline``."""
    from .api import aorchestrate

    def watched(options: dict[str, Any]) -> dict[str, Any]:
        if _stop is None:
            return options
        theirs = options.pop("on_start", None)

        def on_start(runner: Any) -> None:
            _stop.started(runner)
            if theirs is not None:
                theirs(runner)

        return {**options, "on_start": on_start}

    if not steps:
        raise ConfigError("a pipeline needs at least one step")
    names = [s.name for group in steps for s in ([group] if isinstance(group, Step) else group)]
    if len(set(names)) != len(names):
        raise ConfigError(f"step names must be unique: {names}")
    variables = dict(variables or {})
    results: dict[str, RunResult] = {}
    for group in steps:
        if _stop is not None and _stop.stopped:
            break  # interrupted: the steps finished so far are the result
        batch = [group] if isinstance(group, Step) else list(group)
        runs = await asyncio.gather(
            *[
                aorchestrate(
                    s.prompt,
                    s.models,
                    data=data,
                    variables=variables,
                    strategy=s.strategy,
                    extract=s.extract,
                    **watched({**common, **s.options}),
                )
                for s in batch
            ]
        )
        for s, r in zip(batch, runs, strict=True):
            results[s.name] = r
        # Side-by-side steps see only what came before them; their outputs feed what follows.
        for s, r in zip(batch, runs, strict=True):
            data = _carry(r, s.name, data, variables)
    return PipelineResult(results)


def pipeline(
    steps: Sequence[Step | Sequence[Step]],
    *,
    data: pd.DataFrame | None = None,
    variables: Mapping[str, Any] | None = None,
    **common: Any,
) -> PipelineResult:
    """Run ``steps`` in order (a nested list runs side by side); see the module docstring.

    Ctrl-C (or a kernel interrupt) stops the step in flight and raises ``RunInterrupted``
    whose ``.result`` is the ``PipelineResult`` of the steps run so far, the interrupted
    one with its finished rows (marked ``cancelled``); no later step starts.
    """
    from .errors import RunInterrupted
    from .loop import run_sync

    stop = _Stop()
    result = run_sync(
        apipeline(steps, data=data, variables=variables, _stop=stop, **common),
        on_interrupt=stop.stop,
    )
    if stop.stopped:
        raise RunInterrupted(
            f"interrupted: the {len(result.steps)} step(s) that ran are in this exception's "
            ".result (a PipelineResult; the one in flight keeps its finished rows, the rest "
            "'Cancelled'); no later step started",
            result,
        )
    return result


MOA_LAYER = (
    "{task}\n\nHere are responses from other assistants to this task. Use them, critically "
    "(some may be wrong), to write a better response of your own.\n\n{previous}"
)
MOA_FINAL = (
    "{task}\n\nYou have been given several responses to this task from different models. "
    "Critically evaluate them, then write the single best response, following the task's "
    "own instructions on format.\n\n{previous}"
)


def mixture_of_agents(
    prompt: str,
    proposers: Sequence[Model | str],
    aggregator: Model | str,
    *,
    layers: int = 2,
    data: pd.DataFrame | None = None,
    variables: Mapping[str, Any] | None = None,
    extract: Any = None,
    **common: Any,
) -> PipelineResult:
    """Mixture-of-Agents: ``layers`` of proposers, each seeing the last layer, then one aggregator.

    Steps are named ``layer1`` ... ``layer<L>`` and ``final``.
    """
    if layers < 1:
        raise ConfigError(f"layers={layers} must be at least 1")
    task = prompt  # later layers render the task's own {variables} from the same row
    # Proposers pass whole replies forward; only the aggregator's answer is extracted.
    steps: list[Step] = [Step("layer1", prompt, proposers, strategy="medoid")]
    for k in range(2, layers + 1):
        text = MOA_LAYER.replace("{task}", task).replace("{previous}", f"{{layer{k - 1}_outputs}}")
        steps.append(Step(f"layer{k}", text, proposers, strategy="medoid"))
    final = MOA_FINAL.replace("{task}", task).replace("{previous}", f"{{layer{layers}_outputs}}")
    steps.append(Step("final", final, [aggregator], strategy="first_valid", extract=extract))
    return pipeline(steps, data=data, variables=variables, **common)
