"""The Jupyter glue: ``%%orchestrate`` and ``%orchestrate`` (``magics``), the app
(``widgets``), the HTML and text tables of a result (``display``) and the progress bars
(``progress``). The core never imports this package; ``%load_ext nbtoolkit`` forwards here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbtoolkit.jupyter`` (or ``nbtoolkit``): register the magics."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext``: remove the magics again."""
    from .magics import unload_ipython_extension as unload

    unload(ipython)
