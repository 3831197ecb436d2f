"""The audit log: one JSON line per call, appended as each call finishes.

Each line holds the run id, time, model, parameters (never an API key), a hash of the
prompt, the output, usage, cost, latency, attempts and error. By default it is
``<cache dir>/audit.jsonl``; ``audit=False`` turns it off, ``audit="path.jsonl"`` moves it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from .errors import MIN_SECRET, redactor

# Header values may carry a token: the log keeps their names only.
_SECRET_PARAMS = {"api_key", "nbt_store", "extra_headers"}


# json.dumps(sort_keys=True, ensure_ascii=False), without making an encoder per prompt.
_PROMPT_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False)


def prompt_hash(messages: list[dict[str, Any]]) -> str:
    blob = _PROMPT_JSON.encode(messages)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class AuditWriteError(OSError):
    """The log could not take ``records`` records (a full disk, a folder in its place)."""

    def __init__(self, message: str, records: int) -> None:
        super().__init__(message)
        self.records = records


class AuditLog:
    """Appends call records to a JSON Lines file; thread-safe.

    Records are written in batches: when ``flush_every`` are waiting, when the oldest has
    waited ``flush_after_s`` (checked as each record arrives), and on ``flush()``, which a run
    calls as it ends, however it ends. A run of cache hits then costs one write per few
    hundred calls instead of one file opening per call; a hard kill can lose the last fraction
    of a second of the log, never an answer (the frames and the cache do not come from it).

    ``write`` and ``flush`` raise ``AuditWriteError`` (with the number of records lost) when
    the file cannot be written; the runner turns that into a warning.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, flush_every: int = 256, flush_after_s: float = 0.2
    ) -> None:
        self.path = Path(path)
        self.flush_every = flush_every
        self.flush_after_s = flush_after_s
        self._lock = threading.Lock()
        # Records to encode when written, or lines already encoded (``cached_lines``).
        self._pending: list[dict[str, Any] | bytes] = []
        self._oldest = 0.0

    def write(self, record: dict[str, Any]) -> None:
        """Queue ``record`` (encoded and redacted when written: the caller must not change it
        afterwards); write the queue when it is due."""
        now = time.monotonic()
        with self._lock:
            if not self._pending:
                self._oldest = now
            self._pending.append(record)
            due = len(self._pending) >= self.flush_every or now - self._oldest >= self.flush_after_s
        if due:
            self.flush()

    def write_many(self, records: Iterable[dict[str, Any] | bytes]) -> None:
        """``write`` each of ``records`` (or a line ``cached_lines`` encoded), read one at a
        time and written every ``flush_every``: thousands of records are never all held at
        once, which would cost the garbage collector more than writing them."""
        batch: list[dict[str, Any] | bytes] = []
        failed: AuditWriteError | None = None
        for record in records:
            if failed is not None:
                failed.records += 1  # not written either: counted, so the warning is true
                continue
            batch.append(record)
            if len(batch) >= self.flush_every:
                with self._lock:
                    self._pending.extend(batch)
                batch = []
                try:
                    self.flush()
                except AuditWriteError as exc:
                    failed = exc
        if failed is not None:
            raise failed
        now = time.monotonic()
        with self._lock:
            if batch and not self._pending:
                self._oldest = now
            self._pending.extend(batch)
            due = len(self._pending) >= self.flush_every or (
                self._pending and now - self._oldest >= self.flush_after_s
            )
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            if not pending:
                return
            hide = redactor()  # the environment's secrets read once per batch
            shared: dict[int, Any] = {}  # a params dict many records hold, made safe once
            data = b"".join(
                [r if isinstance(r, bytes) else _encode(r, hide, shared) for r in pending]
            )
            try:
                self._append(data)
            except OSError as exc:
                raise AuditWriteError(f"{self.path}: {exc.strerror or exc}", len(pending)) from exc

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        fd = os.open(self.path, flags, 0o644)
        try:
            # A line cut short by a crash or a full disk is ended first, so this record
            # starts on a line of its own and the next reader loses one line at most.
            size = os.fstat(fd).st_size
            if size and os.lseek(fd, size - 1, os.SEEK_SET) >= 0 and os.read(fd, 1) != b"\n":
                data = b"\n" + data
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"only {written} of {len(data)} bytes written (disk full?)")
        finally:
            os.close(fd)


# Fields the log makes itself (no secret can be in them), written as they are.
_OURS = frozenset({"run_id", "time", "row", "sample", "prompt_sha256", "attempts", "cached"})
_NUMBERS = frozenset({int, float, bool, type(None)})
# The fields of call_record's records besides ours: texts that may hold a secret, and numbers.
_TEXTS = ("model", "output", "error")
_MEASURES = ("prompt_tokens", "completion_tokens", "cost_usd", "latency_s", "ttft_s")
_RECORD = _OURS | {"params", *_TEXTS, *_MEASURES}


