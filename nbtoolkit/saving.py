"""A run kept on disk: ``res.save(path)`` and ``nbt.load(path)`` give back an equal result.

A saved run is a folder (``run.nbt/``) that pandas opens without nbtoolkit:

- ``outputs.jsonl``, ``consensus.jsonl``, ``strategy_calls.jsonl``, ``field_agreement.jsonl``:
  one JSON object per row (``pd.read_json("run.nbt/outputs.jsonl", lines=True)``);
- ``result.json``: the run itself (id, models, strategy, prompt, wall time, warnings, the
  manifest in ``meta``) and each frame's column names, dtypes and index, so ``load`` restores
  the frames exactly (nullable integers, booleans, an answer that is a number, a string or a
  dict, non-string column names).

JSON Lines rather than Parquet: the ``answer`` column holds numbers, strings and dicts side by
side (Parquet needs one type per column), and it needs no extra dependency. Nothing secret is
in a result (keys are never in the frames or the manifest), so nothing secret is written.
"""

from __future__ import annotations

import datetime
import decimal
import importlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .errors import ConfigError

if TYPE_CHECKING:
    from .results import RunResult

__all__ = ["FORMAT", "read", "save"]

#: Written into ``result.json``; ``load`` refuses a folder without it.
FORMAT = "nbtoolkit-run/1"
_FRAMES = ("outputs", "consensus", "strategy_calls", "field_agreement")
_MANIFEST = "result.json"


