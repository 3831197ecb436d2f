"""What an answer is worth, and when two answers are the same one.

Every place that compares answers (the vote, weighted vote, cascade, judge, fuse, medoid's
ties, ``calibrate``, ``rescore``, the report) asks ``answer_key``; nothing compares raw strings.

- A number is equal by value, exactly: ``"1/2"``, ``"0.5"``, ``"\\frac{1}{2}"``, ``"½"``,
  ``"1 / 2"``, ``"+0.5"``, ``"$0.50"`` and any ``numbers.Number`` worth 0.5 (``0.5``,
  ``np.float64(0.5)``, ``Decimal("0.50")``, ``Fraction(1, 2)``) are one answer; ``"1/3"`` is
  not ``"0.333"``.
- A string that is exactly a choice form (letters A-J, either case: ``"C"``, ``"(C)"``,
  ``"C)"``, ``"C."``, ``"[C]"``, ``"Option C"``, ``"choice c"``, ``"\\boxed{C}"``) is that
  letter. Anything more is free text: ``"C) Paris"`` and ``"A. Lincoln"`` are not letters
  (``extract="choice"`` reads the letter out of a reply).
- A whole answer inside ``\\boxed{}``, ``\\text{}``, ``$...$`` or ``**...**`` is what it wraps.
- Free text compares after case, whitespace and punctuation are normalised:
  ``"Paris."`` is ``"paris"``.
- A structured answer (dict, list, pydantic instance) compares by content, each leaf by the
  rules above; a set by its members, in any order.
- Anything else keys by its ``str``, else its ``repr``: ``answer_key`` never raises.

The canonical form of a number (what ``answer`` shows in the frames) is ``canonical_number``:
an exact decimal written out plainly (``"1080"``, ``"0.5"``, ``"-3"``,
``"602200000000000000000000"``), a fraction whose decimals never end as ``p/q`` in lowest terms
(``"1/3"``, ``"-5/6"``).

>>> canonical_number("\\\\frac{3}{4}"), canonical_number("−1.50"), canonical_number("2/6")
('0.75', '-1.5', '1/3')
>>> answer_key("1/2") == answer_key("0.5") == answer_key(0.5)
True
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import re
import unicodedata
from decimal import Decimal
from fractions import Fraction
from typing import Any

from .errors import ExtractionError

# Exponents beyond this are refused: 1e99999 written out exactly would be 100,000 digits.
MAX_EXPONENT = 400

# Dash-like characters models print as a minus sign (U+2212 minus, figure/en dash, small and
# full-width hyphen-minus). An em dash is punctuation, not a sign.
_MINUS = dict.fromkeys(map(ord, "\u2212\u2012\u2013\ufe63\uff0d"), "-")
_VULGAR = {
    "½": "1/2",
    "⅓": "1/3",
    "⅔": "2/3",
    "¼": "1/4",
    "¾": "3/4",
    "⅕": "1/5",
    "⅖": "2/5",
    "⅗": "3/5",
    "⅘": "4/5",
    "⅙": "1/6",
    "⅚": "5/6",
    "⅛": "1/8",
    "⅜": "3/8",
    "⅝": "5/8",
    "⅞": "7/8",
}
_VULGAR_RE = re.compile("(\\d?)([" + "".join(_VULGAR) + "])")
# \frac{1}{4}, \dfrac{-3}{8}, \tfrac12 (LaTeX's one-digit shorthand).
_SIGNED = r"-?\s*\d+(?:\.\d+)?"
_LATEX_FRAC = re.compile(
    r"(\d\s*)?\\[dt]?frac\s*(?:\{\s*("
    + _SIGNED
    + r")\s*\}|(\d))\s*(?:\{\s*("
    + _SIGNED
    + r")\s*\}|(\d))"
)
# 2.5 × 10^3, 2.5\times10^{3}, 2.5 * 10^-3, 2.5 x 10³.
_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_TIMES_TEN = re.compile(
    r"(\d(?:\.\d+)?)\s*(?:\\times|\\cdot|×|·|⋅|\*|x)\s*10\s*(?:\^\s*\{?\s*(-?\d+)\s*\}?|([⁻]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+))"
)
# Thousands separators that are not commas: LaTeX {,} and \, and thin / no-break spaces.
_GROUP_SEP = re.compile(r"(?<=\d)(?:\{,\}|\\,|\\ |[\u2009\u202f\u00a0'])(?=\d{3}(?!\d))")


def prepare(text: str) -> str:
    """``text`` with every supported spelling of a number turned into the plain one.

    Linear-time substitutions only: the result feeds the number pattern below.
    """
    text = text.translate(_MINUS)
    if "\\" in text or "{" in text:
        text = text.replace("\\$", "$").replace("\\%", "%").replace("\\!", "")
        text = _LATEX_FRAC.sub(_frac_sub, text)
    if "×" in text or "\\" in text or "10" in text:
        text = _TIMES_TEN.sub(_times_ten_sub, text)
    text = _GROUP_SEP.sub("", text)
    if not text.isascii():
        text = _VULGAR_RE.sub(
            lambda m: (m.group(1) + " " if m.group(1) else "") + _VULGAR[m.group(2)], text
        )
    return text


def _frac_sub(m: re.Match[str]) -> str:
    num = (m.group(2) or m.group(3)).replace(" ", "")
    den = (m.group(4) or m.group(5)).replace(" ", "")
    if den.startswith("-"):
        num, den = (num[1:] if num.startswith("-") else "-" + num), den[1:]
    whole = m.group(1)
    if whole:
        return f"{whole.strip()} {num}/{den}"
    before = m.string[m.start() - 1 : m.start()]
    # "x\frac12" must not glue into "x1/2"; "-\frac{3}{8}" keeps its sign touching.
    return (" " if before.isalnum() else "") + f"{num}/{den}"


def _times_ten_sub(m: re.Match[str]) -> str:
    exp = m.group(2) if m.group(2) is not None else m.group(3).translate(_SUPERSCRIPT)
    return f"{m.group(1)}e{exp}"


# One number in prepared text. Units may follow ("48g"); a letter or a decimal point before it
# makes it part of a name or another number ("A1", "x2"); a minus sign must touch its digits
# ("- 7" is a bullet). Each part is a bounded run of one character class: no nested
# quantifiers, so matching stays linear.
NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>-)?(?:\$\s?)?"
    r"(?:"
    r"(?P<whole>\d+) +(?P<mnum>\d+)/(?P<mden>\d+)(?![\d/])"  # mixed: 2 1/2
    r"|(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:/(?P<den>\d+(?:\.\d+)?)(?![\d/])|[eE](?P<exp>[-+]?\d+))?"
    r")(?![\d])"
)


def value_of(m: re.Match[str]) -> Fraction:
    """The exact value of a ``NUMBER`` match; ``ExtractionError`` when it has none."""
    try:
        if m.group("whole") is not None:
            whole, num, den = int(m["whole"]), int(m["mnum"]), int(m["mden"])
            if den == 0:
                raise ExtractionError(f"{m.group(0)!r} divides by zero")
            # "3 4/2" is not a mixed number: read the fraction alone.
            value = Fraction(num, den) if num >= den else whole + Fraction(num, den)
        else:
            value = Fraction(m["num"].replace(",", ""))
            if m.group("den") is not None:
                divisor = Fraction(m["den"])
                if divisor == 0:
                    raise ExtractionError(f"{m.group(0)!r} divides by zero")
                value /= divisor
            elif m.group("exp") is not None:
                exp = int(m["exp"])
                if abs(exp) > MAX_EXPONENT:
                    raise ExtractionError(f"{m.group(0)!r} is too large to keep exact")
                value *= Fraction(10) ** exp
    except ValueError:  # more digits than Python converts (4300)
        raise ExtractionError(f"{m.group(0)[:20]!r}... has too many digits") from None
    return -value if m.group("sign") else value


def canonical(value: Fraction) -> str:
    """The one written form of an exact value: a plain decimal if it ends, else ``p/q``."""
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    try:
        if den != 1:
            return f"{value.numerator}/{value.denominator}"
        scale = max(twos, fives)
        digits = str(abs(value.numerator) * 10**scale // value.denominator)
    except ValueError:
        raise ExtractionError("the number has too many digits to write out") from None
    sign = "-" if value < 0 else ""
    if scale == 0:
        return sign + digits
    digits = digits.rjust(scale + 1, "0")
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}".rstrip("0").rstrip(".")


_SPACED_SLASH = re.compile(r"(?<=\d)[ \t]*[/\u2044\u2215][ \t]*(?=\d)")  # also ⁄ and ∕
_LONE_PLUS = re.compile(r"^\+(?=[\d.$])")


# Answers repeat: the engine, ``calibrate``, ``rescore`` and the report each key every reply's
# answer, a panel gives a row a few distinct answers, and reading one is ~40 us of regexes and
# Fractions (``calibrate`` on 16,000 GSM8K replies read 500,000 of them). Keys and values are
# pure functions of the text, so each distinct short text is read once: an LRU of short texts
# only (a few MB at most), shared by every caller, thread-safe.
_CACHED_CHARS = 256
_CACHE_ENTRIES = 1 << 14


def parse_number(text: str) -> Fraction | None:
    """The exact value when ``text`` is one number and nothing else (units excepted: no)."""
    if len(text) <= _CACHED_CHARS:
        return _parse_number_cached(text)
    return _parse_number(text)


def _parse_number(text: str) -> Fraction | None:
    text = text.strip()
    if not text or len(text) > 200 or not any(c.isdigit() or c in _VULGAR for c in text):
        return None
    prepared = prepare(text).strip().strip("$").strip()
    for wrapper in ("\\(", "\\)", "\\[", "\\]"):
        prepared = prepared.replace(wrapper, "")
    prepared = prepared.strip().strip("$").strip()
    # The whole text is one number here, so "1 / 2" is a fraction and "+0.5" a signed value.
    prepared = _LONE_PLUS.sub("", _SPACED_SLASH.sub("/", prepared))
    m = NUMBER.fullmatch(prepared) or NUMBER.fullmatch(prepared.rstrip("%. "))
    if m is None:
        return None
    try:
        return value_of(m)
    except ExtractionError:
        return None


_parse_number_cached = functools.lru_cache(maxsize=_CACHE_ENTRIES)(_parse_number)


def canonical_number(token: Any) -> str:
    """``"$1,080.00"`` -> ``"1080"``; ``"\\frac{1}{4}"`` -> ``"0.25"``; ``"2/6"`` -> ``"1/3"``.

    Raises ``ExtractionError`` when ``token`` is not a single number.
    """
    value = number_value(token)
    if value is None:
        raise ExtractionError(f"not a number: {token!r}")
    return canonical(value)


def number_value(value: Any) -> Fraction | None:
    """The exact value of a finite real number (any ``numbers.Number``: int, float, Decimal,
    Fraction, NumPy scalars) or of a string that is one number; else None."""
    if isinstance(value, str):
        return parse_number(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        item = getattr(value, "item", None)
        if callable(item) and getattr(value, "ndim", None) == 0:  # a 0-d NumPy array
            return number_value(item())
        return None
    if isinstance(value, numbers.Integral):
        return Fraction(int(value))
    if isinstance(value, numbers.Rational):
        return Fraction(int(value.numerator), int(value.denominator))
    if isinstance(value, Decimal):
        finite = value.is_finite() and abs(value.adjusted()) <= MAX_EXPONENT
        return Fraction(value) if finite else None
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        return number_value(value.real) if value.imag == 0 else None
    if not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        return None
    if isinstance(value, float):
        # 0.1 means the decimal 0.1, not the binary fraction nearest to it; float's own repr,
        # since NumPy 2 spells a np.float64 "np.float64(0.1)".
        return Fraction(float.__repr__(value))
    # Other reals (np.float32, np.longdouble...) print their shortest decimal: 0.1, not
    # float32's 0.100000001490116.
    try:
        return Fraction(str(value))
    except (ValueError, TypeError):
        return Fraction(repr(float(value)))


_PUNCT = re.compile(r"[^\w\s]|_")
# An expression ("x**2 - 1", "sqrt(2)/2", "a = b"): its symbols are its meaning.
_MATHY = re.compile(r"[+*/^=<>\\]|\d\s*-|-\s*\d|\s-\s")


def text_key(text: str) -> str:
    """Free text for comparison: NFKC, case-folded, punctuation dropped, spaces collapsed.

    An expression keeps its symbols (``x + 1`` is not ``x - 1``) and loses only its spaces
    and a closing full stop.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    if _MATHY.search(folded):
        return "".join(folded.split()).rstrip(".")
    return " ".join(_PUNCT.sub(" ", folded).split())