def _encode(
    record: dict[str, Any],
    hide: Callable[[str], str] | None = None,
    shared: dict[int, Any] | None = None,
) -> bytes:
    # Each value is redacted, not the whole line: the line's own keys ("run_id", ...) would
    # send every record through the key-shape scan, the slowest step of a cached call.
    hide = hide or redactor()
    if record.keys() == _RECORD:
        clean = _clean_record(record, hide, shared)
    else:
        clean = _clean_any(record, hide, shared)
    try:
        # orjson: a tenth of json's time per record, and NaN or infinity as null.
        return orjson.dumps(clean, default=str, option=orjson.OPT_APPEND_NEWLINE)
    except (TypeError, orjson.JSONEncodeError):
        pass
    # JSON has no NaN or infinity (json.dumps would write them): null, as orjson writes them.
    clean = {k: None if type(v) is float and not math.isfinite(v) else v for k, v in clean.items()}
    try:
        return (json.dumps(clean, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate in a reply: JSON's \u escapes keep the record whole and valid.
        return (json.dumps(clean, default=str) + "\n").encode("ascii")


def _clean_record(
    record: dict[str, Any], hide: Callable[[str], str], shared: dict[int, Any] | None
) -> dict[str, Any]:
    """``_clean_any`` for a record of ``call_record``'s fields, field by field by name: a
    run writes one per call."""
    clean = record.copy()
    for k in _TEXTS:
        clean[k] = _safe(record[k], hide)
    for k in _MEASURES:
        v = record[k]
        if type(v) not in _NUMBERS:
            clean[k] = _safe(v, hide)
    clean["params"] = _safe_params(record["params"], hide, shared)
    return clean


def _clean_any(
    record: dict[str, Any], hide: Callable[[str], str], shared: dict[int, Any] | None
) -> dict[str, Any]:
    """``record`` with every text but our own fields' redacted (``hide``)."""
    clean = record.copy()
    for k, v in record.items():
        kind = type(v)
        if kind in _NUMBERS or k in _OURS:
            continue  # a number as it is: orjson writes NaN as null (the json path below too)
        if kind is str:
            # Shorter than any secret redact hides, whole or in part: nothing to look for.
            if len(v) >= MIN_SECRET:
                clean[k] = hide(v)
        elif k == "params":
            clean[k] = _safe_params(v, hide, shared)
        else:
            clean[k] = _safe(v, hide)
    return clean


def _safe_params(params: Any, hide: Callable[[str], str], shared: dict[int, Any] | None) -> Any:
    if shared is None:
        return _safe(params, hide)
    # The records of one model share its params dict (see call_record): the dict is alive
    # for the whole batch, so its id names it while ``shared`` lives.
    found = shared.get(id(params))
    if found is None:
        found = shared[id(params)] = _safe(params, hide)
    return found


def _safe(value: Any, hide: Callable[[str], str]) -> Any:
    """``value`` with every string in it redacted (``hide``), and NaN and infinity (which
    JSON lacks) as null."""
    kind = type(value)
    if kind is str:
        # Shorter than any secret redact hides, whole or in part: nothing to look for.
        return hide(value) if len(value) >= MIN_SECRET else value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int or kind is bool or value is None:
        return value
    if isinstance(value, str):
        return hide(str(value))
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {_safe(str(k), hide): _safe(v, hide) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v, hide) for v in value]
    if isinstance(value, (int, float, bool)):
        return value
    return hide(str(value))


def read(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of an audit log, in order; a line that is not whole JSON (a write cut short
    by a crash or a full disk) is skipped, never an error."""
    records = []
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                record = json.loads(raw.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError and JSONDecodeError alike
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def loggable_params(params: dict[str, Any]) -> dict[str, Any]:
    """A call's parameters as the log keeps them: no key, and header names without values."""
    kept = {k: v for k, v in params.items() if k not in _SECRET_PARAMS}
    if "extra_headers" in params:
        kept["extra_headers"] = sorted(params["extra_headers"])
    return kept


def call_record(
    *,
    run_id: str,
    model: str,
    params: dict[str, Any],
    messages: list[dict[str, Any]],
    row: int,
    sample: int,
    outcome: Any,
    prompt_sha256: str | None = None,
    when: str | None = None,
    params_logged: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One call's record. ``prompt_sha256``, ``when`` (the local time, to the second) and
    ``params_logged`` (``loggable_params(params)``) may be given when the caller has them
    already: the same prompt goes to every model, the same parameters to all its calls."""
    return {
        "run_id": run_id,
        "time": when or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": model,
        "params": params_logged if params_logged is not None else loggable_params(params),
        "row": row,
        "sample": sample,
        "prompt_sha256": prompt_sha256 or prompt_hash(messages),
        "output": outcome.output,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "cost_usd": outcome.cost_usd,
        "latency_s": outcome.latency_s,
        "ttft_s": outcome.ttft_s,
        "attempts": outcome.attempts,
        "cached": outcome.cached,
        "error": outcome.error,
    }


def cached_record(
    *,
    run_id: str,
    model: str,
    row: int,
    sample: int,
    entry: Any,
    prompt_sha256: str,
    when: str,
    params_logged: dict[str, Any],
) -> dict[str, Any]:
    """The record ``call_record`` makes of a call the cache answered (``calls.from_entry``),
    made straight from the cache ``entry``: a cached re-run writes one per call."""
    cost, latency = entry.cost_usd, entry.latency_s
    return {
        "run_id": run_id,
        "time": when,
        "model": model,
        "params": params_logged,
        "row": row,
        "sample": sample,
        "prompt_sha256": prompt_sha256,
        "output": entry.output,
        "prompt_tokens": entry.prompt_tokens,
        "completion_tokens": entry.completion_tokens,
        "cost_usd": math.nan if cost is None else cost,
        "latency_s": math.nan if latency is None else latency,
        "ttft_s": math.nan,
        "attempts": 0,
        "cached": True,
        "error": None,
    }


# What cached_lines writes for each call: the model's id and logged parameters, the row,
# the sample, the prompt's hash, and the cache entry.
CachedHit = tuple[str, dict[str, Any], int, int, str, Any]


def cached_lines(*, run_id: str, when: str, hits: Iterable[CachedHit]) -> Iterator[bytes]:
    """The line ``_encode(cached_record(...))`` writes for each call the cache answered,
    made faster: the part every call of a model shares (run, time, model, parameters) is
    encoded once, and only the call's own fields per call. Lazy: one line at a time."""
    hide = redactor()  # the environment's secrets read once for all the lines
    shared: dict[int, Any] = {}
    heads: dict[tuple[str, int], bytes | None] = {}
    for model, params, row, sample, sha, entry in hits:
        head = heads.get((model, id(params)), b"")
        if head == b"":
            head = heads[(model, id(params))] = _head(run_id, when, model, params, hide, shared)
        tail = None if head is None else _tail(row, sample, sha, entry, hide)
        if head is None or tail is None:  # something orjson cannot write: the usual way
            record = cached_record(
                run_id=run_id,
                model=model,
                row=row,
                sample=sample,
                entry=entry,
                prompt_sha256=sha,
                when=when,
                params_logged=params,
            )
            yield _encode(record, hide, shared)
            continue
        yield head + tail


def _head(
    run_id: str,
    when: str,
    model: str,
    params: dict[str, Any],
    hide: Callable[[str], str],
    shared: dict[int, Any],
) -> bytes | None:
    """The shared start of a model's cached lines, up to the comma before "row"."""
    head = {"run_id": run_id, "time": when, "model": _safe(model, hide)}
    head["params"] = _safe_params(params, hide, shared)
    try:
        return orjson.dumps(head, default=str)[:-1] + b","
    except (TypeError, orjson.JSONEncodeError):
        return None


def _tail(row: int, sample: int, sha: str, entry: Any, hide: Callable[[str], str]) -> bytes | None:
    """A cached line's own fields, from "row" to the end of the line."""
    output = _safe(entry.output, hide)
    tokens, more = entry.prompt_tokens, entry.completion_tokens
    cost, latency = entry.cost_usd, entry.latency_s
    numbers = _NUMBERS
    if not (
        type(tokens) in numbers
        and type(more) in numbers
        and type(cost) in numbers
        and type(latency) in numbers
    ):
        tokens, more, cost, latency = (_safe(v, hide) for v in (tokens, more, cost, latency))
    tail = {
        "row": row,
        "sample": sample,
        "prompt_sha256": sha,
        "output": output,
        "prompt_tokens": tokens,
        "completion_tokens": more,
        "cost_usd": cost,
        "latency_s": latency,
        "ttft_s": None,
        "attempts": 0,
        "cached": True,
        "error": None,
    }
    try:
        return orjson.dumps(tail, default=str, option=orjson.OPT_APPEND_NEWLINE)[1:]
    except (TypeError, orjson.JSONEncodeError):
        return None
