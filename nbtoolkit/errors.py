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

import functools
import os
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "BatchPendingError",
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
    "clip",
    "public",
    "redact",
]


class NbtoolkitError(Exception):
    """Base class of every error nbtoolkit raises; its message never holds a secret."""

    def __init__(self, *args: Any) -> None:
        # Messages quote user input (a model id, an api_base, a parameter): redacted here,
        # once, so no message of ours can carry a key to a notebook, a log or a terminal.
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class ConfigError(NbtoolkitError, ValueError):
    """A mistake in the arguments of a call; the message says how to fix it."""


class TemplateError(ConfigError):
    """A prompt template names a variable that no row column or variable provides."""


class ExtractorError(ConfigError):
    """An ``extract=`` spec that names no known extractor."""


class StrategyError(ConfigError):
    """An unknown strategy, or a strategy given options it does not take.

    ``needs_model`` names a strategy (``judge``, ``fuse``) that was chosen without the model
    it needs, so each front end can say how to give one in its own language."""

    needs_model: str = ""


class ModelError(ConfigError):
    """An unknown model id, or options a model does not take."""


class MissingAPIKeyError(ConfigError):
    """A provider needs an environment variable (an API key) that is not set.

    ``model`` and ``variables`` say which model needs which variables (either one will do),
    so each front end can say how to set one in its own language (Python, ``%env``, a
    shell's ``export``)."""

    model: str = ""
    variables: tuple[str, ...] = ()
    #: Every model found without its key at once: ``((label, variables), ...)``.
    missing: tuple[tuple[str, tuple[str, ...]], ...] = ()


class RecordingsError(ConfigError):
    """A recordings file that is missing or has a malformed line."""


class ParameterError(ConfigError):
    """A report parameter the template does not declare, of the wrong type, or a secret."""


class CellError(NbtoolkitError):
    """A cell of the report notebook raised (or the kernel died: ``cell`` is None); the
    partial notebook is kept at ``notebook``. ``cell`` is its execution count, ``In [cell]``."""

    def __init__(self, cell: int | None, ename: str, evalue: str, notebook: Path | str) -> None:
        where = f"cell In [{cell}] failed" if cell is not None else "the kernel stopped"
        evalue = redact(evalue)
        super().__init__(f"{where}: {ename}: {evalue}")
        self.cell, self.ename, self.evalue, self.notebook = cell, ename, evalue, notebook


class ExtractionError(NbtoolkitError):
    """An answer could not be read out of a model's reply."""


class CallError(NbtoolkitError):
    """A provider call that failed for good."""


class CacheError(NbtoolkitError):
    """The on-disk cache could not be opened, read or written."""


class BatchPendingError(NbtoolkitError):
    """A batch job's result was asked for before its batches ended; ``job.wait()`` waits."""


class RunFailedError(NbtoolkitError):
    """Every call of a run failed; ``.result`` holds the frames with each error."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a kernel interrupt) stopped a run; ``.result`` holds the rows it finished.

    A ``KeyboardInterrupt``, so a loop of runs stops as a loop of anything else would, and
    ``except Exception`` does not swallow it. Keep the partial frames with
    ``except nbtoolkit.RunInterrupted as stop: res = stop.result``; in a ``%%orchestrate``
    cell they are put in the result variable before the cell stops.
    """

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


# Names of environment variables whose values must never be written anywhere.
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.IGNORECASE)
# A secret shorter than this is not replaced: it would blank out ordinary words.
MIN_SECRET = 8

# API key shapes: OpenAI/Anthropic/OpenRouter, Google, GitHub, Hugging Face, Slack, AWS,
# Groq, Perplexity, Replicate; a key of these shapes is hidden wherever it comes from (a
# server that echoes it, a key the user typed into a prompt), set in the environment or not.
# Each as (its literal start, the rest): a text holding none of the starts holds no key shape,
# and a substring search per start is a tenth of the regex's scan of a long reply.
_SHAPES = (
    ("sk-", r"[A-Za-z0-9_\-]{16,}"),
    ("AIza", r"[0-9A-Za-z_\-]{30,}"),
    *((f"{kind}_", r"[A-Za-z0-9_]{20,}") for kind in ("ghp", "gho", "ghu", "ghs", "github_pat")),
    ("hf_", r"[A-Za-z0-9]{30,}"),
    *((f"xox{kind}-", r"[A-Za-z0-9\-]{10,}") for kind in "abposr"),
    ("AKIA", r"[0-9A-Z]{16}\b"),
    ("gsk_", r"[A-Za-z0-9]{20,}"),
    ("pplx-", r"[A-Za-z0-9]{20,}"),
    ("r8_", r"[A-Za-z0-9]{20,}"),
)
KEY_SHAPES = re.compile("|".join(rf"\b{re.escape(start)}{rest}" for start, rest in _SHAPES))
_KEY_STARTS = tuple(start for start, _ in _SHAPES)

