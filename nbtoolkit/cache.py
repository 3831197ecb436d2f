"""The on-disk record of live calls, for re-runs that cost nothing and reports that replay.

One SQLite file (WAL mode, so several processes can write at once) under the user's cache
folder, or ``$NBTOOLKIT_CACHE_DIR``. An entry is keyed by a hash of the model, the messages,
every parameter (provider-specific ones too) and the sample index. Errors are never cached.

Modes (``cache=``): ``"use"`` reads then writes, ``"refresh"`` only writes, ``"off"`` neither,
``"replay-only"`` only reads and makes no call at all (a miss is an error row).

>>> from nbtoolkit.cache import Cache
>>> Cache().info()                                   # doctest: +SKIP
{'path': '/home/me/.cache/nbtoolkit/cache.sqlite', 'entries': 120, 'bytes': 98304}
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .errors import CacheError, ConfigError, redact

MODES = ("use", "refresh", "off", "replay-only")
ENV_DIR = "NBTOOLKIT_CACHE_DIR"
# Parameters that change how a call is made, not what it answers.
_NOT_IN_KEY = {"api_key", "timeout", "max_retries", "metadata", "nbt_store"}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"cache={mode!r} is not a cache mode: use one of {', '.join(MODES)}")
    return mode


def cache_dir() -> Path:
    """``$NBTOOLKIT_CACHE_DIR``, else the platform's per-user cache folder."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "nbtoolkit"


def call_key(
    model_id: str,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    sample: int,
    label: str | None = None,
) -> str:
    """The cache key of one call: every input that can change the answer.

    ``label`` tells apart copies of one model asked as separate panel members
    (``Model("x", name="copy1")``); it is left out when it is the id, so keys stay stable.
    """
    kept = {k: v for k, v in params.items() if k not in _NOT_IN_KEY}
    record: dict[str, Any] = {
        "model": model_id,
        "messages": messages,
        "params": kept,
        "sample": sample,
    }
    if label is not None and label != model_id:
        record["label"] = label
    blob = _dumps(record)
    # surrogatepass: a lone surrogate in a reply being repaired still gets a stable key.
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


class KeyMaker:
    """``call_key`` for many calls that share their messages and parameters objects (a run's
    plan: one messages list per row, one parameters dict per model and sample), every key
    the same string ``call_key`` gives.

    The hashed text is ``{"messages": ..., "model": ..., "params": ..., "sample": ...}``
    (``call_key``'s record, keys sorted): the part up to the messages is hashed once for the
    calls of a row, which come one after another, and each model's rest is encoded once.
    """

    def __init__(self) -> None:
        # The last row's messages, the text before them, and the hash up to and with them.
        self._row: tuple[Any, str, Any] | None = None
        # By (model id, label, parameters object, sample): the parameters object (kept
        # alive, so its id is not reused), the text before the messages, the encoded rest.
        self._tails: dict[tuple[str, str | None, int, Any, type], tuple[Any, str, bytes]] = {}

    def key(
        self,
        model_id: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        sample: int,
        label: str | None = None,
    ) -> str:
        # The sample's type too: True == 1 == 1.0, but each is written its own way.
        memo = (model_id, label, id(params), sample, type(sample))
        found = self._tails.get(memo)
        if found is None or found[0] is not params:
            found = self._tails[memo] = _parts(model_id, params, sample, label)
        row = self._row
        if row is None or row[0] is not messages or row[1] != found[1]:
            text = f'{found[1]}"messages": {_dumps(messages)}, '
            row = self._row = (messages, found[1], hashlib.sha256(_utf8(text)))
        digest = row[2].copy()
        digest.update(found[2])
        return str(digest.hexdigest())


def _parts(
    model_id: str, params: dict[str, Any], sample: int, label: str | None
) -> tuple[Any, str, bytes]:
    """A call's parts of call_key's text but its messages: ``(params, the text before the
    messages, the rest encoded)``."""
    head = "{"
    if label is not None and label != model_id:
        head = f'{{"label": {_dumps(label)}, '
    # json.dumps of an int is its str (a bool or a subclass would not be: left to json).
    number = str(sample) if type(sample) is int else _dumps(sample)
    shown = {k: v for k, v in params.items() if k not in _NOT_IN_KEY}
    rest = f'"model": {_dumps(model_id)}, "params": {_dumps(shown)}, "sample": {number}}}'
    return params, head, _utf8(rest)


def _dumps(value: Any) -> str:
    """A value as ``call_key`` encodes it (``json.dumps`` with these options, without making
    an encoder per call: that was most of the time of encoding a short prompt)."""
    return _ENCODER.encode(value)


def _utf8(text: str) -> bytes:
    # surrogatepass: a lone surrogate in a reply being repaired still gets a stable key.
    return text.encode("utf-8", "surrogatepass")