# A whole answer wrapped in \\boxed{...}, \\text{...}, $...$ or **...**: the wrapper adds nothing.
_WRAPPED = re.compile(
    r"\\(?:boxed|fbox|text(?:bf|rm|it)?|mathrm|mathbf)\s*\{(.*)\}|\$(.*)\$|\*\*(.*)\*\*", re.S
)
# A choice letter and nothing else: "C", "(C)", "C)", "C.", "[C]", "Option C", "choice (c)".
_CHOICE_FORM = re.compile(r"(?:(?:option|choice)\s*)?[(\[]?\s*([A-Ja-j])\s*[)\].]?", re.I)


def answer_key(answer: Any) -> str:
    """The one form two answers share exactly when they are the same answer (see module doc).

    Numbers key by their canonical form, so the key of ``"1/2"`` is ``"0.5"``. Never raises:
    an object that cannot be read (its ``str`` or ``model_dump`` fails, it nests too deep)
    keys by its ``repr``.
    """
    kind = type(answer)
    # Exactly these types (not a subclass, not bool): their key is a function of the value.
    if (kind is str and len(answer) <= _CACHED_CHARS) or kind is int or kind is float:
        return _answer_key_cached(answer)
    return _answer_key(answer)


def _answer_key(answer: Any) -> str:
    try:
        return _key(answer)
    except Exception:  # a user's extractor may return anything: it still gets a key
        try:
            return "repr:" + repr(answer)
        except Exception:
            return f"repr:<{type(answer).__qualname__} object at {id(answer):#x}>"


