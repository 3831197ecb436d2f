"""``math``: LaTeX and symbolic answers (``\\sqrt{2}``, ``2\\pi``, ``x^2+1``), read by math-verify.

Hugging Face's math-verify finds the answer (``\\boxed{}`` first, then "final answer", then
the last expression) and parses it to SymPy. It reads LaTeX only inside ``$...$`` or after its
own anchors, so the answer our markers find (``The answer is x^2+1``) is handed to it first
as inline LaTeX, and a one-line reply (``x^2+1``) last, each only when it holds no prose word. Its own timeout uses ``signal.alarm`` and fails
off the main thread (math-verify issues #50, #55), and a parse can run for minutes
(``2^{10^{9}}``), so it runs with that timeout disabled in one helper process of ours (a
``python -c`` child speaking JSON lines), killed and restarted when a reply takes longer than
``TIMEOUT_S``. The helper starts on the first
``extract="math"`` reply; nothing imports math-verify before.

The answer is a string: a rational value in the canonical number form (``"0.5"``, ``"1/3"``),
any other expression in SymPy's printed form after ``simplify`` (``"sqrt(2)"``, ``"2*pi"``,
``"x**2 + 1"``), so equal expressions that SymPy writes alike vote together.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import queue
import re
import subprocess
import sys
import threading
from fractions import Fraction
from typing import Any

from ..answers import canonical
from ..errors import ExtractionError, ExtractorError
from . import markers
from .markers import runon_cut
from .registry import preview, register, text_of

TIMEOUT_S = 5.0  # per reply, once the helper is up
START_TIMEOUT_S = 120.0  # the helper's first import of math-verify and SymPy
MAX_CHARS = 20_000  # the end of a longer reply is read: that is where answers are

# The helper is a plain ``python -c`` process speaking JSON lines on stdin/stdout, not a
# multiprocessing child: a spawned child re-imports the parent's ``__main__``, which would
# re-run a user's unguarded script; and fork is unsafe in a threaded kernel.
_HELPER = r"""
import json, logging, sys
from math_verify import parse
import sympy

logging.getLogger("math_verify").setLevel(logging.ERROR)


def _read(text):
    return [e for e in parse(text, parsing_timeout=None) if not isinstance(e, str)]


def one(text, marked, line):
    # parsing_timeout=None: math-verify's own timeout is signal.alarm, which fails off the
    # main thread; the parent bounds the time by killing this process. math-verify reads LaTeX
    # only between $ or after its own anchors: the answer our markers found ("The answer is
    # x^2+1") is read first as inline LaTeX, and a one-line reply last.
    found = (_read("$" + marked + "$") if marked else []) or _read(text)
    if not found and line:
        found = _read("$" + line + "$")
    if not found:
        return ["none", None]
    expr = found[0]
    if isinstance(expr, sympy.Eq) and isinstance(expr.lhs, sympy.Symbol):
        expr = expr.rhs  # "x = 5" answers 5
    if isinstance(expr, sympy.Float):
        return ["number", str(expr)]
    if not isinstance(expr, sympy.Rational):
        try:
            expr = sympy.simplify(expr)
        except Exception:
            pass
    if isinstance(expr, sympy.Rational):
        return ["number", "%d/%d" % (expr.p, expr.q)]
    return ["expr", str(expr)]


print(json.dumps(["ready", None]), flush=True)
for line in sys.stdin:
    try:
        out = one(*json.loads(line))
    except Exception as exc:
        out = ["error", ("%s: %s" % (type(exc).__name__, exc))[:200]]
    print(json.dumps(out), flush=True)
"""

_lock = threading.Lock()
_worker: _Helper | None = None


class _Helper:
    """One helper process and a thread that hands its reply lines to a queue."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HELPER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name="nbtoolkit-math").start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")  # the helper ended

    def ask(self, text: list[str] | None, timeout: float) -> Any:
        if text is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(text) + "\n")
            self.proc.stdin.flush()
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if not line:
            raise ExtractionError("math-verify's helper process ended unexpectedly")
        return json.loads(line)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def available() -> None:
    """Raise ``ExtractorError`` with the fix when math-verify is not installed."""
    if importlib.util.find_spec("math_verify") is None:
        raise ExtractorError(
            "extract='math' needs math-verify: pip install math-verify antlr4-python3-runtime==4.13.2"
        )


def _start() -> _Helper:
    helper = _Helper()
    if helper.ask(None, START_TIMEOUT_S) is None:
        helper.stop()
        raise ExtractionError("math-verify's helper process did not start in time")
    return helper


def shutdown() -> None:
    """Stop the helper process (it also ends with the Python process)."""
    global _worker
    with _lock:
        if _worker is not None:
            _worker.stop()
            _worker = None


atexit.register(shutdown)


_PLAIN_MAX = 200  # a whole reply this short, on one line, may be the expression itself
# A word that is neither a LaTeX command nor a function's name: prose, not an expression.
_WORD = re.compile(r"(?<![\\a-zA-Z])(?!(?:sin|cos|tan|log|ln|exp|sqrt|pi|mod)\b)[a-zA-Z]{2,}")
_FUNCTION = re.compile(r"(?<![\\a-zA-Z])(sin|cos|tan|log|ln|exp|sqrt|pi)(?![a-zA-Z])")

_SQRT_PARENS = re.compile(r"\\sqrt\(([^()]*)\)")


def plain_answers(text: str) -> tuple[str, str]:
    """``(marked, line)``: the answer our markers find (``The answer is x^2+1``) and the reply
    whole when it is one short line, each as plain math for math-verify to read as LaTeX, or
    "" when it is not one (prose: ``5 hours``, ``No idea``). Python's ``**`` becomes ``^``."""
    try:
        marked = markers.decide(text, markers.marks(text), lambda mk: mk.text.strip() or None, str)
    except ExtractionError:
        marked = None
    stripped = text.strip()
    line = stripped if "\n" not in stripped and len(stripped) <= _PLAIN_MAX else ""
    return _as_math(marked or ""), _as_math(line)


def _as_math(text: str) -> str:
    text = text.strip(" \t*_$").rstrip(".").strip().replace("**", "^")
    if not text or _WORD.search(text):
        return ""
    # "sin(x)" in LaTeX is s*i*n*x: plain function names become their commands.
    text = _FUNCTION.sub(r"\\\1", text)
    return _SQRT_PARENS.sub(r"\\sqrt{\1}", text)  # \sqrt takes braces, not parentheses


def read_math(text: str, timeout: float | None = None) -> str:
    """The reply's mathematical answer in canonical form; ``ExtractionError`` if none."""
    global _worker
    text = runon_cut(text)[-MAX_CHARS:]
    marked, line = plain_answers(text)
    limit = TIMEOUT_S if timeout is None else timeout
    with _lock:
        if _worker is None:
            _worker = _start()
        try:
            got = _worker.ask([text, marked, line], limit)
        except (OSError, ExtractionError):
            _worker.stop()
            _worker = None
            raise ExtractionError("math-verify's helper process failed; it restarts") from None
        if got is None:
            _worker.stop()
            _worker = None
            raise ExtractionError(f"math-verify took longer than {limit:g} s on {preview(text)}")
    kind, value = got
    if kind == "number":
        return canonical(Fraction(value))
    if kind == "expr":
        return str(value)
    if kind == "error":
        raise ExtractionError(f"math-verify could not read {preview(text)}: {value}")
    raise ExtractionError(f"no mathematical answer in {preview(text)}")


@register("math")
def extract_math(value: Any) -> str:
    """A LaTeX or symbolic answer through math-verify (see the module doc)."""
    available()
    return read_math(text_of(value))
