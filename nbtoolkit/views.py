"""How a result is shown: the glue plugs its views in here, so the core never imports it.

A view is a function of one result (``RunResult``) that returns something to show: the HTML
and text tables (``nbtoolkit.jupyter.display``), the matplotlib figures
(``nbtoolkit.report.figures``). ``nbtoolkit/__init__.py`` registers the built-in views by a
``"module:attribute"`` path, and a view's module is imported the first time it is used, so
``import nbtoolkit`` stays light and the core never names a glue module in an import.
Like papermill's engines: one registry, and a user's own view goes in the same way.

>>> from nbtoolkit import views
>>> views.register("html", "my_package.show:html")        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

from .errors import ConfigError

View = Callable[..., Any]

_VIEWS: dict[str, View | str] = {}


def register(name: str, view: View | str) -> None:
    """Show results as ``view`` under ``name`` (``"html"``, ``"text"``, ``"plot"``, ...).

    ``view`` is a callable or a ``"module:attribute"`` path imported on first use; a later
    registration under the same name replaces the earlier one."""
    if not (callable(view) or (isinstance(view, str) and view.count(":") == 1)):
        raise ConfigError(
            f"views.register({name!r}, ...) needs a callable or a 'module:attribute' path, "
            f"got {view!r}"
        )
    _VIEWS[name] = view


def get(name: str) -> View:
    """The view registered under ``name``; raises ``ConfigError`` if there is none."""
    try:
        view = _VIEWS[name]
    except KeyError:
        raise ConfigError(
            f"no view named {name!r}; registered: {', '.join(sorted(_VIEWS)) or 'none'}"
        ) from None
    if isinstance(view, str):
        module, _, attribute = view.partition(":")
        view = getattr(import_module(module), attribute)
        _VIEWS[name] = view
    return view