# typed: 1 and 1.0 are cached apart (their keys agree anyway, by value).
_answer_key_cached = functools.lru_cache(maxsize=_CACHE_ENTRIES, typed=True)(_answer_key)


def _key(answer: Any) -> str:
    value = number_value(answer)
    if value is not None:
        try:
            return canonical(value)
        except ExtractionError:  # too many digits to write out: hex has no such limit
            return f"{value.numerator:#x}/{value.denominator:#x}"
    if isinstance(answer, str):
        return _string_key(answer)
    if answer is None or isinstance(answer, bool):
        return json.dumps(answer)
    if isinstance(answer, numbers.Real) and not isinstance(answer, Decimal):  # NaN, inf
        return repr(float(answer))
    if isinstance(answer, numbers.Number):  # complex, Decimal NaN
        return text_key(str(answer))
    dump = getattr(answer, "model_dump", None)
    if callable(dump):
        answer = dump(mode="json")
    if isinstance(answer, (dict, list, tuple)):
        return json.dumps(_content(answer), sort_keys=True)
    if isinstance(answer, (set, frozenset)):  # equal sets print their members in any order
        return "set:" + json.dumps(sorted(answer_key(v) for v in answer))
    return text_key(str(answer))


def _string_key(text: str) -> str:
    for _ in range(4):  # "$\\boxed{\\text{C}}$": a few wrappers deep, no more
        wrapped = _WRAPPED.fullmatch(text.strip())
        if wrapped is None:
            break
        text = next(g for g in wrapped.groups() if g is not None)
        value = parse_number(text)
        if value is not None:
            return _key(value)
    choice = _CHOICE_FORM.fullmatch(text.strip())
    if choice is not None:
        return choice.group(1).casefold()
    return text_key(text)


def _content(answer: Any) -> Any:
    if isinstance(answer, dict):
        return {str(k): _content(v) for k, v in answer.items()}
    if isinstance(answer, (list, tuple)):
        return [_content(v) for v in answer]
    return answer_key(answer)


def shown(answer: Any) -> Any:
    """The form an answer is shown in: a number's canonical form, anything else as it is."""
    if isinstance(answer, str):
        if len(answer) <= _CACHED_CHARS:
            return _shown_text_cached(answer)
        return _shown_text(answer)
    return answer


def _shown_text(answer: str) -> str:
    value = parse_number(answer)
    return canonical(value) if value is not None else answer


_shown_text_cached = functools.lru_cache(maxsize=_CACHE_ENTRIES, typed=True)(_shown_text)


def clear_cache() -> None:
    """Forget every answer read so far (the next read of each text parses it again): for a
    benchmark of a cold read; results never depend on it."""
    for cached in (_parse_number_cached, _answer_key_cached, _shown_text_cached):
        cached.cache_clear()


def same(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are the same answer."""
    return answer_key(a) == answer_key(b)
