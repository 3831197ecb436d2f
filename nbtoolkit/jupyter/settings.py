"""The settings of ``%%orchestrate`` and the app: ``%config Orchestrate.<name> = ...``.

Shared by the magics and the widgets, so neither reaches into the other.
"""

from __future__ import annotations

from typing import Any

from traitlets import Bool, Dict, Enum, Int, List, TraitError, Unicode, Union, default, validate
from traitlets.config import Configurable

from ..progress import MODES as PROGRESS_MODES

__all__ = [
    "CACHE_MODES",
    "DEFAULT_ALIASES",
    "DEFAULT_OUT",
    "PROGRESS_MODES",
    "Orchestrate",
    "settings_for",
    "settings_of",
]

#: Short names for ``-m``; the defaults point at the offline simulated models.
DEFAULT_ALIASES = {
    "oracle": "sim/oracle-large",
    "steady": "sim/steady-medium",
    "swift": "sim/swift-mini",
    "budget-a": "sim/budget-a",
    "budget-b": "sim/budget-b",
    "coin-flip": "sim/coin-flip",
}
DEFAULT_OUT = "_orch"
CACHE_MODES = ("use", "refresh", "off", "replay-only")


class Orchestrate(Configurable):
    """Settings of ``%%orchestrate``: ``%config Orchestrate.default_models = ["oracle", "swift"]``."""

    default_models = List(
        Unicode(),
        help="Models used when a cell gives no -m (litellm ids or aliases).",
    ).tag(config=True)
    default_strategy = Unicode("vote", help="Consensus strategy when a cell gives no -s.").tag(
        config=True
    )
    concurrency = Int(16, help="Calls in flight at once, when a cell gives no --concurrency.").tag(
        config=True
    )
    cache = Enum(list(CACHE_MODES), "use", help="Cache mode when a cell gives no --cache.").tag(
        config=True
    )
    aliases = Dict(
        value_trait=Unicode(),
        key_trait=Unicode(),
        help="Short names for -m: alias -> litellm model id. Setting it replaces the table.",
    ).tag(config=True)
    short_errors = Bool(
        True,
        help="Show a mistake in a cell as one UsageError line (False: the full traceback).",
    ).tag(config=True)
    progress = Enum(
        list(PROGRESS_MODES),
        "auto",
        help="Live progress: widget bars, a text line, none, or auto (widgets for a person, "
        "text in papermill/nbconvert runs).",
    ).tag(config=True)

    proxy = Unicode(
        "",
        help="A LiteLLM proxy's URL (http://proxy:4000): every model that is not simulated or "
        "replayed goes through it. Empty: $NBTOOLKIT_PROXY_URL, else each provider directly.",
    ).tag(config=True)
    proxy_key_env = Unicode(
        "",
        help="The name of the environment variable holding your virtual key for the proxy "
        "(never the key). Empty: $NBTOOLKIT_PROXY_KEY_ENV, else LITELLM_PROXY_API_KEY.",
    ).tag(config=True)
    stream = Union(
        [Bool(), Enum(["auto"])],
        default_value="auto",
        help="Stream the replies into one pane per model, with a Stop button: True, False, or "
        "auto (on for a single prompt, no --over, in a kernel a person watches; never in "
        "papermill/nbconvert runs). A cell's --stream/--no-stream wins.",
    ).tag(config=True)

    @default("aliases")
    def _default_aliases(self) -> dict[str, str]:
        return dict(DEFAULT_ALIASES)

    @validate("concurrency")
    def _check_concurrency(self, proposal: Any) -> int:
        if proposal["value"] <= 0:
            raise TraitError("Orchestrate.concurrency must be a positive whole number")
        return int(proposal["value"])


def settings_of(ipython: Any) -> Orchestrate | None:
    """The ``Orchestrate`` settings registered with a shell, if the extension is loaded."""
    for configurable in ipython.configurables:
        if type(configurable).__name__ == "Orchestrate":
            return configurable  # type: ignore[no-any-return]
    return None


def settings_for(shell: Any) -> Orchestrate:
    """The shell's ``Orchestrate`` settings (``%config`` included), or the defaults."""
    if shell is not None:
        found = settings_of(shell)
        if found is not None:
            return found
        return Orchestrate(parent=shell)
    return Orchestrate()
