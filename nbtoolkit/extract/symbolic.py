"""``math``: LaTeX and symbolic answers (``\\sqrt{2}``, ``2\\pi``, ``x^2+1``), read by math-verify.

Hugging Face's math-verify finds the answer (``\\boxed{}`` first, then "final answer", then
the last expression) and parses it to SymPy. Its own timeout uses ``signal.alarm`` and fails
off the main thread (math-verify issues #50, #55), and a parse can run for minutes
(``2^{10^{9}}``), so it runs with that timeout disabled in one helper process of ours, killed
and restarted when a reply takes longer than ``TIMEOUT_S``. The helper starts on the first
``extract="math"`` reply; nothing imports math-verify before.

The answer is a string: a rational value in the canonical number form (``"0.5"``, ``"1/3"``),
any other expression in SymPy's printed form after ``simplify`` (``"sqrt(2)"``, ``"2*pi"``,
``"x**2 + 1"``), so equal expressions that SymPy writes alike vote together.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import threading
from fractions import Fraction
from typing import Any

from ..answers import canonical
from ..errors import ExtractionError, ExtractorError
from .markers import runon_cut
from .registry import preview, register, text_of

TIMEOUT_S = 5.0  # per reply, once the helper is up
START_TIMEOUT_S = 120.0  # the helper's first import of math-verify and SymPy
MAX_CHARS = 20_000  # the end of a longer reply is read: that is where answers are

_lock = threading.Lock()
_worker: Any = None  # (process, connection) of the helper


def available() -> None:
    """Raise ``ExtractorError`` with the fix when math-verify is not installed."""
    if importlib.util.find_spec("math_verify") is None:
        raise ExtractorError(
            "extract='math' needs math-verify: pip install 'math-verify[antlr4_13_2]'"
        )


def _serve(conn: Any) -> None:  # pragma: no cover - runs in the helper process
    import logging

    from math_verify import parse

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    conn.send(("ready", None))
    while True:
        text = conn.recv()
        try:
            conn.send(_parse_one(parse, text))
        except Exception as exc:  # noqa: BLE001 - any failure is this reply's, not the helper's
            conn.send(("error", f"{type(exc).__name__}: {exc}"[:200]))


def _parse_one(parse: Any, text: str) -> tuple[str, Any]:  # pragma: no cover - in the helper
    import sympy

    found = parse(text, parsing_timeout=None)
    exprs = [e for e in found if not isinstance(e, str)]
    if not exprs:
        return ("none", None)
    expr = exprs[0]
    if isinstance(expr, sympy.Eq) and isinstance(expr.lhs, sympy.Symbol):
        expr = expr.rhs  # "x = 5" answers 5
    if isinstance(expr, sympy.Float):
        return ("number", str(expr))
    if isinstance(expr, sympy.Rational):
        return ("number", f"{expr.p}/{expr.q}")
    try:
        simpler = sympy.simplify(expr)
    except Exception:  # noqa: BLE001 - keep the parsed form when SymPy cannot simplify it
        simpler = expr
    if isinstance(simpler, sympy.Rational):
        return ("number", f"{simpler.p}/{simpler.q}")
    return ("expr", str(simpler))


def _start() -> Any:
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe in a threaded kernel
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="nbtoolkit-math")
    proc.start()
    child.close()
    if not parent.poll(START_TIMEOUT_S):
        _stop((proc, parent))
        raise ExtractionError("math-verify did not start in time")
    parent.recv()
    return proc, parent


def _stop(worker: Any) -> None:
    proc, conn = worker
    proc.kill()
    proc.join()
    conn.close()


def shutdown() -> None:
    """Stop the helper process (it also ends with the Python process)."""
    global _worker
    with _lock:
        if _worker is not None:
            _stop(_worker)
            _worker = None


def read_math(text: str, timeout: float | None = None) -> str:
    """The reply's mathematical answer in canonical form; ``ExtractionError`` if none."""
    global _worker
    text = runon_cut(text)[-MAX_CHARS:]
    with _lock:
        if _worker is None:
            _worker = _start()
        proc, conn = _worker
        conn.send(text)
        if not conn.poll(TIMEOUT_S if timeout is None else timeout):
            _stop(_worker)
            _worker = None
            raise ExtractionError(
                f"math-verify took longer than {TIMEOUT_S if timeout is None else timeout:g} s "
                f"on {preview(text)}"
            )
        kind, value = conn.recv()
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
