"""Recordings files: JSON Lines of ``model``, ``prompt``, ``output`` (plus optional usage).

The format of ``../shared/data/gsm8k-recorded/recordings.jsonl.gz``, gzip or plain. Loaded
once per (path, size, mtime) and indexed by (model, exact prompt text) for replay.

>>> store = load(["answers.jsonl"])                        # doctest: +SKIP
>>> store.get("gpt-4o-2024-08-06", "What is 2+2?").output  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import json
import math
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RecordingsError

ENV_VAR = "NBTOOLKIT_RECORDINGS"
_OPTIONAL_NUMBERS = ("prompt_tokens", "completion_tokens", "cost_usd", "latency_s")


@dataclass(frozen=True)
class Recording:
    """One recorded reply."""

    model: str
    prompt: str
    output: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    latency_s: float | None = None


class RecordingStore:
    """Recorded replies indexed by (model name, exact prompt)."""

    def __init__(self, paths: Sequence[Path], records: Iterable[Recording]) -> None:
        self.paths = tuple(paths)
        self._index: dict[tuple[str, str], Recording] = {}
        for record in records:
            # The first recording of a (model, prompt) wins, as a re-run would have hit it.
            self._index.setdefault((record.model, record.prompt), record)
        self.models = frozenset(model for model, _ in self._index)

    def get(self, model: str, prompt: str) -> Recording | None:
        return self._index.get((model, prompt))

    def __len__(self) -> int:
        return len(self._index)

    @property
    def key(self) -> str:
        return os.pathsep.join(str(p) for p in self.paths)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a plain or gzip file, decoded line by line, so that a
    byte that is not UTF-8, a binary file or a gzip cut short is named with its line."""
    with path.open("rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    opener: Any = gzip.open if gz else open
    number = 0
    try:
        with opener(path, "rb") as fh:
            # Text never holds a NUL byte; images, pickles, parquet and zip files do early on.
            binary = b"\x00" in fh.peek(8192)[:8192]
            for number, data in enumerate(fh, start=1):
                where = f"{path}:{number}"
                if binary or b"\x00" in data:
                    raise RecordingsError(
                        f"{where}: a binary file, not JSON Lines text: pass a .jsonl or "
                        ".jsonl.gz file of recordings"
                    )
                try:
                    yield number, data.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise RecordingsError(
                        f"{where}: not UTF-8 text (byte {data[exc.start : exc.start + 1]!r} at "
                        f"column {exc.start + 1}; a latin-1 file?): save the recordings as UTF-8"
                    ) from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise RecordingsError(
            f"{path}:{number + 1}: the gzip data is cut short or damaged ({exc}): "
            "write or download the file again"
        ) from None


def read(path: Path) -> Iterator[Recording]:
    """Parse one file, raising ``RecordingsError`` with file and line for a bad line."""
    try:
        for number, line in _lines(path):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordingsError(f"{where}: not valid JSON ({exc.msg})") from None
            yield _record(obj, where)
    except OSError as exc:
        raise RecordingsError(f"cannot read recordings {path}: {exc.strerror or exc}") from None


def _record(obj: Any, where: str) -> Recording:
    if not isinstance(obj, dict):
        raise RecordingsError(f"{where}: each line must be a JSON object")
    for field in ("model", "prompt", "output"):
        if not isinstance(obj.get(field), str):
            raise RecordingsError(f"{where}: '{field}' must be a string")
    numbers: dict[str, Any] = {}
    for field in _OPTIONAL_NUMBERS:
        value = obj.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise RecordingsError(f"{where}: '{field}' must be a number")
        # JSON readers accept NaN and Infinity; a replayed count, price or time must be a
        # real one, or every total it enters is wrong (leave the field out when unknown).
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise RecordingsError(
                f"{where}: '{field}' is {value}; it must be a finite number >= 0 "
                "(leave it out when unknown)"
            )
        if field.endswith("_tokens") and value is not None and value != int(value):
            raise RecordingsError(f"{where}: '{field}' is {value}; a token count is a whole number")
        numbers[field] = value
    return Recording(obj["model"], obj["prompt"], obj["output"], **numbers)


_LOADED: dict[tuple[tuple[str, int, float], ...], RecordingStore] = {}
_BY_KEY: dict[str, RecordingStore] = {}


def resolve_paths(recordings: str | os.PathLike[str] | Sequence[Any] | None) -> list[Path]:
    """The recordings files to use: the argument, else ``$NBTOOLKIT_RECORDINGS``."""
    if recordings is None:
        env = os.environ.get(ENV_VAR, "")
        raw: list[Any] = [p for p in env.split(os.pathsep) if p]
    elif isinstance(recordings, (str, os.PathLike)):
        raw = [recordings]
    else:
        raw = list(recordings)
    paths = [Path(p).expanduser() for p in raw]
    for path in paths:
        if path.is_dir():
            raise RecordingsError(
                f"recordings={str(path)!r} is a folder: give the recordings file(s) in it, "
                f"e.g. sorted(Path({str(path)!r}).glob('*.jsonl*'))"
            )
        if not path.is_file():
            raise RecordingsError(f"recordings file not found: {path}")
    return paths


def load(paths: Sequence[Path]) -> RecordingStore:
    """Load and index ``paths`` (memoised while the files are unchanged)."""
    stamp = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime) for p in paths)
    store = _LOADED.get(stamp)
    if store is None:
        records = [r for path in paths for r in read(path)]
        store = RecordingStore(paths, records)
        _LOADED.clear()  # keep one set in memory; recordings can be large
        _BY_KEY.clear()
        _LOADED[stamp] = store
        _BY_KEY[store.key] = store
    return store


def loaded(key: str) -> RecordingStore | None:
    """A store already loaded for this run, by its key (no file system access per call)."""
    return _BY_KEY.get(key)


def write(records: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> int:
    """Write recordings (gzip when the name ends in .gz); returns how many were written."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    count = 0
    with opener(path, "wt", encoding="utf-8") as fh:  # type: ignore[operator]
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
