"""``%%orchestrate`` and ``%orchestrate``: the Jupyter glue around ``nbtoolkit.orchestrate``.

::

    %load_ext nbtoolkit

    %%orchestrate -m oracle -m swift -m budget-a --extract number --over questions --out res
    {question}
    Answer with a number.

The cell body is the prompt: ``{name}`` comes from the ``--over`` DataFrame's row, then from
the notebook's variables. The cell's value is the ``RunResult``, also bound to ``--out``
(``_orch`` by default). A mistake in the options is one ``UsageError`` line; a run where every
call failed raises ``RunFailedError`` (so papermill stops); a partial failure shows as error
rows and a warning. Settings: ``%config Orchestrate`` (models, aliases, strategy, cache...).

The options line is taken literally (no ``$var`` expansion), so regexes and dollar amounts
in ``--extract`` survive; quote values with spaces.

Loading the extension imports neither litellm nor pandas: they load with the first run.
"""

from __future__ import annotations

import inspect
import keyword
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

from IPython.core import magic_arguments as ma
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from traitlets import Bool, Dict, Enum, Int, List, TraitError, Unicode, default, validate
from traitlets.config import Configurable

from .cell_messages import flag_hint, for_a_cell
from .errors import ConfigError, RunFailedError

__all__ = [
    "DEFAULT_ALIASES",
    "CellRun",
    "Orchestrate",
    "OrchestrateMagics",
    "format_cell",
    "load_ipython_extension",
    "prepare",
    "unload_ipython_extension",
]

#: Short names for ``-m``; the defaults point at the offline simulated models.
DEFAULT_ALIASES = {
    "oracle": "sim/oracle-large",
    "steady": "sim/steady-medium",
    "swift": "sim/swift-mini",
    "budget-a": "sim/budget-a",
    "budget-b": "sim/budget-b",
    "coin-flip": "sim/coin-flip",
}
DEFAULT_OUT = "_orch"
CACHE_MODES = ("use", "refresh", "off", "replay-only")
PROGRESS_MODES = ("auto", "widget", "text", "none")


class Orchestrate(Configurable):
    """Settings of ``%%orchestrate``: ``%config Orchestrate.default_models = ["oracle", "swift"]``."""

    default_models = List(
        Unicode(),
        help="Models used when a cell gives no -m (litellm ids or aliases).",
    ).tag(config=True)
    default_strategy = Unicode("vote", help="Consensus strategy when a cell gives no -s.").tag(
        config=True
    )
    concurrency = Int(16, help="Calls in flight at once, when a cell gives no --concurrency.").tag(
        config=True
    )
    cache = Enum(list(CACHE_MODES), "use", help="Cache mode when a cell gives no --cache.").tag(
        config=True
    )
    aliases = Dict(
        value_trait=Unicode(),
        key_trait=Unicode(),
        help="Short names for -m: alias -> litellm model id. Setting it replaces the table.",
    ).tag(config=True)
    short_errors = Bool(
        True,
        help="Show a mistake in a cell as one UsageError line (False: the full traceback).",
    ).tag(config=True)
    progress = Enum(
        list(PROGRESS_MODES),
        "auto",
        help="Live progress: widget bars, a text line, none, or auto (widgets for a person, "
        "text in papermill/nbconvert runs).",
    ).tag(config=True)

    @default("aliases")
    def _default_aliases(self) -> dict[str, str]:
        return dict(DEFAULT_ALIASES)

    @validate("concurrency")
    def _check_concurrency(self, proposal: Any) -> int:
        if proposal["value"] <= 0:
            raise TraitError("Orchestrate.concurrency must be a positive whole number")
        return int(proposal["value"])


# ------------------------------------------------------------------------- parsing


@dataclass
class CellRun:
    """A checked ``%%orchestrate`` cell: what to pass to ``orchestrate`` and where to bind it."""

    prompt: str
    models: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    out: str = DEFAULT_OUT
    progress: str = "auto"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _usage(message: object) -> UsageError:
    return UsageError(_one_line(f"%%orchestrate: {message}"))


