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

import shlex
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand

from ..errors import ConfigError, RunFailedError, RunInterrupted
from .cell_messages import for_a_cell
from .cells import cell_options, prepare, usage
from .settings import Orchestrate, settings_of

__all__ = ["OrchestrateMagics", "load_ipython_extension", "unload_ipython_extension"]

_LINE_COMMANDS = ("models", "last", "ui", "help")
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
    @cell_options
    @cell_magic("orchestrate")  # type: ignore[arg-type]  # IPython's decorator types
    def orchestrate_cell(self, line: str, cell: str) -> Any:
        """Send the cell (a prompt template) to several models; the value is a RunResult.

        ``{name}`` in the prompt comes from the ``--over`` DataFrame's columns, then from the
        notebook's variables; other braces stay as written.
        """
        settings, namespace = self.settings, self.namespace
        run = self._checked(lambda: prepare(line, cell or "", namespace, settings))
        from ..api import orchestrate
        from ..progress import NullProgress, start
        from .streaming import wanted

        watched = wanted(self.shell)
        stream = watched if run.stream == "auto" else bool(run.stream)
        # Streamed where a person watches: the panes show what the bars would.
        reporter = NullProgress() if stream and watched else start(run.progress, self.shell)
        try:
            result = self._checked(
                lambda: orchestrate(
                    run.prompt,
                    run.models,
                    progress=reporter,
                    on_start=reporter.attach,
                    stream=stream,
                    **run.options,
                )
            )
        except RunInterrupted as stop:
            # The cell still stops (a Run All goes no further), with the finished rows kept.
            namespace[run.out] = stop.result
            self.last = stop.result
            print(
                f"nbtoolkit: interrupted; the finished rows are in {run.out}",
                file=sys.stderr,
            )
            raise
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
            raise usage(for_a_cell(exc, self.settings.aliases)) from None

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
        from ..suggest import did_you_mean

        raise UsageError(
            f"%orchestrate {command}: unknown command.{did_you_mean(command, _LINE_COMMANDS)} "
            "Use models, last, ui or help "
            "(a run is a cell: %%orchestrate -m MODEL ...)"
        )

    def configured_models(self) -> list[Any]:
        """The models this notebook names: its aliases, default models, and the ``nbt.Model``
        variables (or lists of them) ``-m`` may name."""
        from ..spec import Model

        s = self.settings
        found: list[Any] = []
        for model_id in [*s.aliases.values(), *s.default_models]:
            model_id = s.aliases.get(model_id, model_id)
            try:
                found.append(Model(model_id))
            except Exception:  # a setting that is no model id: -m reports it when used
                continue
        for name, value in self.namespace.items():
            if name.startswith("_"):
                continue
            values = value if isinstance(value, (list, tuple)) else [value]
            found += [v for v in values if isinstance(v, Model)]
        return found

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
        ]
        from ..providers import key_lines

        lines += key_lines(self.configured_models())
        lines.append("Any litellm model id works: https://docs.litellm.ai/docs/providers")
        return "\n".join(lines)


# ----------------------------------------------------------------------- extension


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and the ``Orchestrate`` settings; loading twice changes nothing."""
    if "OrchestrateMagics" in ipython.magics_manager.registry:
        return
    settings = settings_of(ipython)
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