# Credentials that travel inside text: ``scheme://user:pass@host``, ``Bearer <token>``,
# ``?api_key=...`` in a query string.
_IN_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@:]*(?::[^/\s@]*)?@")
# The value of an Authorization header, and a token after "Bearer" (16+ characters with a
# digit: "a basic question" or "the bearer of news" are left alone).
_AUTH = re.compile(
    r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:bearer\s+|basic\s+|token\s+)?)[^\s\"',}]+"
)
_BEARER = re.compile(r"\b([Bb]earer|BEARER)\s+(?=[A-Za-z0-9._~+/=\-]*\d)[A-Za-z0-9._~+/=\-]{16,}")
# Any query parameter named for a credential: api_key, x-api-key, auth_token, private_token,
# access-token, client_secret, password, pass, sig...
_QUERY = re.compile(
    r"(?i)([?&](?:[a-z0-9]+[_\-])*(?:api[_\-]?key|key|token|secret|password|passwd|pwd|pass"
    r"|sig|signature|auth|credential|credentials)=)[^&\s#\"']+"
)
HIDDEN = "***"
# What a key looks like (no spaces, not a path or URL): only such values are also hidden
# when cut short, since their pieces are as secret as the whole and occur nowhere else.
_KEYLIKE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-.+=]*")

# Values of variables named by api_key_env=, whatever the variable is called; the count of
# values added so far, which the secrets read are checked against (see _secret_values).
_PROTECTED: set[str] = set()
_protected_added = 0
_protecting = threading.Lock()
_cached: tuple[Any, tuple[str, ...]] = ((), ())


def protect(value: str | None) -> None:
    """Never write ``value`` anywhere: ``redact`` will hide it from now on."""
    global _protected_added
    if value and len(value) >= MIN_SECRET and value not in _PROTECTED:
        with _protecting:
            _PROTECTED.add(value)
            # Counted after it is added: a reader of the secrets that saw the count before
            # may have missed the value, and reads them again (see _secret_values). Only a
            # new value counts: every run protects its keys again, and reading the secrets
            # again also empties redact's memo of texts already made safe.
            _protected_added += 1


def protect_url(url: str | None) -> None:
    """Never write the credentials ``url`` carries (its password, a query's ``api_key=``...),
    even where they appear without the URL: a server that echoes the bare value back."""
    if not url or not isinstance(url, str):
        return
    from urllib.parse import parse_qsl, urlsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return
    protect(password)
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if _QUERY.search(f"?{name}={value}"):
            protect(value)


def _secret_values() -> tuple[str, ...]:
    global _cached
    # Reading os.environ costs ~40 us; redact runs for every reply, so the list is rebuilt
    # only when the environment changed (a snapshot compares in ~1 us).
    raw = getattr(os.environ, "_data", None)
    # The count first: a value protected while the list below is made changes the count,
    # so the list is made again next time, never kept without it (another thread's run).
    snapshot: Any = (
        _protected_added,
        tuple(raw.items()) if isinstance(raw, dict) else tuple(os.environ.items()),
    )
    cached = _cached  # one read: another thread may store a list between two
    if snapshot == cached[0]:
        return cached[1]
    # A *_KEY_ENV variable (NBTOOLKIT_PROXY_KEY_ENV) holds the name of a key's variable,
    # which messages must be able to name; the key itself is that variable's value.
    values = {
        v
        for k, v in os.environ.items()
        if _SECRET_NAME.search(k) and not k.endswith("_KEY_ENV") and len(v) >= MIN_SECRET
    }
    values |= _PROTECTED
    # Longest first, so a key that contains another is replaced whole.
    ordered = tuple(sorted(values, key=len, reverse=True))
    _cached = (snapshot, ordered)
    return ordered


@functools.lru_cache(maxsize=256)
def _key_ends(secret: str) -> tuple[str, str] | None:
    """A key-like secret's first and last ``MIN_SECRET`` characters; None for a path or URL
    kept in a *_KEY variable (only its whole value is hidden). Once per secret, not per text."""
    if not _KEYLIKE.fullmatch(secret):
        return None
    return secret[:MIN_SECRET], secret[-MIN_SECRET:]


def _hide_parts(text: str, secret: str) -> str:
    """Hide ``secret`` and any piece of it that keeps one of its ends (a key cut short by a
    length limit somewhere else), at least ``MIN_SECRET`` characters long."""
    if secret in text:
        text = text.replace(secret, HIDDEN)
    return _hide_pieces(text, secret)


def _hide_pieces(text: str, secret: str) -> str:
    """Hide any piece of ``secret`` that keeps one of its ends, ``MIN_SECRET`` characters or
    more (a key-like secret only)."""
    ends = _key_ends(secret)
    if ends is None:
        return text
    head, tail = ends
    if head not in text and tail not in text:
        return text
    start = text.find(head)
    while start != -1:
        end = start + MIN_SECRET
        while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
            end += 1
        text = text[:start] + HIDDEN + text[end:]
        start = text.find(head, start + len(HIDDEN))
    end = text.find(tail)
    while end != -1:
        stop = end + MIN_SECRET
        begin = end
        offset = len(secret) - MIN_SECRET
        while begin > 0 and offset > 0 and text[begin - 1] == secret[offset - 1]:
            begin, offset = begin - 1, offset - 1
        text = text[:begin] + HIDDEN + text[stop:]
        end = text.find(tail, begin + len(HIDDEN))
    return text


