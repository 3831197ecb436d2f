"""The one module of nbtoolkit that imports matplotlib at its top; imported when a chart is
drawn (``figures``), never by ``import nbtoolkit`` or ``%load_ext nbtoolkit``."""

from __future__ import annotations

import io

from matplotlib.figure import Figure

__all__ = ["Chart"]


class Chart(Figure):
    """A ``matplotlib.figure.Figure`` that also shows itself in a notebook when pyplot was
    never imported (``_repr_png_``): a chart returned by a cell shows as a picture."""

    def _repr_png_(self) -> bytes:
        out = io.BytesIO()
        self.savefig(out, format="png", dpi=110)
        return out.getvalue()
