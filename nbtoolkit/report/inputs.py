"""The rows and models a report template runs on, from its parameters.

``load_inputs(data, rows)`` reads the data (a file, or the simulated models' own question
bank); ``panel(models, api_base=..., api_key_env=...)`` builds the models.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..spec import Model

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BUILTIN_DATA", "load_inputs", "panel"]

#: The ``data`` value meaning "the simulated models' own question bank, with gold answers".
BUILTIN_DATA = "builtin:sim-questions"


def load_inputs(data: str, rows: int = 0) -> pd.DataFrame | None:
    """The rows a template runs on: ``""`` none (one prompt), ``BUILTIN_DATA`` the simulated
    question bank (gold answers in ``gold``), else a CSV, Parquet or JSON Lines file."""
    if not data:
        return None
    import pandas as pd  # here: the CLI's checks before a run read no frame

    if data == BUILTIN_DATA:
        from ..providers import sim

        frame = pd.DataFrame(sim.question_bank()).rename(columns={"answer": "gold"})
    else:
        lower = data.lower()
        if not os.path.exists(data):
            raise ConfigError(f"data file {data!r} does not exist (or use {BUILTIN_DATA!r})")
        if lower.endswith(".csv"):
            frame = pd.read_csv(data)
        elif lower.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(data)
        elif lower.endswith((".jsonl", ".ndjson")):
            frame = pd.read_json(data, lines=True)
        else:
            raise ConfigError(f"data file {data!r}: use a .csv, .parquet or .jsonl file")
    if rows < 0:
        raise ConfigError(f"rows={rows}: use the number of rows to run, or 0 for all")
    if rows:
        frame = frame.head(rows)
    return frame.reset_index(drop=True)


def panel(
    models: Sequence[str | Mapping[str, Any] | Model], *, api_base: str = "", api_key_env: str = ""
) -> list[Model]:
    """Models from ids or dicts; ``api_base``/``api_key_env`` apply to every non-offline one.

    ``api_key_env`` is the NAME of an environment variable: a key never goes in a parameter.
    """
    out = []
    for m in models:
        if isinstance(m, Model):
            out.append(m)
            continue
        options = dict(m) if isinstance(m, Mapping) else {"id": m}
        model_id = str(options.pop("id"))
        if not model_id.startswith(("sim/", "replay/")):
            if api_base:
                options.setdefault("api_base", api_base)
            if api_key_env:
                options.setdefault("api_key_env", api_key_env)
        out.append(Model(model_id, **options))
    return out
