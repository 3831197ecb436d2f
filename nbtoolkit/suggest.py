"""``did you mean ...?`` for a mistyped name: aliases, simulated profiles, flags, strategies.

One rule everywhere: the closest of the names that are accepted at that place, by
``difflib``; nothing when none is close, so a suggestion is always a form that works.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["closest", "did_you_mean"]


def closest(word: str, options: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The accepted name closest to ``word``, or None when none is close."""
    found = difflib.get_close_matches(word, list(options), n=1, cutoff=cutoff)
    return found[0] if found else None


def did_you_mean(word: str, options: Iterable[str], cutoff: float = 0.6) -> str:
    """``" Did you mean 'x'?"`` (with a leading space), or ``""`` when nothing is close."""
    match = closest(word, options, cutoff)
    return f" Did you mean {match!r}?" if match else ""