def _jsonable(value: Any) -> Any:
    # A pydantic class as response_format is keyed by its schema, so changing a field is a miss.
    schema = getattr(value, "model_json_schema", None)
    if isinstance(value, type) and callable(schema):
        return schema()
    return str(value)


class Entry(NamedTuple):
    """One cached reply. A named tuple: a cached re-run reads one per call, and a tuple is
    made several times faster than a frozen dataclass."""

    key: str
    model: str
    prompt: str
    output: str
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    latency_s: float | None


_ENCODER = json.JSONEncoder(sort_keys=True, default=_jsonable, ensure_ascii=False)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    output TEXT NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost_usd REAL,
    latency_s REAL,
    created REAL NOT NULL
)
"""


def _retry_locked(statement: Any, seconds: float = 30.0) -> Any:
    """Run a statement, waiting out "database is locked": switching to WAL and creating the
    table take locks that SQLite's busy timeout does not wait for when two processes start
    at once."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return statement()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def connect(path: Path, schema: Sequence[str], what: str) -> sqlite3.Connection:
    """A connection to the SQLite file ``path`` in WAL mode, its ``schema`` statements run
    (waiting out the locks two processes starting at once take); ``CacheError`` naming
    ``what`` ("the cache") when it cannot be opened. Shared by the cache and the batch job
    store, which live in the same file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        for statement in schema:
            _retry_locked(lambda statement=statement: conn.execute(statement))
    except (sqlite3.Error, OSError) as exc:
        raise CacheError(f"cannot open {what} at {path}: {exc}") from None
    return conn


class Cache:
    """A SQLite store of successful replies; safe across threads and processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else cache_dir() / "cache.sqlite"
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, [_SCHEMA], "the cache")
            self._local.conn = conn
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, Entry]:
        """The entries found for ``keys``, in one pass (re-runs are lookups, not calls)."""
        # In order: neighbouring keys share the pages of SQLite's index, read once.
        keys = sorted(set(keys))
        found: dict[str, Entry] = {}
        conn = self._conn()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            try:
                rows = conn.execute(
                    "SELECT key, model, prompt, output, prompt_tokens, completion_tokens, "
                    f"cost_usd, latency_s FROM calls WHERE key IN ({marks})",
                    chunk,
                ).fetchall()
            except sqlite3.Error as exc:
                raise CacheError(f"cannot read the cache at {self.path}: {exc}") from None
            make = Entry._make
            for row in rows:
                found[row[0]] = make(row)
        return found

    def put(self, entry: Entry) -> None:
        # The one writer of the cache file: no secret goes in, whatever the prompt held.
        entry = entry._replace(prompt=redact(entry.prompt), output=redact(entry.output))
        try:
            self._conn().execute(
                "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.key,
                    entry.model,
                    entry.prompt,
                    entry.output,
                    entry.prompt_tokens,
                    entry.completion_tokens,
                    entry.cost_usd,
                    entry.latency_s,
                    time.time(),
                ),
            )
        except sqlite3.Error as exc:
            raise CacheError(f"cannot write to the cache at {self.path}: {exc}") from None
        except UnicodeEncodeError:
            # SQLite text is UTF-8: a lone surrogate ("\ud800") in a reply cannot be stored.
            raise CacheError(
                f"cannot write to the cache at {self.path}: the reply holds text that is not "
                "valid Unicode (a lone surrogate)"
            ) from None

    def entries(self) -> Iterator[Entry]:
        cursor = self._conn().execute(
            "SELECT key, model, prompt, output, prompt_tokens, completion_tokens, cost_usd, "
            "latency_s FROM calls ORDER BY created"
        )
        for row in cursor:
            yield Entry(*row)

    def info(self) -> dict[str, Any]:
        count = self._conn().execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        size = self.path.stat().st_size if self.path.exists() else 0
        return {"path": str(self.path), "entries": count, "bytes": size}

    def clear(self) -> int:
        """Delete every entry; returns how many there were."""
        conn = self._conn()
        count = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        conn.execute("DELETE FROM calls")
        conn.execute("VACUUM")
        return int(count)

    def export(self, path: str | os.PathLike[str]) -> int:
        """Write every entry as a recordings file that ``replay/<model>`` can answer from."""
        return export_entries(self.entries(), path)

    def integrity_ok(self) -> bool:
        return self._conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def export_entries(entries: Iterable[Entry], path: str | os.PathLike[str]) -> int:
    """Write cache entries as a recordings file (``replay/<model>`` answers from it); returns
    how many were written. Shared by every cache backend."""
    from .providers import recordings

    def records() -> Iterator[dict[str, Any]]:
        for e in entries:
            record: dict[str, Any] = {"model": e.model, "prompt": e.prompt, "output": e.output}
            for field in ("prompt_tokens", "completion_tokens", "cost_usd", "latency_s"):
                value = getattr(e, field)
                if value is not None:
                    record[field] = value
            yield record

    return recordings.write(records(), path)