_LINE_COMMANDS = ("models", "last", "ui", "help")


def _resolve(name: str, aliases: dict[str, str]) -> str:
    return aliases.get(name, name)


def _models(values: list[str] | None, settings: Orchestrate) -> list[str]:
    raw = values if values else list(settings.default_models)
    models = [
        _resolve(part.strip(), settings.aliases)
        for value in raw
        for part in value.split(",")
        if part.strip()
    ]
    if not models:
        raise _usage(
            "no models: name them with -m (e.g. -m oracle -m swift), or set "
            "%config Orchestrate.default_models = ['gpt-4o-mini', 'claude-3-5-haiku-20241022']"
        )
    return models


def _lookup(namespace: dict[str, Any], name: str, option: str) -> Any:
    if name not in namespace:
        raise _usage(f"{option} {name}: there is no variable '{name}' in the notebook")
    return namespace[name]


def _dataframe(namespace: dict[str, Any], name: str) -> Any:
    import pandas as pd

    value = _lookup(namespace, name, "--over")
    if not isinstance(value, pd.DataFrame):
        raise _usage(
            f"--over {name}: '{name}' is a {type(value).__name__}, not a pandas DataFrame "
            "(one run per row); for a list of dicts use pd.DataFrame(records)"
        )
    return value


def _schema(namespace: dict[str, Any], name: str) -> Any:
    value = _lookup(namespace, name, "--schema")
    if not (isinstance(value, type) and callable(getattr(value, "model_validate", None))):
        raise _usage(
            f"--schema {name}: '{name}' is not a pydantic model class "
            "(class Answer(pydantic.BaseModel): ...)"
        )
    return value


def _variables(
    prompt: str, data: Any, namespace: dict[str, Any], over: str | None
) -> dict[str, Any]:
    from .templating import Template

    columns = {str(c) for c in data.columns} if data is not None else set()
    variables: dict[str, Any] = {}
    missing = []
    for name in Template(prompt).names:
        if name in columns:
            continue
        if name in namespace:
            variables[name] = namespace[name]
        else:
            missing.append(name)
    if missing:
        where = f"no column of {over} and no variable" if over else "no variable"
        known = f" (columns of {over}: {', '.join(sorted(columns))})" if over else ""
        raise _usage(
            f"the prompt uses {{{missing[0]}}} but there is {where} called '{missing[0]}' "
            f"in the notebook{known}; define it, or write {{{{{missing[0]}}}}} for literal braces"
        )
    return variables


def _positive(option: str, value: float | None, *, zero: bool = False) -> None:
    if value is not None and not (value >= 0 if zero else value > 0):  # NaN fails too
        kind = "zero or more" if zero else "more than zero"
        raise _usage(f"{option} {value}: must be {kind}")


def _judge(model: str, strategy: str | None, settings: Orchestrate) -> Any:
    from . import strategies

    if "judge" not in strategies.names():
        raise _usage("--judge is not available yet: this version has no judge strategy")
    if strategy not in (None, "judge"):
        raise _usage(f"--judge uses the judge strategy; drop -s {strategy}")
    try:
        return strategies.get("judge", model=_resolve(model, settings.aliases))
    except ConfigError as exc:
        raise _usage(exc) from None


def _budget(usd: float) -> dict[str, Any]:
    from . import api

    if "max_cost_usd" not in inspect.signature(api.orchestrate).parameters:
        raise _usage("--budget is not available yet: this version cannot cap a run's cost")
    return {"max_cost_usd": usd}


def parse_options(line: str) -> Any:
    """The options of a ``%%orchestrate`` line, as an argparse namespace."""
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise _usage(f"cannot read the options ({exc}); check the quotes") from None
    parser = OrchestrateMagics.orchestrate_cell.parser  # type: ignore[attr-defined]
    try:
        return parser.parse_args(argv)
    except UsageError as exc:
        raise _usage(flag_hint(str(exc), parser)) from None