def save(result: RunResult, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``result`` to the folder ``path`` (created; ``run.nbt`` by convention).

    Returns the folder. Raises ``ConfigError`` if ``path`` exists and ``overwrite`` is False,
    or if a frame holds a value JSON cannot represent (the message names the column).
    """
    folder = Path(path)
    if folder.exists() and not overwrite:
        raise ConfigError(
            f"cannot save to {folder}: it exists; pass overwrite=True or choose another path"
        )
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"cannot save to {folder}: it is a file, and a saved run is a folder")
    folder.mkdir(parents=True, exist_ok=True)
    frames: dict[str, Any] = {}
    for name in _FRAMES:
        frame: pd.DataFrame = getattr(result, name)
        frames[name] = _describe(frame)
        lines = (_dumps(record, name) for record in _records(frame))
        (folder / f"{name}.jsonl").write_text("".join(line + "\n" for line in lines))
    manifest = {
        "format": FORMAT,
        "run_id": result.run_id,
        "models": list(result.models),
        "strategy": result.strategy,
        "prompt": result.prompt,
        "wall_s": result.wall_s,
        "cancelled": result.cancelled,
        "simulated": list(result.simulated),
        "warnings": list(result.warnings),
        "meta": result.meta,
        "input_columns": [[k, v] for k, v in result.input_columns.items()],
        "frames": frames,
    }
    (folder / _MANIFEST).write_text(_dumps(_plain(manifest), "the run's record", indent=1) + "\n")
    return folder


def read(path: str | Path) -> dict[str, Any]:
    """The fields of the ``RunResult`` saved at ``path`` by ``save``: ``RunResult(**read(path))``
    is ``nbt.load(path)`` (in ``results``: this module never imports it back).

    Raises ``ConfigError`` when ``path`` is not a saved run (no ``result.json``, another
    format, or a frame file missing).
    """
    folder = Path(path)
    manifest_path = folder / _MANIFEST
    if not manifest_path.is_file():
        raise ConfigError(
            f"{folder} is not a saved run: it has no {_MANIFEST} (save one with res.save(path))"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{manifest_path} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ConfigError(
            f"{folder} is not a run saved by this version of nbtoolkit (format {found!r}, "
            f"expected {FORMAT!r})"
        )
    frames = {}
    for name in _FRAMES:
        file = folder / f"{name}.jsonl"
        if not file.is_file():
            raise ConfigError(f"{folder} is incomplete: {file.name} is missing")
        rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        frames[name] = _restore(rows, manifest["frames"][name])
    if "ttft_s" not in frames["outputs"].columns:
        # Saved before streaming existed: nothing was streamed, as NaN says.
        frames["outputs"]["ttft_s"] = float("nan")
    return dict(
        outputs=frames["outputs"],
        consensus=frames["consensus"],
        run_id=manifest["run_id"],
        models=list(manifest["models"]),
        strategy=manifest["strategy"],
        prompt=manifest["prompt"],
        wall_s=float(manifest["wall_s"]),
        cancelled=bool(manifest["cancelled"]),
        simulated=list(manifest["simulated"]),
        warnings=list(manifest["warnings"]),
        strategy_calls=frames["strategy_calls"],
        field_agreement=frames["field_agreement"],
        meta=manifest["meta"],
        input_columns={_key(k): v for k, v in manifest["input_columns"]},
    )


# --------------------------------------------------------------------------- frames


def _describe(frame: pd.DataFrame) -> dict[str, Any]:
    """What ``_restore`` needs beyond the rows: column names (any type), dtypes, index."""
    index = frame.index
    default = isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
    return {
        "columns": [_name(c) for c in frame.columns],
        "columns_dtype": str(frame.columns.dtype),
        "keys": _keys(frame),
        "dtypes": [str(t) for t in frame.dtypes],
        "index": None if default else [_plain(v) for v in index],
        "index_name": _plain(index.name),
        "index_dtype": str(index.dtype),
        # JSON has one null: where an object column holds NaN (not None), say where.
        "nan_rows": {
            str(i): nan
            for i, dtype in enumerate(frame.dtypes)
            if pd.api.types.is_object_dtype(dtype)
            and (nan := [r for r, v in enumerate(frame.iloc[:, i]) if _is_nan(v)])
        },
        # Answers of a schema run are pydantic objects: written as their fields, rebuilt from
        # their class on load when it can be found (else they stay dicts).
        "pydantic_rows": {
            str(i): found
            for i, dtype in enumerate(frame.dtypes)
            if pd.api.types.is_object_dtype(dtype) and (found := _pydantic_rows(frame.iloc[:, i]))
        },
    }


def _pydantic_rows(column: pd.Series) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for r, value in enumerate(column):
        if hasattr(value, "model_dump") and isinstance(value, _BaseModel()):
            cls = type(value)
            found.setdefault(f"{cls.__module__}:{cls.__qualname__}", []).append(r)
    return found


def _BaseModel() -> type:  # noqa: N802 - stands for the class
    from pydantic import BaseModel

    return BaseModel


def _find_class(path: str) -> Any:
    import sys

    module_name, _, qualname = path.partition(":")
    target: Any = sys.modules.get(module_name)
    if target is None:
        try:
            target = importlib.import_module(module_name)
        except Exception:
            return None
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target if isinstance(target, type) and issubclass(target, _BaseModel()) else None


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _keys(frame: pd.DataFrame) -> list[str]:
    """Each column's key in the lines: its name, so that pandas alone reads the file with
    named columns; its position where two names print alike (1 and "1": JSON keys are text)."""
    names = [str(c) for c in frame.columns]
    return names if len(set(names)) == len(names) else [str(i) for i in range(len(names))]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    columns = _keys(frame)
    return [
        dict(zip(columns, (_plain(v) for v in row), strict=True))
        for row in frame.itertuples(index=False, name=None)
    ]


def _restore(rows: list[dict[str, Any]], shape: dict[str, Any]) -> pd.DataFrame:
    names = [_key(c) for c in shape["columns"]]
    # Saved before names were used as keys: by position.
    keys = shape.get("keys") or [str(i) for i in range(len(names))]
    data = {i: [row.get(keys[i]) for row in rows] for i in range(len(names))}
    frame = pd.DataFrame(
        {i: pd.Series(values, dtype="object") for i, values in data.items()},
        index=pd.RangeIndex(len(rows)),
    )
    for i, dtype in enumerate(shape["dtypes"]):
        frame[i] = _as(frame[i], dtype)
    for i, rows_with_nan in shape.get("nan_rows", {}).items():
        frame.iloc[rows_with_nan, int(i)] = math.nan
    for i, classes in shape.get("pydantic_rows", {}).items():
        for path, positions in classes.items():
            cls = _find_class(path)
            if cls is None:
                continue  # the class is not defined here: its fields stay a dict
            for r in positions:
                frame.iat[r, int(i)] = cls.model_validate(frame.iat[r, int(i)])
    kind = shape.get("columns_dtype", "object")
    frame.columns = pd.Index(names, dtype=kind) if names else pd.RangeIndex(0)
    if shape.get("index") is not None:
        frame.index = pd.Index(shape["index"], dtype=shape.get("index_dtype"))
    frame.index.name = shape.get("index_name")
    return frame


def _as(column: pd.Series, dtype: str) -> pd.Series:
    if dtype == "object":
        return column.astype(object)
    if dtype in ("str", "string"):
        return column.astype(dtype)
    if dtype.startswith("datetime64"):
        return pd.to_datetime(column).astype(dtype)
    if dtype in ("bool", "boolean") or dtype.startswith(("int", "uint", "Int", "UInt")):
        return column.astype(dtype)
    if dtype.startswith(("float", "Float")):
        return column.map(lambda v: math.nan if v is None else v).astype(dtype)
    return column.astype(dtype)


# ------------------------------------------------------------------------- values


def _name(column: Any) -> Any:
    # A column name is kept with its type: 0 and "0" are different columns.
    return {"int": column} if isinstance(column, int) and not isinstance(column, bool) else column


def _key(name: Any) -> Any:
    return name["int"] if isinstance(name, dict) and set(name) == {"int"} else name


def _plain(value: Any) -> Any:
    """A value as JSON holds it: numpy scalars as Python ones, NaN and NA as null."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if not isinstance(value, (str, bytes)) and hasattr(value, "ndim"):  # numpy
        return _plain(value.item() if value.ndim == 0 else value.tolist())
    if isinstance(value, (pd.Timestamp, datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, _BaseModel()):
        return _plain(value.model_dump(mode="json"))  # type: ignore[attr-defined]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _dumps(value: Any, where: str, indent: int | None = None) -> str:
    def unknown(obj: Any) -> Any:
        if isinstance(obj, decimal.Decimal):
            return str(obj)
        if isinstance(obj, (set, frozenset)):
            return sorted(obj, key=str)
        raise ConfigError(
            f"cannot save {where}: a value of type {type(obj).__name__} ({str(obj)[:40]!r}) is "
            "not JSON; convert that column (e.g. df[col].astype(str)) before the run"
        )

    return json.dumps(value, default=unknown, allow_nan=False, indent=indent, ensure_ascii=False)
