"""``nbtoolkit.ui()`` (or ``%orchestrate ui``): configure and run an orchestration by clicking.

The app is made of standard ipywidgets around the same call as ``%%orchestrate``: it writes
the equivalent cell as you click (paste it into a cell to re-run the same thing), and a run
parses that very cell text, so the two cannot drift apart. Runs go on a background thread:
the notebook stays responsive and Cancel stops the run, keeping the finished rows. Errors,
including those inside callbacks, are printed in the app.

DOM hooks (for browser tests): the root has class ``nbtoolkit-app``, the Run button class
``nbtoolkit-run`` (description "Run"), Cancel ``nbtoolkit-cancel-run``, the result is the
RunResult's HTML (table class ``nbtoolkit-consensus``) inside ``nbtoolkit-result-output``;
one toggle button per alias has class ``nbtoolkit-pick`` (its text is the alias), and the
equivalent cell is the text of ``nbtoolkit-cell``.
"""

from __future__ import annotations

import html
import threading
import traceback
from typing import Any

import ipywidgets as w
from IPython.core.error import UsageError

from ..errors import ConfigError, RunFailedError
from . import cells
from .cell_messages import for_a_cell
from .progress import WidgetProgress
from .settings import DEFAULT_OUT, settings_for

__all__ = ["App", "ui"]

_EXTRACTS = ["number", "choice", "json", "json:answer"]
_WIDE = w.Layout(width="100%")
# What nbt.estimate takes of a cell's options (it makes no call, so no cache or progress).
_ESTIMATE_OPTIONS = ("data", "variables", "samples", "max_tokens", "system")


def _dataframe_names(namespace: dict[str, Any]) -> list[str]:
    import pandas as pd

    return sorted(
        name
        for name, value in namespace.items()
        if not name.startswith("_") and isinstance(value, pd.DataFrame)
    )


