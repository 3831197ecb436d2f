"""nbtoolkit: one prompt, many models, one DataFrame, a consensus with a confidence.

>>> import nbtoolkit as nbt
>>> res = nbt.orchestrate("Classify the sentiment of: {review}",
...                       models=["sim/oracle-large", "sim/swift-mini", "sim/steady-medium"],
...                       data=reviews_df, extract="choice")      # doctest: +SKIP

In Jupyter: ``%load_ext nbtoolkit``, then ``%%orchestrate``.

Importing this package is cheap: pandas and litellm load on first use, so that
``%load_ext nbtoolkit`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from . import views as _views
from .errors import (
    BatchPendingError,
    CacheError,
    CallError,
    ConfigError,
    ExtractionError,
    ExtractorError,
    MissingAPIKeyError,
    ModelError,
    NbtoolkitError,
    RecordingsError,
    RunFailedError,
    RunInterrupted,
    StrategyError,
    TemplateError,
)

__version__ = "0.1.0"

# How a RunResult shows itself lives in the glue; registered by path, imported on first use.
_views.register("html", "nbtoolkit.jupyter.display:html_repr")
_views.register("text", "nbtoolkit.jupyter.display:text_repr")
_views.register("plot", "nbtoolkit.report.figures:Plots")
_views.register("calibration.plot", "nbtoolkit.report.calibration_figures:CalibrationPlots")
_views.register("progress.widget", "nbtoolkit.jupyter.progress:WidgetProgress")
_views.register("stream.panes", "nbtoolkit.jupyter.streaming:panes")
# orchestrate(batch=True) reaches the batch package by name: that package builds on api.py.
_views.register("batch.submit", "nbtoolkit.batch:submit")
_views.register("batch.run", "nbtoolkit.batch:run_batched")

if TYPE_CHECKING:
    from .api import aorchestrate, orchestrate
    from .batch import Job, attach, submit
    from .cache import Cache
    from .calibration import Calibration, calibrate, rescore
    from .comparison import Comparison, compare
    from .estimates import Estimate, estimate
    from .jupyter.widgets import ui
    from .pipelines import PipelineResult, Step, apipeline, mixture_of_agents, pipeline
    from .providers.proxy import Proxy
    from .results import RunResult, load
    from .spec import Model
    from .strategies import Cascade, FirstValid, Fuse, Judge, Medoid, Vote, Weighted

# Submodules are named apart from what they export (pipelines.py exports pipeline): importing
# a submodule sets it as an attribute of the package, which must never hide a function.
_LAZY = {
    "orchestrate": "api",
    "aorchestrate": "api",
    "RunResult": "results",
    "Model": "spec",
    "Cache": "cache",
    "compare": "comparison",
    "Comparison": "comparison",
    "load": "results",
    "Template": "templating",
    "calibrate": "calibration",
    "rescore": "calibration",
    "Calibration": "calibration",
    "pipeline": "pipelines",
    "apipeline": "pipelines",
    "Step": "pipelines",
    "PipelineResult": "pipelines",
    "mixture_of_agents": "pipelines",
    "ui": "jupyter.widgets",
    "estimate": "estimates",
    "Estimate": "estimates",
    "Proxy": "providers.proxy",
    "submit": "batch",
    "attach": "batch",
    "Job": "batch",
    **{
        name: "strategies"
        for name in ("Cascade", "FirstValid", "Fuse", "Judge", "Medoid", "Vote", "Weighted")
    },
}

__all__ = [
    "BatchPendingError",
    "Cache",
    "Cascade",
    "FirstValid",
    "Fuse",
    "Judge",
    "Medoid",
    "Vote",
    "Weighted",
    "CacheError",
    "CallError",
    "Calibration",
    "Estimate",
    "ConfigError",
    "ExtractionError",
    "ExtractorError",
    "MissingAPIKeyError",
    "Model",
    "ModelError",
    "NbtoolkitError",
    "RecordingsError",
    "RunFailedError",
    "RunInterrupted",
    "RunResult",
    "StrategyError",
    "Template",
    "TemplateError",
    "__version__",
    "PipelineResult",
    "Proxy",
    "Step",
    "aorchestrate",
    "apipeline",
    "calibrate",
    "compare",
    "Comparison",
    "load",
    "estimate",
    "Job",
    "attach",
    "submit",
    "mixture_of_agents",
    "orchestrate",
    "pipeline",
    "rescore",
    "ui",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbtoolkit``: register ``%%orchestrate`` and ``%orchestrate``."""
    from .jupyter import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nbtoolkit``: remove the magics again."""
    from .jupyter import unload_ipython_extension as unload

    unload(ipython)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbtoolkit' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