def prepare(line: str, body: str, namespace: dict[str, Any], settings: Orchestrate) -> CellRun:
    """Check a ``%%orchestrate`` cell and turn it into a ``CellRun``; raises ``UsageError``.

    Errors the core would find later (an unknown model, a missing key) are not checked here.
    """
    args = parse_options(line)
    prompt = body.strip()
    if not prompt:
        raise _usage("the cell is empty: write the prompt below the %%orchestrate line")
    models = _models(args.model, settings)
    for option, value in (
        ("--samples", args.samples),
        ("--max-tokens", args.max_tokens),
        ("--concurrency", args.concurrency),
        ("--timeout", args.timeout),
        ("--budget", args.budget),
    ):
        _positive(option, value)
    _positive("--temperature", args.temperature, zero=True)
    _positive("--retries", args.retries, zero=True)
    out = args.out or DEFAULT_OUT
    if not out.isidentifier() or keyword.iskeyword(out):
        raise _usage(f"--out {out}: not a valid Python name")

    data = _dataframe(namespace, args.over) if args.over else None
    steps: list[Any] = list(args.extract or [])
    schema = _schema(namespace, args.schema) if args.schema else None
    extract = None if not steps else steps[0] if len(steps) == 1 else steps
    if args.judge:
        strategy: Any = _judge(args.judge, args.strategy, settings)
    else:
        strategy = args.strategy or settings.default_strategy
    budget = _budget(args.budget) if args.budget is not None else {}
    variables = _variables(prompt, data, namespace, args.over)

    options: dict[str, Any] = {
        "strategy": strategy,
        "extract": extract,
        "concurrency": args.concurrency or settings.concurrency,
        "cache": args.cache or settings.cache,
    }
    if schema is not None:
        options["schema"] = schema  # asks for JSON, validates, and votes field by field
    if data is not None:
        options["data"] = data
    if variables:
        options["variables"] = variables
    optional = {
        "samples": args.samples,
        "temperature": args.temperature,
        "seed": args.seed,
        "max_tokens": args.max_tokens,
        "timeout": args.timeout,
        "retries": args.retries,
        "recordings": args.recordings,
        "system": args.system,
    }
    options.update({k: v for k, v in optional.items() if v is not None})
    if args.strict:
        options["strict"] = True
    options.update(budget)
    progress = "none" if args.no_progress else (args.progress or settings.progress)
    return CellRun(prompt=prompt, models=models, options=options, out=out, progress=progress)


def format_cell(
    prompt: str,
    models: list[str],
    *,
    strategy: str | None = None,
    judge: str | None = None,
    extract: str | None = None,
    over: str | None = None,
    out: str | None = None,
    samples: int | None = None,
    temperature: str | float | None = None,
    seed: str | int | None = None,
    max_tokens: str | int | None = None,
) -> str:
    """The ``%%orchestrate`` cell for these options (quoted so that it parses back the same)."""
    parts = ["%%orchestrate"]
    for model in models:
        parts += ["-m", shlex.quote(model)]
    if judge:
        parts += ["--judge", shlex.quote(judge)]
    elif strategy:
        parts += ["-s", shlex.quote(strategy)]
    for option, value in (
        ("--extract", extract),
        ("--over", over),
        ("--samples", None if samples in (None, 1) else samples),
        ("--temperature", temperature),
        ("--seed", seed),
        ("--max-tokens", max_tokens),
        ("--out", None if out == DEFAULT_OUT else out),
    ):
        if value is not None and str(value).strip() != "":
            parts += [option, shlex.quote(str(value).strip())]
    return " ".join(parts) + "\n" + prompt.strip() + "\n"


# -------------------------------------------------------------------------- magics

_LINE_HELP = """\
%orchestrate models   aliases, default models and which API keys are set (names only)
%orchestrate last     the last run's result
%orchestrate ui       an app to configure and run an orchestration by clicking
%orchestrate help     this help, and the options of %%orchestrate
Settings: %config Orchestrate  (e.g. %config Orchestrate.default_models = ['oracle', 'swift'])"""