class App:
    """The widget app; display it, or drive it from code (``app.run(wait=True)``)."""

    def __init__(self, *, shell: Any = None, namespace: dict[str, Any] | None = None) -> None:
        if shell is None:
            from IPython import get_ipython

            shell = get_ipython()
        self.shell = shell
        if namespace is None:
            namespace = shell.user_ns if shell is not None else {}
        self.namespace: dict[str, Any] = namespace
        self.settings = settings_for(shell)
        self.result: Any = None
        self.reporter: WidgetProgress | None = None
        self._thread: threading.Thread | None = None
        self._build()
        self.refresh()
        self._update_cell()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        from .. import strategies

        aliases = sorted(self.settings.aliases)
        defaults = list(self.settings.default_models)
        # The user's order, kept: it is the cell's -m order, and a vote's tie goes to the first.
        # Tags can be dragged to reorder; typing one offers the aliases.
        self.models = w.TagsInput(
            value=[m for m in defaults if m in self.settings.aliases],
            allowed_tags=aliases,
            allow_duplicates=False,
            description="models",
            layout=_WIDE,
        )
        self.models.add_class("nbtoolkit-models")
        # One button per alias: a click adds it at the end (the click order is the -m order),
        # a second click takes it out. The tags above show the order and can be dragged.
        self.picks = {
            alias: w.ToggleButton(
                description=alias,
                value=alias in self.models.value,
                tooltip=self.settings.aliases[alias],
                layout=w.Layout(width="auto"),
            )
            for alias in aliases
        }
        for alias, button in self.picks.items():
            button.add_class("nbtoolkit-pick")
            button.observe(
                lambda change, alias=alias: self._guarded(lambda: self._pick(alias, change["new"])),
                names="value",
            )
        self.models.observe(lambda _change: self._guarded(self._sync_picks), names="value")
        self.other_models = w.Text(
            value=", ".join(m for m in defaults if m not in self.settings.aliases),
            description="other ids",
            placeholder="litellm ids, comma-separated: gpt-4o-mini, claude-3-5-haiku-20241022",
            layout=_WIDE,
        )
        # For the typed ids only: a vLLM, Ollama or LM Studio server, or a LiteLLM proxy.
        self.api_base = w.Text(
            description="api_base",
            placeholder="their server, e.g. http://127.0.0.1:8000/v1 (empty: the provider's)",
            layout=_WIDE,
        )
        self.api_key_env = w.Text(
            description="key variable",
            placeholder="the environment variable holding their key (its name, never the key)",
            layout=_WIDE,
        )
        names = strategies.names()
        default = self.settings.default_strategy
        self.strategy = w.Dropdown(
            options=names, value=default if default in names else names[0], description="strategy"
        )
        self.judge = w.Text(description="judge", placeholder="the model that picks the best answer")
        self.judge.add_class("nbtoolkit-judge")
        self.threshold = w.BoundedIntText(
            value=2, min=1, max=100, description="agree", tooltip="stop once N answers agree"
        )
        self.threshold.add_class("nbtoolkit-threshold")
        # Each strategy's own options, shown only while it is chosen.
        self.strategy_options = {"judge": [self.judge], "cascade": [self.threshold]}
        self.strategy.observe(
            lambda _change: self._guarded(self._show_strategy_options), names="value"
        )
        self.samples = w.BoundedIntText(value=1, min=1, max=100, description="samples")
        self.extract = w.Combobox(
            options=_EXTRACTS, placeholder="whole reply", description="extract", ensure_option=False
        )
        self.temperature = w.Text(description="temperature", placeholder="default")
        self.seed = w.Text(description="seed", placeholder="none")
        self.max_tokens = w.Text(description="max tokens", placeholder="default")
        self.data = w.Dropdown(description="over", options=[("(no DataFrame: one run)", "")])
        self.refresh_button = w.Button(
            icon="refresh", tooltip="list the DataFrames again", layout=w.Layout(width="3em")
        )
        self.out = w.Text(value=DEFAULT_OUT, description="save as")
        self.budget = w.Text(description="budget $", placeholder="no cap")
        self.prompt = w.Textarea(
            placeholder="{question}\nAnswer with a number.",
            description="prompt",
            rows=6,
            layout=_WIDE,
        )
        self.run_button = w.Button(description="Run", button_style="primary")
        self.run_button.add_class("nbtoolkit-run")
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self.cancel_button.add_class("nbtoolkit-cancel-run")
        self.estimate_button = w.Button(description="Estimate", icon="calculator")
        self.estimate_button.add_class("nbtoolkit-estimate")
        self.clear_button = w.Button(description="Clear", icon="eraser")
        self.clear_button.add_class("nbtoolkit-clear")
        self.cell = w.HTML()
        self.cell.add_class("nbtoolkit-cell")
        self.progress_box = w.VBox()
        self.messages = w.Output()
        self.messages.add_class("nbtoolkit-messages")
        self.result_output = w.Output()
        self.result_output.add_class("nbtoolkit-result-output")

        self.run_button.on_click(lambda _b: self._guarded(self.run))
        self.cancel_button.on_click(lambda _b: self._guarded(self.cancel))
        self.refresh_button.on_click(lambda _b: self._guarded(self.refresh))
        self.estimate_button.on_click(lambda _b: self._guarded(self.estimate))
        self.clear_button.on_click(lambda _b: self._guarded(self.clear))
        for field in self._fields():
            field.observe(lambda _change: self._guarded(self._update_cell), names="value")

        self.root = w.VBox(
            [
                w.HTML("<strong>nbtoolkit</strong>: one prompt, several models, a consensus"),
                w.HTML(
                    "<small>models, in order (drag to reorder; a tie goes to the first): "
                    "aliases " + html.escape(", ".join(aliases)) + "</small>"
                ),
                w.HBox(list(self.picks.values()), layout=w.Layout(flex_flow="row wrap")),
                self.models,
                self.other_models,
                self.api_base,
                self.api_key_env,
                w.HBox([self.strategy, self.judge, self.threshold, self.samples]),
                w.HBox([self.extract, self.temperature]),
                w.HBox([self.seed, self.max_tokens]),
                w.HBox([self.data, self.refresh_button, self.out]),
                self.budget,
                self.prompt,
                w.HBox(
                    [self.run_button, self.cancel_button, self.estimate_button, self.clear_button]
                ),
                self.progress_box,
                self.messages,
                w.HTML("<em>The same run as a cell:</em>"),
                self.cell,
                self.result_output,
            ]
        )
        self.root.add_class("nbtoolkit-app")
        self._show_strategy_options()

    def _pick(self, alias: str, chosen: bool) -> None:
        current = list(self.models.value)
        if chosen and alias not in current:
            self.models.value = [*current, alias]
        elif not chosen and alias in current:
            self.models.value = [m for m in current if m != alias]

    def _sync_picks(self) -> None:
        for alias, button in self.picks.items():
            button.value = alias in self.models.value  # unchanged values fire no event

    def _show_strategy_options(self) -> None:
        for name, fields in self.strategy_options.items():
            for field in fields:
                field.layout.display = "" if self.strategy.value == name else "none"

    def _fields(self) -> list[Any]:
        return [
            self.models,
            self.other_models,
            self.api_base,
            self.api_key_env,
            self.budget,
            self.strategy,
            self.judge,
            self.threshold,
            self.samples,
            self.extract,
            self.temperature,
            self.seed,
            self.max_tokens,
            self.data,
            self.out,
            self.prompt,
        ]

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.root._repr_mimebundle_(**kwargs)

    # ------------------------------------------------------------------- actions
    def refresh(self) -> None:
        """List the notebook's DataFrames again in the ``over`` picker."""
        current = self.data.value
        names = _dataframe_names(self.namespace)
        self.data.options = [("(no DataFrame: one run)", "")] + [(n, n) for n in names]
        self.data.value = current if current in ("", *names) else ""

    def model_list(self) -> list[str]:
        """The chosen aliases in the order the user gave them, then the typed ids."""
        return [*self.models.value, *self._typed()]

    def _typed(self) -> list[str]:
        return [m.strip() for m in self.other_models.value.split(",") if m.strip()]

    def cell_text(self) -> str:
        """The ``%%orchestrate`` cell equivalent to the app's fields."""
        judge = self.judge.value.strip() if self.strategy.value == "judge" else ""
        return cells.format_cell(
            self.prompt.value,
            list(self.models.value),
            strategy=self.strategy.value,
            judge=judge or None,
            extract=self.extract.value.strip() or None,
            over=self.data.value or None,
            out=self.out.value.strip() or None,
            samples=self.samples.value,
            temperature=self.temperature.value,
            seed=self.seed.value,
            max_tokens=self.max_tokens.value,
            own_models=self._typed(),
            api_base=self.api_base.value,
            api_key_env=self.api_key_env.value,
            budget=self.budget.value,
            threshold=self.threshold.value,
        )

    def _update_cell(self) -> None:
        self.cell.value = (
            "<pre style='white-space:pre-wrap;margin:0;padding:4px 8px;"
            "border:1px solid #d1d5db'>" + html.escape(self.cell_text()) + "</pre>"
        )

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self, wait: bool = False) -> Any:
        """Run the cell shown in the app; ``wait=True`` runs here and returns the RunResult.

        Otherwise the run goes on a background thread and ``app.result`` is set when it ends.
        """
        if self.running:
            self._say("A run is going: cancel it first.")
            return None
        self.messages.outputs = ()
        self._clear()  # the last run's progress and result must not sit under this run's news
        self.result = None
        run = self._prepared()
        if run is None:
            return None
        self.reporter = WidgetProgress()
        self.progress_box.children = (self.reporter.widget,)
        self.run_button.disabled = True
        self.cancel_button.disabled = False
        if wait:
            self._work(run, self.reporter)
            return self.result
        self._thread = threading.Thread(
            target=self._work, args=(run, self.reporter), name="nbtoolkit-ui", daemon=True
        )
        self._thread.start()
        return None

    def estimate(self) -> Any:
        """Show what the cell would cost before running it (``nbt.estimate``: tokens by
        litellm's counter, prices from its table); returns the ``Estimate``."""
        from ..estimates import estimate

        self.messages.outputs = ()
        run = self._prepared()
        if run is None:
            return None
        options = {k: v for k, v in run.options.items() if k in _ESTIMATE_OPTIONS}
        found = estimate(run.prompt, run.models, **options)
        self.messages.outputs = (_display(found),)
        return found

    def clear(self) -> None:
        """Remove the last run's progress, messages and result from the app (the result
        stays bound to its name in the notebook)."""
        if self.running:
            self._say("A run is going: cancel it first.")
            return
        self.messages.outputs = ()
        self._clear()

    def _prepared(self) -> cells.CellRun | None:
        text = self.cell_text()
        header, _, body = text.partition("\n")
        try:
            return cells.prepare(
                header.removeprefix("%%orchestrate"), body, self.namespace, self.settings
            )
        except UsageError as exc:
            self._say(str(exc))
            return None

    def cancel(self) -> None:
        """Stop the run going; the finished rows are kept and shown."""
        if self.reporter is not None:
            self.reporter.cancel()
        self.cancel_button.disabled = True

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for a background run to end; returns ``app.result``."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result

    def _work(self, run: cells.CellRun, reporter: WidgetProgress) -> None:
        from ..api import orchestrate

        result: Any = None
        try:
            result = orchestrate(
                run.prompt,
                run.models,
                progress=reporter,
                on_start=reporter.attach,
                **run.options,
            )
        except RunFailedError as exc:
            result = exc.result
            self._say(f"Every call failed: {exc}")
        except ConfigError as exc:
            self._clear()
            self._say(" ".join(f"%%orchestrate: {for_a_cell(exc, self.settings.aliases)}".split()))
        except Exception:  # a bug: show it where the user looks
            self._clear()
            self.messages.append_stderr(traceback.format_exc())
        finally:
            self.run_button.disabled = False
            self.cancel_button.disabled = True
        if result is None:
            return
        self.result = result
        self.namespace[run.out] = result
        if result.cancelled:
            self._say(f"Cancelled: the finished rows are in {run.out}.")
        self.result_output.outputs = (_display(result),)

    def _clear(self) -> None:
        """No progress bars and no result shown: what a failed start leaves."""
        self.progress_box.children = ()
        self.result_output.outputs = ()

    def _say(self, text: str) -> None:
        self.messages.append_stderr(text.rstrip("\n") + "\n")

    def _guarded(self, action: Any) -> None:
        """Run a callback; an exception is shown in the app, not swallowed by ipywidgets."""
        try:
            action()
        except UsageError as exc:
            self._say(str(exc))
        except Exception:
            self.messages.append_stderr(traceback.format_exc())


def _display(shown: Any) -> dict[str, Any]:
    """An output of the object's HTML and text, whatever the shell's formatters are."""
    return {
        "output_type": "display_data",
        "data": {"text/html": shown._repr_html_(), "text/plain": repr(shown)},
        "metadata": {},
    }


def ui(*, shell: Any = None, namespace: dict[str, Any] | None = None) -> App:
    """The orchestration app: models, strategy, prompt, a DataFrame, Run/Cancel, the result.

    >>> import nbtoolkit.widgets
    >>> nbtoolkit.widgets.ui()                                          # doctest: +SKIP
    """
    return App(shell=shell, namespace=namespace)
