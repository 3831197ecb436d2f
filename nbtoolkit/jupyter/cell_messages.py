"""The lines a ``%%orchestrate`` cell (or the app, which writes one) shows for a mistake.

They name only forms a cell accepts: a close alias or option (``Did you mean oracle?``),
never ``api_base=`` or ``Model(api_key_env=...)``, which a cell cannot set.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ConfigError, MissingAPIKeyError, ModelError, StrategyError

# Both of the core's forms: "...: litellm cannot tell..." and "... Did you mean 'sim/...'?"
_UNKNOWN_MODEL = re.compile(r"^unknown model '([^']+)'(?:: litellm cannot tell|\. Did you mean)")


def _unknown_model(message: str, aliases: dict[str, str]) -> str:
    """The core's unknown-model line, in forms a cell accepts: a close alias or simulated
    model first (``did you mean oracle?``); never ``api_base=``, which a cell cannot set."""
    found = _UNKNOWN_MODEL.match(message)
    if found is None:
        return message
    from ..providers import sim
    from ..suggest import closest

    name = found.group(1)
    forms = {**{a: a for a in aliases}, **{p: f"sim/{p}" for p in sim.PROFILES}}
    near = closest(name, forms)
    hint = f" Did you mean {forms[near]}?" if near else ""
    return (
        f"unknown model '{name}'.{hint} Use an alias (%orchestrate models lists them), a "
        "simulated model such as sim/oracle-large, or a litellm id with its provider, e.g. "
        "openai/gpt-4o-mini"
    )


def for_a_cell(exc: ConfigError, aliases: dict[str, str]) -> str:
    """A user mistake's line, naming only what a cell (or the app) can do: a close alias for
    an unknown model, and no ``Model(api_key_env=...)`` for a missing key."""
    if isinstance(exc, ModelError):
        return _unknown_model(str(exc), aliases)
    if isinstance(exc, MissingAPIKeyError) and exc.variables:
        names = " or ".join(exc.variables)
        return (
            f"{exc.model} needs the environment variable {names}: set it in a cell with "
            f"%env {exc.variables[0]}=... (or os.environ['{exc.variables[0]}'] = '...'), "
            "or export it before starting Jupyter"
        )
    if isinstance(exc, MissingAPIKeyError) and exc.missing:
        said = "; ".join(f"{label} needs {' or '.join(names)}" for label, names in exc.missing)
        first = exc.missing[0][1][0]
        return (
            f"API keys are missing: {said}. Set them in a cell with %env {first}=... (one "
            "line each), or export them before starting Jupyter"
        )
    if isinstance(exc, MissingAPIKeyError):
        return re.sub(r" or pass Model\(.*?\)$", "", str(exc))
    if isinstance(exc, StrategyError) and exc.needs_model == "judge":
        return "-s judge needs a judge model: use --judge MODEL (e.g. --judge oracle) instead"
    if isinstance(exc, StrategyError) and exc.needs_model:
        return (
            f"-s {exc.needs_model} needs an aggregator model, which a cell cannot name: use "
            "--judge MODEL for a judge, or run it from Python with "
            f"nbt.orchestrate(..., strategy=nbt.Fuse(model='...'))"
        )
    return str(exc)


def flag_hint(message: str, parser: Any) -> str:
    """argparse's "unrecognized arguments: --extrct number", with "did you mean --extract?"."""
    if "unrecognized arguments:" not in message:
        return message
    from ..suggest import closest

    flags = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    words = message.split("unrecognized arguments:", 1)[1].split()
    hints = [
        f"{w} -> {near}"
        for w in words
        if w.startswith("-") and (near := closest(w.split("=")[0], flags)) is not None
    ]
    return message + (f". Did you mean: {', '.join(hints)}?" if hints else "")