def redact(text: str, extra: list[str] | None = None) -> str:
    """``text`` with every secret replaced by ``***``: the value of every environment variable
    named like a secret (``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``), of every
    ``api_key_env`` variable, and ``extra``; a piece of one cut short (from either end);
    anything shaped like a provider's API key; credentials in a URL (``https://user:pass@``),
    a ``Bearer`` token, an ``?api_key=`` query value.

    The one redaction of nbtoolkit: everything it writes or shows goes through it. Redact
    before cutting text short (``clip``), so a length limit cannot split a key.

    >>> import os; os.environ["DEMO_API_KEY"] = "sk-canary-123456"
    >>> redact("bad key sk-canary-123456 at https://me:pw@host/v1")
    'bad key *** at https://***@host/v1'
    """
    if not text or not isinstance(text, str):
        return text
    return _redact(text, _secret_values(), extra)


def redactor(values_only: bool = False) -> Callable[[str], str]:
    """``redact`` for many texts in a row (the values of one record): the environment's
    secrets are read once, not once per text (reading them is most of a short text's cost).

    ``values_only``: hide only the secret values (environment, ``protect``), not the shapes
    (key patterns, URL credentials): for texts redacted when they were written (the cache),
    where only a value that became a secret since can be new.
    """
    secrets = _secret_values()
    if values_only:

        def hide(text: str) -> str:
            if not text:
                return text
            for value in secrets:
                text = _hide_parts(text, value)
            return text

        return hide
    return lambda text: _redact(text, secrets, None) if text else text


def _redact(text: str, secrets: tuple[str, ...], extra: list[str] | None) -> str:
    global _memo_state
    # The same short texts (model ids, parameters, error lines) come back on every call of a
    # run: each is redacted once per set of secrets. The memo is read and replaced whole,
    # with its secrets: a thread still on older secrets never fills the newer ones' memo.
    memo: dict[str, str] | None = None
    if not extra and len(text) <= _MEMO_TEXT:
        state = _memo_state
        if state[0] is not secrets:
            state = _memo_state = (secrets, {})
        memo = state[1]
        done = memo.get(text)
        if done is not None:
            return done
    original = text
    values = secrets + tuple(e for e in (extra or []) if e and len(e) >= MIN_SECRET)
    for value in values:
        if value in text:
            text = text.replace(value, HIDDEN)
    # The shapes before the pieces: another key that starts like a secret ("sk-proj-...")
    # would otherwise lose its start to the piece search and no longer look like a key.
    text = _hide_shapes(text)
    for value in values:
        text = _hide_pieces(text, value)
    if memo is not None and len(memo) < _MEMO_SIZE:
        memo[original] = text
    return text


def _hide_shapes(text: str) -> str:
    """Key shapes, URL credentials, Authorization values, Bearer tokens, credential query
    parameters."""
    # Each pattern runs only where its marker occurs: a regex scan costs ~15 us per KB and
    # this runs for every reply.
    if "://" in text:
        text = _IN_URL.sub(r"\1" + HIDDEN + "@", text)
    if any(start in text for start in _KEY_STARTS):  # see _SHAPES
        text = KEY_SHAPES.sub(HIDDEN, text)
    lowered = text.lower()
    if "authorization" in lowered:
        text = _AUTH.sub(r"\1" + HIDDEN, text)
    if "bearer" in lowered:
        text = _BEARER.sub(r"\1 " + HIDDEN, text)
    if "=" in text and ("?" in text or "&" in text):
        text = _QUERY.sub(r"\1" + HIDDEN, text)
    return text


_MEMO_TEXT, _MEMO_SIZE = 512, 20_000
_memo_state: tuple[tuple[str, ...], dict[str, str]] = ((), {})


def clip(text: str, limit: int, marker: str = "") -> str:
    """``text`` redacted, then cut to ``limit`` characters (``marker`` appended when cut).

    Every length limit on text that may carry a key goes through this: redacting after
    cutting would miss a key cut in half.
    """
    text = redact(text)
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(marker))] + marker


_HEADER_SECTIONS = ("extra_headers", "headers")


def public(value: Any) -> Any:
    """A copy of ``value`` (dicts, lists, strings) fit to show or write: every string
    redacted, and the values of HTTP headers (``extra_headers``) hidden, as they often carry
    a token in a form no pattern knows."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if key in _HEADER_SECTIONS and isinstance(item, Mapping):
                out[key] = {name: HIDDEN for name in item}
            else:
                out[key] = public(item)
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(public(v) for v in value)
    return value
