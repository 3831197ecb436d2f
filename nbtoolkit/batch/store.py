"""Where a batch job lives between kernels: tables of their own in the cache database.

``batch_jobs`` holds a job's run arguments; ``batch_parts`` one row per provider batch (its
model, batch id, status, counts; never a key); ``batch_requests`` one row per request line:
its ``custom_id``, the call it answers ``(row, position, sample)``, its cache key, and once
collected its reply or the provider's reason it failed.
"""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache import cache_dir, connect
from ..errors import CacheError, ConfigError, redact

__all__ = ["JobStore", "Part", "Request", "store_path"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS batch_jobs (
        id TEXT PRIMARY KEY, created REAL NOT NULL, options BLOB NOT NULL,
        unstored TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS batch_parts (
        job TEXT NOT NULL, part INTEGER NOT NULL, model TEXT NOT NULL, target TEXT NOT NULL,
        batch_id TEXT, file_id TEXT, status TEXT NOT NULL, total INTEGER NOT NULL,
        completed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
        error TEXT, collected INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL,
        PRIMARY KEY (job, part)
    )""",
    """CREATE TABLE IF NOT EXISTS batch_requests (
        job TEXT NOT NULL, custom_id TEXT NOT NULL, part INTEGER NOT NULL,
        row INTEGER NOT NULL, position INTEGER NOT NULL, sample INTEGER NOT NULL,
        key TEXT NOT NULL, output TEXT, error TEXT, prompt_tokens INTEGER,
        completion_tokens INTEGER, cost_usd REAL, live_cost_usd REAL, prompt TEXT,
        live INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (job, custom_id)
    )""",
)


def store_path(cache_path: str | os.PathLike[str] | None) -> Path:
    """The database a job is kept in: the run's cache file, else the default one."""
    return Path(cache_path) if cache_path is not None else cache_dir() / "cache.sqlite"


@dataclass
class Part:
    """One provider batch of a job."""

    part: int
    model: str  # the model's label
    target: dict[str, str]  # provider, api_base, wire model: never the key
    batch_id: str | None
    file_id: str | None
    status: str
    total: int
    completed: int = 0
    failed: int = 0
    error: str | None = None
    collected: bool = False
    updated: float = 0.0  # when the store last wrote it (time.time())


@dataclass
class Request:
    """One request line: the call it answers and, once collected, what became of it."""

    custom_id: str
    part: int
    row: int
    position: int
    sample: int
    key: str
    output: str | None = None
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    live_cost_usd: float | None = None
    prompt: str = ""
    live: bool = False  # sent live at the next result() (retry_failed(live=True))

    @property
    def collected(self) -> bool:
        return self.output is not None or self.error is not None


class JobStore:
    """The batch tables of one SQLite file; safe across threads and processes (WAL)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = store_path(path)
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, _SCHEMA, "the batch job store")
            self._local.conn = conn
        return conn

    def _run(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        try:
            return self._conn().execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as exc:
            raise CacheError(f"the batch job store at {self.path}: {exc}") from None

    # -- jobs --------------------------------------------------------------------------

    def add_job(self, job: str, options: dict[str, Any]) -> list[str]:
        """Store a job's run arguments; returns the names of those that could not be stored
        (a lambda as extract=): ``attach`` then asks for them again."""
        kept: dict[str, Any] = {}
        unstored: list[str] = []
        for name, value in options.items():
            try:
                pickle.dumps(value)
            except Exception:
                unstored.append(name)
                continue
            if (name in _SECRET_FIELDS and value) or _holds_secret(value):
                unstored.append(name)  # never on disk: attach asks for it again
                continue
            kept[name] = value
        self._run(
            "INSERT INTO batch_jobs VALUES (?, ?, ?, ?)",
            (job, time.time(), pickle.dumps(kept), json.dumps(unstored)),
        )
        return unstored

    def job(self, job: str) -> tuple[dict[str, Any], list[str]]:
        rows = self._run("SELECT options, unstored FROM batch_jobs WHERE id = ?", (job,))
        if not rows:
            raise ConfigError(
                f"no batch job {job!r} in {self.path}: check the id (job.id), and give the "
                "same cache_path= as when it was submitted"
            )
        # Our own file, written by add_job: the same trust as the cache beside it.
        return pickle.loads(rows[0][0]), json.loads(rows[0][1])  # noqa: S301

    # -- parts -------------------------------------------------------------------------

    def add_part(self, job: str, part: Part) -> None:
        self._run(
            "INSERT INTO batch_parts (job, part, model, target, batch_id, file_id, status, "
            "total, error, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job,
                part.part,
                part.model,
                json.dumps(part.target),
                part.batch_id,
                part.file_id,
                part.status,
                part.total,
                part.error,
                time.time(),
            ),
        )

    def update_part(self, job: str, part: Part) -> None:
        self._run(
            "UPDATE batch_parts SET batch_id = ?, file_id = ?, status = ?, completed = ?, "
            "failed = ?, error = ?, collected = ?, updated = ? WHERE job = ? AND part = ?",
            (
                part.batch_id,
                part.file_id,
                part.status,
                part.completed,
                part.failed,
                None if part.error is None else redact(part.error),
                int(part.collected),
                time.time(),
                job,
                part.part,
            ),
        )

    def parts(self, job: str) -> list[Part]:
        rows = self._run(
            "SELECT part, model, target, batch_id, file_id, status, total, completed, failed, "
            "error, collected, updated FROM batch_parts WHERE job = ? ORDER BY part",
            (job,),
        )
        return [
            Part(
                r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9], bool(r[10])
            )
            for r in rows
        ]

    # -- requests ----------------------------------------------------------------------

    def _many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        # One transaction: thousands of lines are one write, and all or none of them land.
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise CacheError(f"the batch job store at {self.path}: {exc}") from None

    def add_requests(self, job: str, requests: list[Request]) -> None:
        self._many(
            "INSERT OR REPLACE INTO batch_requests (job, custom_id, part, row, position, "
            "sample, key, prompt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (job, r.custom_id, r.part, r.row, r.position, r.sample, r.key, redact(r.prompt))
                for r in requests
            ],
        )

    def record(self, job: str, requests: list[Request]) -> None:
        """Store what became of collected requests (replies redacted, like the cache's)."""
        self._many(
            "UPDATE batch_requests SET output = ?, error = ?, prompt_tokens = ?, "
            "completion_tokens = ?, cost_usd = ?, live_cost_usd = ?, part = ?, live = ? "
            "WHERE job = ? AND custom_id = ?",
            [
                (
                    None if r.output is None else redact(r.output),
                    None if r.error is None else redact(r.error),
                    r.prompt_tokens,
                    r.completion_tokens,
                    r.cost_usd,
                    r.live_cost_usd,
                    r.part,
                    int(r.live),
                    job,
                    r.custom_id,
                )
                for r in requests
            ],
        )

    def requests(self, job: str, part: int | None = None) -> list[Request]:
        where, args = ("AND part = ?", (job, part)) if part is not None else ("", (job,))
        rows = self._run(
            "SELECT custom_id, part, row, position, sample, key, output, error, prompt_tokens, "
            "completion_tokens, cost_usd, live_cost_usd, prompt, live FROM batch_requests "
            f"WHERE job = ? {where} "
            "ORDER BY row, position, sample",
            args,
        )
        return [
            Request(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
                r[11],
                prompt=r[12] or "",
                live=bool(r[13]),
            )
            for r in rows
        ]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


# Parameters whose values are credentials whatever they look like (the audit log keeps only
# their names, the cache their names with *** values).
_SECRET_FIELDS = frozenset({"extra_headers", "headers", "api_key"})


def _holds_secret(value: Any) -> bool:
    """True when ``value`` carries a credential: a header value, an api_key, or any text
    ``redact`` would hide (a key, a URL password)."""
    if isinstance(value, str):
        return redact(value) != value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        value = dump()
    if isinstance(value, dict):
        return any(
            (str(k) in _SECRET_FIELDS and bool(v)) or _holds_secret(v) for k, v in value.items()
        )
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_secret(v) for v in value)
    return False
