"""Prompt templates: ``{name}`` is filled in, every other brace stays as it is.

``str.format`` breaks on the first literal ``{`` of a JSON example, so templates are parsed
here instead: ``{identifier}`` is a variable, ``{{`` and ``}}`` are literal braces (a ``}}``
only when it closes a ``{{``, since nested JSON ends in ``}}``), and any other brace text
(``{"answer": {"value": 42}}``, ``{ }``) is kept byte for byte. ``{0}`` names the column
``0`` of a frame read with ``pd.read_csv(header=None)``; where no column or variable has
that name it is literal text too.

>>> Template('Reply as {"label": ...} for: {review}').render({"review": "Great!"})
'Reply as {"label": ...} for: Great!'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import TemplateError

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}")


class Template:
    """A parsed prompt template; render it with a mapping of names to values."""

    __slots__ = ("text", "_parts", "names", "fields")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise TemplateError(f"the prompt must be a str, not {type(text).__name__}")
        self.text = text
        # Alternating literal strings and variable names, so rendering is a join.
        parts: list[tuple[bool, str]] = []
        pos = 0
        # "}}" is an escape only when it closes a "{{" escape: nested JSON ends in "}}" too.
        open_escapes = 0
        for match in _TOKEN.finditer(text):
            if match.start() > pos:
                parts.append((False, text[pos : match.start()]))
            token = match.group(0)
            if token == "{{":
                parts.append((False, "{"))
                open_escapes += 1
            elif token == "}}":
                parts.append((False, "}" if open_escapes else "}}"))
                open_escapes = max(0, open_escapes - 1)
            else:
                parts.append((True, match.group(1)))
            pos = match.end()
        if pos < len(text):
            parts.append((False, text[pos:]))
        self._parts = tuple(parts)
        # Every name filled in; ``names`` are the ones that must exist (``{0}`` need not).
        self.fields: tuple[str, ...] = tuple(dict.fromkeys(p for is_var, p in parts if is_var))
        self.names: tuple[str, ...] = tuple(n for n in self.fields if not n.isdigit())

    def check(self, known: set[str] | frozenset[str]) -> None:
        """Raise ``TemplateError`` naming the first variable that is known nowhere."""
        for name in self.names:
            if name not in known:
                listed = ", ".join(sorted(known)) or "(none)"
                raise TemplateError(
                    f"the prompt uses {{{name}}} but no column or variable is called '{name}'. "
                    f"Known names: {listed}. Pass variables={{'{name}': ...}}, or write "
                    f"{{{{{name}}}}} for literal braces."
                )

    def render(self, *scopes: Mapping[str, Any]) -> str:
        """Fill the template; earlier scopes win (a row's columns, then ``variables``)."""
        out: list[str] = []
        for is_var, part in self._parts:
            if not is_var:
                out.append(part)
                continue
            for scope in scopes:
                if part in scope:
                    out.append(_to_text(scope[part]))
                    break
            else:
                if part.isdigit():
                    out.append("{" + part + "}")
                    continue
                self.check(set().union(*(s.keys() for s in scopes)) if scopes else set())
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        # A pandas column of whole numbers read as float should still read "3", not "3.0".
        return str(int(value))
    return str(value)


def render(template: str, *scopes: Mapping[str, Any]) -> str:
    """Render ``template`` once; see ``Template``."""
    return Template(template).render(*scopes)


def rows_of(data: Any) -> list[dict[str, Any]]:
    """Each row of the DataFrame ``data`` as ``{column name: value}``, the values as
    ``data.to_dict("records")`` gives them: Python scalars, and in an object or extension
    column (strings, categories, nullable numbers) numpy scalars made Python ones and
    ``pd.NA`` None; ``[{}]`` for no data.

    Read column by column (``Series.tolist``): iterating rows reads an Arrow-backed string
    column one element at a time, ten times slower.
    """
    if data is None:
        return [{}]
    from pandas.api.extensions import ExtensionDtype

    names = [str(c) for c in data.columns]
    columns = []
    native = _native()
    for position in range(data.shape[1]):
        column = data.iloc[:, position]
        values = column.tolist()
        if column.dtype == object or isinstance(column.dtype, ExtensionDtype):
            values = [v if type(v) is str else native(v) for v in values]
        columns.append(values)
    if not columns:
        return [{} for _ in range(len(data))]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _native() -> Callable[[Any], Any]:
    """pandas' ``maybe_box_native``, which ``to_dict`` applies to object and extension
    columns (pandas imported here, once per frame: importing nbtoolkit does not)."""
    import numpy as np
    import pandas as pd
    from pandas.api.types import is_bool, is_float, is_integer

    def box(value: Any) -> Any:
        if is_float(value):
            return float(value)
        if is_integer(value):
            return int(value)
        if is_bool(value):
            return bool(value)
        if isinstance(value, np.datetime64):
            return pd.Timestamp(value)
        if isinstance(value, np.timedelta64):
            return pd.Timedelta(value)
        if value is pd.NA:
            return None
        return value

    return box
