"""``Calibrated``: a strategy whose confidence is a probability, fitted by ``calibrate``.

It answers exactly as the strategy it wraps (same answer, same calls, same stages for a
cascade) and replaces each verdict's ``confidence`` with the probability its
``ConfidenceModel`` gives, so ``confidence >= 0.9`` means "right about 9 times in 10" as
measured on held-out rows. ``calibrate(...).recommendation`` is one; build one yourself
only from a model ``calibrate`` fitted: ``Calibrated(strategy, cal.confidence_model)``.

>>> cal = nbt.calibrate(res, gold="gold")                                   # doctest: +SKIP
>>> nbt.orchestrate(prompt, models, data=new, strategy=cal.recommendation,
...                 confidence_threshold="auto:0.05")                        # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import StrategyError
from .base import Candidate, Verdict, restrict

if TYPE_CHECKING:
    from ..confidence import ConfidenceModel
    from ..reliability import HeldOut


class Calibrated:
    """``strategy`` with a calibrated confidence (module doc).

    ``confidence_model``: the fitted ``ConfidenceModel`` (not ``model``: that name means a
    judge's model to the engine); ``calibration``: the held-out measures it was
    judged by (``HeldOut``: ECE, reliability, selective curve), which
    ``confidence_threshold="auto:<target error>"`` reads its threshold from.
    Raises ``StrategyError`` for a strategy that asks a judge or aggregator: its verdict
    comes from a reply the features do not describe.
    """

    def __init__(
        self, strategy: Any, confidence_model: ConfidenceModel, calibration: HeldOut | None = None
    ) -> None:
        if callable(getattr(strategy, "followup", None)) or callable(
            getattr(strategy, "conclude", None)
        ):
            raise StrategyError(
                f"Calibrated wraps strategies that decide from the panel's answers alone, "
                f"not {getattr(strategy, 'name', type(strategy).__name__)!r}"
            )
        self.strategy = strategy
        self.confidence_model = confidence_model
        self.calibration = calibration

    @property
    def name(self) -> str:
        return str(getattr(self.strategy, "name", type(self.strategy).__name__))

    @property
    def models(self) -> list[str] | None:
        return getattr(self.strategy, "models", None)

    def combine(self, candidates: list[Candidate]) -> Verdict:
        # The features describe the candidates the wrapped strategy used, as calibrate saw them.
        used = restrict(candidates, self.models)
        return self.confidence_model.apply(self.strategy.combine(candidates), used)

    def __getattr__(self, name: str) -> Any:
        # The rest (a cascade's stages/settled/order/threshold, a vote's weights) is the
        # wrapped strategy's, so the engine and rescore plan the same calls for both.
        if name.startswith("__") or name in {"strategy", "confidence_model", "calibration"}:
            raise AttributeError(name)
        return getattr(self.strategy, name)

    def __repr__(self) -> str:
        return f"Calibrated({self.strategy!r})"