@magics_class
class OrchestrateMagics(Magics):
    """``%%orchestrate`` runs a prompt on several models; ``%orchestrate`` has the helpers."""

    def __init__(self, shell: Any, settings: Orchestrate) -> None:
        super().__init__(shell)
        self.settings = settings
        self.last: Any = None

    @no_var_expand
    @ma.magic_arguments("%orchestrate")  # shown as %%orchestrate in the help
    @ma.argument(
        "-m",
        "--model",
        action="append",
        metavar="MODEL",
        help="a litellm model id or an alias; repeat it, or separate ids with commas",
    )
    @ma.argument("-s", "--strategy", help="consensus strategy (default: vote)")
    @ma.argument(
        "--extract",
        action="append",
        metavar="SPEC",
        help="read the answer: number, choice, json, json:FIELD or a regex; repeat for steps",
    )
    @ma.argument("--schema", metavar="NAME", help="a pydantic model class in the notebook")
    @ma.argument("--over", metavar="NAME", help="a DataFrame in the notebook: one run per row")
    @ma.argument(
        "--out", metavar="NAME", help=f"bind the RunResult to NAME (default {DEFAULT_OUT})"
    )
    @ma.argument("--samples", type=int, metavar="N", help="ask each model N times")
    @ma.argument("--temperature", type=float, metavar="T")
    @ma.argument("--seed", type=int, metavar="N", help="a seed, for providers that take one")
    @ma.argument("--max-tokens", type=int, dest="max_tokens", metavar="N")
    @ma.argument("--system", metavar="TEXT", help="a system message")
    @ma.argument("--judge", metavar="MODEL", help="let MODEL pick the best answer (judge strategy)")
    @ma.argument(
        "--cache", choices=CACHE_MODES, metavar="MODE", help="use, refresh, off or replay-only"
    )
    @ma.argument("--recordings", metavar="PATH", help="recordings for replay/ models")
    @ma.argument("--concurrency", type=int, metavar="N", help="calls in flight at once")
    @ma.argument("--timeout", type=float, metavar="SECONDS", help="per call")
    @ma.argument("--retries", type=int, metavar="N", help="per call, on transient errors")
    @ma.argument("--strict", action="store_true", help="fail the cell if any call fails")
    @ma.argument("--budget", type=float, metavar="USD", help="stop before spending more than USD")
    @ma.argument(
        "--progress", choices=PROGRESS_MODES, metavar="MODE", help="auto, widget, text or none"
    )
    @ma.argument("--no-progress", action="store_true", dest="no_progress", help="no progress")
    @cell_magic("orchestrate")  # type: ignore[arg-type]  # IPython's decorator types
    def orchestrate_cell(self, line: str, cell: str) -> Any:
        """Send the cell (a prompt template) to several models; the value is a RunResult.

        ``{name}`` in the prompt comes from the ``--over`` DataFrame's columns, then from the
        notebook's variables; other braces stay as written.
        """
        settings, namespace = self.settings, self.namespace
        run = self._checked(lambda: prepare(line, cell or "", namespace, settings))
        from .api import orchestrate
        from .progress import start

        reporter = start(run.progress, self.shell)
        try:
            result = self._checked(
                lambda: orchestrate(
                    run.prompt,
                    run.models,
                    progress=reporter,
                    on_start=reporter.attach,
                    **run.options,
                )
            )
        except RunFailedError as exc:
            if exc.result is not None:
                namespace[run.out] = exc.result
                self.last = exc.result
                print(
                    f"nbtoolkit: the failed run is in {run.out} (see {run.out}.errors)",
                    file=sys.stderr,
                )
            raise
        finally:
            reporter.close()
        namespace[run.out] = result
        self.last = result
        totals = result.totals()
        failed = totals["failed"]
        if result.cancelled:
            print(
                f"nbtoolkit: cancelled; the finished rows are in {run.out}",
                file=sys.stderr,
            )
        elif failed:
            print(
                f"nbtoolkit: {failed} of {totals['calls']} calls failed; see {run.out}.errors",
                file=sys.stderr,
            )
        return result

    @property
    def namespace(self) -> dict[str, Any]:
        """The notebook's variables."""
        assert self.shell is not None, "the magics are registered with a shell"
        return self.shell.user_ns  # type: ignore[no-any-return]

    def _checked(self, step: Any) -> Any:
        """Run ``step``; a ``ConfigError`` (a user mistake) becomes one ``UsageError`` line."""
        try:
            return step()
        except ConfigError as exc:
            if not self.settings.short_errors:
                raise
            raise _usage(for_a_cell(exc, self.settings.aliases)) from None

    @line_magic("orchestrate")  # type: ignore[arg-type]
    def orchestrate_line(self, line: str) -> Any:
        """%orchestrate models | last | ui | help"""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%orchestrate: {exc}") from None
        command = words[0] if words else "help"
        if len(words) > 1:
            raise UsageError(f"%orchestrate {command}: takes no arguments ({' '.join(words[1:])})")
        if command == "models":
            print(self.models_text())
            return None
        if command == "last":
            if self.last is None:
                raise UsageError("%orchestrate last: no run yet in this session")
            return self.last
        if command == "help":
            print(_LINE_HELP)
            print()
            print(self.orchestrate_cell.parser.format_help())  # type: ignore[attr-defined]
            return None
        if command == "ui":
            from .widgets import ui

            return ui(shell=self.shell)
        from .suggest import did_you_mean

        raise UsageError(
            f"%orchestrate {command}: unknown command.{did_you_mean(command, _LINE_COMMANDS)} "
            "Use models, last, ui or help "
            "(a run is a cell: %%orchestrate -m MODEL ...)"
        )

    def models_text(self) -> str:
        """Aliases, defaults, and which API key variables are set (never their values)."""
        s = self.settings
        lines = ["Aliases for -m (%config Orchestrate.aliases = {...} replaces them):"]
        width = max((len(a) for a in s.aliases), default=0)
        for alias, model in sorted(s.aliases.items()):
            note = "  (simulated, offline)" if model.startswith("sim/") else ""
            lines.append(f"  {alias:<{width}}  -> {model}{note}")
        defaults = ", ".join(s.default_models) or "(none: every cell names its -m)"
        lines += [
            f"Default models: {defaults}",
            f"Default strategy: {s.default_strategy}; concurrency {s.concurrency}; "
            f"cache {s.cache}; progress {s.progress}",
            "API keys in the environment (names only, never values):",
        ]
        from .providers import key_variables

        for name, is_set in key_variables():
            lines.append(f"  {name:<20} {'set' if is_set else 'not set'}")
        lines.append("Any litellm model id works: https://docs.litellm.ai/docs/providers")
        return "\n".join(lines)


# ----------------------------------------------------------------------- extension


def _settings(ipython: Any) -> Orchestrate | None:
    for configurable in ipython.configurables:
        if type(configurable).__name__ == "Orchestrate":
            return configurable  # type: ignore[no-any-return]
    return None


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and the ``Orchestrate`` settings; loading twice changes nothing."""
    if "OrchestrateMagics" in ipython.magics_manager.registry:
        return
    settings = _settings(ipython)
    if settings is None:
        settings = Orchestrate(parent=ipython)
        ipython.configurables.append(settings)
    ipython.register_magics(OrchestrateMagics(ipython, settings))


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics and the settings again."""
    manager = ipython.magics_manager
    magics = manager.registry.pop("OrchestrateMagics", None)
    for kind in ("line", "cell"):
        fn = manager.magics[kind].get("orchestrate")
        if fn is not None and getattr(fn, "__self__", None) is magics:
            del manager.magics[kind]["orchestrate"]
    ipython.configurables[:] = [
        c for c in ipython.configurables if type(c).__name__ != "Orchestrate"
    ]
