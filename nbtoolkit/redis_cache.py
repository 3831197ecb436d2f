"""The cache shared by a team: the same keys, modes and entries as the SQLite cache, on Redis.

``NBTOOLKIT_CACHE_URL=redis://host:6379/0`` (or ``cache_url=``) makes every run read and
write here, so one person's run answers another's re-run with no call. Keys are
``nbtoolkit:<namespace>:call:<sha256>`` (``NBTOOLKIT_CACHE_NAMESPACE``, default
``default``), so projects on one server stay apart. Each entry is one JSON value written by
one ``SET``: a writer killed mid-run leaves whole entries or none, never part of one.

When Redis cannot be reached, a run goes on without the cache and says so in one warning
line (``res.warnings``: the replies were not cached); ``replay-only`` runs make no call, so
their rows are errors naming the server. Falling back to a local file instead would split
the team's record without anyone noticing.

Uses the ``redis`` client library (redis-py), imported when a Redis cache is opened.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .cache import Entry, export_entries
from .errors import CacheError, ConfigError, redact

__all__ = ["ENV_NAMESPACE", "ENV_URL", "RedisCache"]

ENV_URL = "NBTOOLKIT_CACHE_URL"
ENV_NAMESPACE = "NBTOOLKIT_CACHE_NAMESPACE"
_BATCH = 500


def shown_url(url: str) -> str:
    """The URL without its password, for messages and ``info()``."""
    parts = urlsplit(url)
    if parts.password is None:
        return redact(url)  # ?password=... (redis-py reads it there too)
    host = parts.hostname or ""
    netloc = (f"{parts.username}:***@" if parts.username else ":***@") + host
    if parts.port:
        netloc += f":{parts.port}"
    return redact(urlunsplit(parts._replace(netloc=netloc)))


class RedisCache:
    """Cached replies on a Redis server; the interface of ``nbtoolkit.cache.Cache``."""

    def __init__(self, url: str, *, namespace: str | None = None, timeout_s: float = 5.0) -> None:
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"cache URL {shown_url(url)!r} is not a Redis URL: use redis://host:6379/0"
            )
        self.url = url
        self.path = shown_url(url)  # what messages and info() show: never the password
        self.namespace = namespace or os.environ.get(ENV_NAMESPACE) or "default"
        self.prefix = f"nbtoolkit:{self.namespace}:call:"
        self.timeout_s = timeout_s
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
                decode_responses=True,
            )
        return self._client

    def _fail(self, doing: str, exc: BaseException) -> CacheError:
        reason = redact(str(exc)) or type(exc).__name__
        return CacheError(f"cannot {doing} the Redis cache at {self.path}: {reason}")

    def get_many(self, keys: Iterable[str]) -> dict[str, Entry]:
        """The entries found for ``keys`` (``MGET`` in batches)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Entry] = {}
        try:
            for start in range(0, len(keys), _BATCH):
                chunk = keys[start : start + _BATCH]
                values = self._redis().mget([self.prefix + k for k in chunk])
                for value in values:
                    entry = _entry(value)
                    if entry is not None:
                        found[entry.key] = entry
        except Exception as exc:
            raise self._fail("read", exc) from None
        return found

    def put(self, entry: Entry) -> None:
        # The one writer of shared entries: no secret goes in, whatever the prompt held.
        entry = entry._replace(prompt=redact(entry.prompt), output=redact(entry.output))
        value = json.dumps({**entry._asdict(), "created": time.time()}, ensure_ascii=False)
        try:
            self._redis().set(self.prefix + entry.key, value)
        except Exception as exc:
            raise self._fail("write to", exc) from None

    def _values(self) -> Iterator[str]:
        client = self._redis()
        batch: list[str] = []
        for key in client.scan_iter(match=self.prefix + "*", count=_BATCH):
            batch.append(key)
            if len(batch) >= _BATCH:
                yield from (v for v in client.mget(batch) if v is not None)
                batch = []
        if batch:
            yield from (v for v in client.mget(batch) if v is not None)

    def entries(self) -> Iterator[Entry]:
        """Every entry of this namespace, oldest first."""
        try:
            records = [json.loads(v) for v in self._values()]
        except Exception as exc:
            raise self._fail("read", exc) from None
        records.sort(key=lambda r: r.get("created", 0.0))
        for record in records:
            entry = _entry(record)
            if entry is not None:
                yield entry

    def info(self) -> dict[str, Any]:
        try:
            count = sum(1 for _ in self._redis().scan_iter(match=self.prefix + "*", count=_BATCH))
        except Exception as exc:
            raise self._fail("read", exc) from None
        return {"path": self.path, "namespace": self.namespace, "entries": count, "bytes": None}

    def clear(self) -> int:
        """Delete every entry of this namespace (other namespaces stay); returns how many."""
        client = self._redis()
        removed = 0
        try:
            keys = list(client.scan_iter(match=self.prefix + "*", count=_BATCH))
            for start in range(0, len(keys), _BATCH):
                removed += int(client.delete(*keys[start : start + _BATCH]))
        except Exception as exc:
            raise self._fail("clear", exc) from None
        return removed

    def export(self, path: str | os.PathLike[str]) -> int:
        """Write every entry as a recordings file that ``replay/<model>`` can answer from."""
        return export_entries(self.entries(), path)

    def integrity_ok(self) -> bool:
        """True when every value under this namespace is a whole entry."""
        try:
            return all(_entry(v) is not None for v in self._values())
        except Exception as exc:
            raise self._fail("read", exc) from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _entry(value: Any) -> Entry | None:
    """An ``Entry`` from a stored value (text or already parsed); None when it is not one."""
    if value is None:
        return None
    try:
        record = json.loads(value) if isinstance(value, str) else value
        return Entry(
            key=str(record["key"]),
            model=str(record["model"]),
            prompt=str(record["prompt"]),
            output=str(record["output"]),
            prompt_tokens=record.get("prompt_tokens"),
            completion_tokens=record.get("completion_tokens"),
            cost_usd=record.get("cost_usd"),
            latency_s=record.get("latency_s"),
        )
    except (ValueError, KeyError, TypeError):
        return None
