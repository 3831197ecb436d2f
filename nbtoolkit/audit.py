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
from pathlib import Path
from typing import Any

from .errors import redact

# Header values may carry a token: the log keeps their names only.
_SECRET_PARAMS = {"api_key", "nbt_store", "extra_headers"}


def prompt_hash(messages: list[dict[str, Any]]) -> str:
    blob = json.dumps(messages, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class AuditLog:
    """Appends call records to a JSON Lines file; thread-safe, one write per line.

    Raises ``OSError`` when the file cannot be written; the runner turns that into a warning.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = redact(json.dumps(_clean(record), ensure_ascii=False, default=str))
        try:
            data = (line + "\n").encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate in a reply: JSON's \u escapes keep the record whole and valid.
            data = (redact(json.dumps(_clean(record), default=str)) + "\n").encode("ascii")
        try:
            self._append(data)
        except OSError as exc:
            raise OSError(f"{self.path}: {exc.strerror or exc}") from exc

    def _append(self, data: bytes) -> None:
        with self._lock:
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


def call_record(
    *,
    run_id: str,
    model: str,
    params: dict[str, Any],
    messages: list[dict[str, Any]],
    row: int,
    sample: int,
    outcome: Any,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": model,
        "row": row,
        "sample": sample,
        "params": {k: v for k, v in params.items() if k not in _SECRET_PARAMS}
        | ({"extra_headers": sorted(params["extra_headers"])} if "extra_headers" in params else {}),
        "prompt_sha256": prompt_hash(messages),
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


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN: an unknown cost is written as null.
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
