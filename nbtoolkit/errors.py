"""Every exception nbtoolkit raises, in one tree.

::

    NbtoolkitError                  base of everything below
    ├── ConfigError (ValueError)    a user mistake in arguments: fix the call and re-run
    │   ├── TemplateError           a prompt names a variable that exists nowhere
    │   ├── ExtractorError          an unknown or malformed ``extract=`` spec
    │   ├── StrategyError           an unknown strategy or bad strategy options
    │   ├── ModelError              an unknown model id or bad ``Model`` options
    │   ├── MissingAPIKeyError      a provider needs an environment variable that is not set
    │   ├── RecordingsError         a recordings file is missing or malformed (file:line)
    │   └── ParameterError          a report parameter the template does not take, or a secret
    ├── ExtractionError             one answer could not be read out of one reply
    ├── CallError                   one provider call failed for good (after retries)
    ├── CacheError                  the on-disk cache could not be read or written
    ├── CellError                   a cell of a report notebook failed; the partial one is kept
    └── RunFailedError              every call of a run failed (or one did, with strict=True)

User mistakes are raised before any call is made, so nothing is spent or written.
Failures of single calls never raise: they become rows with their error in
``RunResult.outputs``. ``ExtractionError`` and ``CallError`` are what extractors and
providers raise internally; the runner turns them into those rows.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = [
    "CacheError",
    "CallError",
    "CellError",
    "ConfigError",
    "ExtractionError",
    "ExtractorError",
    "MissingAPIKeyError",
    "ModelError",
    "NbtoolkitError",
    "ParameterError",
    "RecordingsError",
    "RunFailedError",
    "StrategyError",
    "TemplateError",
    "redact",
]


class NbtoolkitError(Exception):
    """Base class of every error nbtoolkit raises."""


class ConfigError(NbtoolkitError, ValueError):
    """A mistake in the arguments of a call; the message says how to fix it."""


class TemplateError(ConfigError):
    """A prompt template names a variable that no row column or variable provides."""


class ExtractorError(ConfigError):
    """An ``extract=`` spec that names no known extractor."""


class StrategyError(ConfigError):
    """An unknown strategy, or a strategy given options it does not take."""


class ModelError(ConfigError):
    """An unknown model id, or options a model does not take."""


class MissingAPIKeyError(ConfigError):
    """A provider needs an environment variable (an API key) that is not set."""


class RecordingsError(ConfigError):
    """A recordings file that is missing or has a malformed line."""


class ParameterError(ConfigError):
    """A report parameter the template does not declare, of the wrong type, or a secret."""


class CellError(NbtoolkitError):
    """A cell of the report notebook raised (or the kernel died: ``cell`` is None); the
    partial notebook is kept at ``notebook``. ``cell`` is its execution count, ``In [cell]``."""

    def __init__(self, cell: int | None, ename: str, evalue: str, notebook: Path | str) -> None:
        where = f"cell {cell} failed" if cell is not None else "the kernel stopped"
        super().__init__(f"{where}: {ename}: {evalue}")
        self.cell, self.ename, self.evalue, self.notebook = cell, ename, evalue, notebook


class ExtractionError(NbtoolkitError):
    """An answer could not be read out of a model's reply."""


class CallError(NbtoolkitError):
    """A provider call that failed for good."""


class CacheError(NbtoolkitError):
    """The on-disk cache could not be opened, read or written."""


class RunFailedError(NbtoolkitError):
    """Every call of a run failed; ``.result`` holds the frames with each error."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


# Names of environment variables whose values must never be written anywhere.
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)


# Values of variables named by api_key_env=, whatever the variable is called.
_PROTECTED: set[str] = set()


def protect(value: str | None) -> None:
    """Never write ``value`` anywhere: ``redact`` will hide it from now on."""
    if value and len(value) >= 8:
        _PROTECTED.add(value)


def _secret_values() -> list[str]:
    values = [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8]
    values += list(_PROTECTED)
    # Longest first, so a key that contains another is replaced whole.
    return sorted(set(values), key=len, reverse=True)


def redact(text: str, extra: list[str] | None = None) -> str:
    """Replace every secret-looking environment value (and ``extra``) in ``text`` with ``***``.

    >>> import os; os.environ["DEMO_API_KEY"] = "sk-canary-123456"
    >>> redact("bad key sk-canary-123456")
    'bad key ***'
    """
    if not text:
        return text
    for value in _secret_values() + [e for e in (extra or []) if e and len(e) >= 8]:
        if value in text:
            text = text.replace(value, "***")
    return text
