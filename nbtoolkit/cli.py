"""The ``nbtoolkit`` command.

::

    nbtoolkit demo                 # a report on five simulated models, offline: nbtoolkit-demo/
    nbtoolkit report TEMPLATE -p NAME VALUE ... [-f params.yaml] -o OUT.ipynb [--html OUT.html]
                     [--replay-only] [--batch] [--estimate]
    nbtoolkit models               # the simulated profiles, and which API keys are set
    nbtoolkit models --proxy [URL] # the models a LiteLLM proxy serves to your key
    nbtoolkit cache info|clear|export PATH
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import MissingAPIKeyError, NbtoolkitError


def _agreement(s: dict[str, Any], rows: int) -> str:
    """The summary's agreement counts as the displays word them (a record written before
    the counts were split has only ``disagreements``)."""
    from .results import agreement_sentence

    disagree = s.get("disagreements", 0)
    counts = {
        "disagree": disagree,
        "one_answer": s.get("one_answer", 0),
        "no_answer": s.get("no_answer", 0),
    }
    agree = s.get("agree", rows - sum(counts.values()))
    return agreement_sentence({"agree": agree, **counts})


def cmd_demo(args: argparse.Namespace) -> int:
    """The compare_models report on five simulated models, offline: HTML + notebook."""
    from .report import run_report

    html = Path(args.output)
    if html.suffix != ".html":
        raise NbtoolkitError(f"the demo writes an HTML file: {html.name!r} should end in .html")
    notebook = html.with_suffix(".ipynb")
    html.parent.mkdir(parents=True, exist_ok=True)  # the demo's files in a folder of their own
    print(
        f"Running the compare_models report: {args.rows} arithmetic questions, 5 simulated "
        "models (offline, no API key), majority vote...",
        file=sys.stderr,
    )
    start = time.perf_counter()
    run = run_report(
        "compare_models",
        notebook,
        parameters={
            "title": "nbtoolkit demo: five simulated models, one vote",
            "rows": args.rows,
            "seed": args.seed,
            "rationale": "a mixed panel (strong, medium, cheap, and two cheap models that share "
            "their mistakes) shows what a vote fixes and what it cannot",
        },
        html=html,
    )
    elapsed = time.perf_counter() - start
    frames = ", ".join(str(p) for p in run.frames.values())
    print(
        f"Wrote {html} (the report: open it in a browser), {notebook} (the run, with its "
        f"manifest)" + (f" and the result frames {frames}." if frames else ".")
    )
    for line in summary_lines(run.record.get("summary", {}), elapsed):
        print(line)
    return 0


def summary_lines(s: dict[str, Any], elapsed: float) -> list[str]:
    """Five lines: what was asked, the outcome, confidence, cost, time."""
    from .formatting import format_cost

    rows, models = s.get("rows", 0), s.get("models", [])
    simulated = len(s.get("simulated", []))
    kind = f"{simulated} simulated" if simulated == len(models) else f"{len(models)}"
    lines = [f"  asked       {rows} row(s) of {kind} model(s), strategy {s.get('strategy')}"]
    if s.get("accuracy") is not None:
        from .calibration import compared

        acc, best = s["accuracy"], s.get("best_model_accuracy") or 0.0
        lines.append(
            f"  consensus   right on {round(acc * rows)} of {rows} ({acc:.0%}), "
            + compared(acc, best, f"the best single model {s.get('best_model')}")
            + f": {round(best * rows)} of {rows} ({best:.0%})"
        )
    else:
        lines.append(f"  consensus   {_agreement(s, rows)}")
    mean = s.get("mean_confidence")
    several = rows - s.get("one_answer", 0) - s.get("no_answer", 0)
    lines.append(
        f"  confidence  mean {mean:.2f}; {s.get('low_confidence', 0)} row(s) below the threshold; "
        f"models disagree on {s.get('disagreements', 0)} of {several} row(s)"
        + (" with two or more valid answers" if several != rows else "")
        if mean is not None
        else "  confidence  no rows"
    )
    cost = s.get("cost_usd")
    money = format_cost(cost) if cost is not None else "unknown (a price is not known)"
    money += s.get("price_note", " at simulated prices" if simulated else "")
    tokens = f"{s.get('tokens', 0):,} tokens"
    if unknown := s.get("unknown_token_calls", 0):
        tokens = (
            f"at least {tokens} (unknown for {unknown} call(s))"
            if s.get("tokens")
            else f"tokens unknown ({unknown} call(s) without counts)"
        )
    lines.append(f"  cost        {money}, {s.get('calls', 0)} calls, {tokens}")
    note = s.get("time_note") or ""
    lines.append(
        f"  time        {s.get('wall_s', 0.0):.1f} s of calls, wall-clock"
        + (f" ({note})" if note else "")
        + f"; {elapsed:.1f} s in all (kernel start and HTML included)"
    )
    return lines


def cmd_report(args: argparse.Namespace) -> int:
    """Run a report template with papermill, then write its HTML."""
    from . import report

    # A parameters file is text like -p values: the template's annotations type it, not YAML.
    given: dict[str, Any] = {}
    from_file = _parameters_file(args.parameters_file) if args.parameters_file else {}
    cli = [*from_file.items(), *(tuple(p) for p in args.parameter)]
    if args.list_parameters:
        for param in report.template_parameters(report.template_path(args.template)).values():
            print(f"  {param.describe()}")
        return 0
    if args.estimate:
        for name, estimate in report.estimate_template(args.template, given, cli):
            print(f"== {name} ==\n{estimate!r}\n")
        print("Nothing was sent: this is an estimate.")
        return 0
    if not args.output:
        raise NbtoolkitError("report needs -o OUT.ipynb: where to write the executed notebook")
    try:
        run = report.run_report(
            args.template,
            args.output,
            parameters=given,
            cli_parameters=cli,
            html=False if args.no_html else (args.html or True),
            replay_only=args.replay_only,
            batch=args.batch,
            show_input=args.show_input,
            kernel_name=args.kernel,
            timeout=args.timeout,
        )
    except report.CellError as exc:
        print(f"nbtoolkit: {exc}", file=sys.stderr)
        print(f"nbtoolkit: the partial notebook is kept at {exc.notebook}", file=sys.stderr)
        return 1
    written = [str(run.notebook)] + ([str(run.html)] if run.html else [])
    written += [str(p) for p in run.frames.values()]
    print("Wrote " + ", ".join(written))
    summary = run.record.get("summary")
    if summary:
        for line in summary_lines(summary, 0.0)[:-1]:
            print(line)
    return 0


def _parameters_file(path: str) -> dict[str, Any]:
    """A YAML parameters file as text: each value is typed later by the template."""
    import yaml

    from .report import yaml_text

    try:
        with open(path, encoding="utf-8") as fh:
            loaded = yaml_text(fh.read())
    except OSError as exc:
        raise NbtoolkitError(f"cannot read the parameters file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise NbtoolkitError(f"{path} is not UTF-8 text: save it as UTF-8") from None
    except yaml.YAMLError as exc:
        raise NbtoolkitError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise NbtoolkitError(f"{path} must hold a mapping of parameter names to values")
    return {str(k): v for k, v in loaded.items()}


def cmd_models(args: argparse.Namespace) -> int:
    if args.proxy is not None:
        return _proxy_models(args.proxy or None)
    from .providers import key_lines, sim

    print("Simulated models (offline, for demos and teaching):")
    for name, profile in sim.PROFILES.items():
        print(f"  sim/{name:15s} {profile.description}")
    print()
    for line in key_lines():
        print(line)
    print("\nAny litellm model id works: https://docs.litellm.ai/docs/providers")
    return 0


def _proxy_models(url: str | None) -> int:
    """What the proxy (``url``, else ``$NBTOOLKIT_PROXY_URL``) serves to the key in
    ``$NBTOOLKIT_PROXY_KEY_ENV``'s variable; the key itself is never printed."""
    from .providers import as_proxy, served_models
    from .providers.proxy import ENV_URL

    proxy = as_proxy(url)
    if proxy is None:
        raise NbtoolkitError(
            f"models --proxy needs the proxy's URL: nbtoolkit models --proxy "
            f"http://proxy:4000, or export {ENV_URL}=http://proxy:4000"
        )
    names = served_models(proxy)
    print(f"Models the LiteLLM proxy at {proxy.url} serves to the key in ${proxy.variable}:")
    for name in names:
        print(f"  {name}")
    if not names:
        print("  (none: ask the proxy's admin which models your key may use)")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from .store import open_cache

    cache = open_cache()  # $NBTOOLKIT_CACHE_URL (a shared Redis) or the local file
    if args.action == "info":
        info = cache.info()
        size = f", {info['bytes'] / 1e6:.1f} MB" if info.get("bytes") is not None else ""
        print(f"{info['path']}: {info['entries']} entries{size}")
    elif args.action == "clear":
        print(f"removed {cache.clear()} entries from {cache.path}")
    elif args.action == "export":
        if not args.path:
            raise NbtoolkitError(
                "cache export needs a file: nbtoolkit cache export recordings.jsonl.gz"
            )
        print(f"wrote {cache.export(args.path)} recordings to {args.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbtoolkit", description="Multi-model LLM orchestration, from the command line."
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"nbtoolkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="a report comparing five simulated models, offline: writes HTML + notebook"
    )
    demo.add_argument("--rows", type=int, default=12, help="how many questions (default 12)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "-o",
        "--output",
        default="nbtoolkit-demo/report.html",
        help="the HTML file to write; the notebook and CSVs go beside it "
        "(default: nbtoolkit-demo/report.html)",
    )
    demo.set_defaults(func=cmd_demo)
    report = sub.add_parser(
        "report",
        help="run a report template with papermill and write a self-contained HTML",
        description="Run a parameterised report notebook (papermill), then write its HTML "
        "(code hidden). Parameters are checked against the template's parameters cell first.",
    )
    report.add_argument(
        "template", help="a notebook, or a built-in template: compare_models, batch_eval, pipeline"
    )
    report.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a template parameter (lists as YAML: '[a, b]'); repeat for more",
    )
    report.add_argument("-f", "--parameters-file", metavar="PARAMS.yaml", help="parameters as YAML")
    report.add_argument("-o", "--output", metavar="OUT.ipynb", help="the executed notebook")
    report.add_argument("--html", metavar="OUT.html", help="the HTML (default: OUT.html)")
    report.add_argument("--no-html", action="store_true", help="write the notebook only")
    report.add_argument(
        "--replay-only",
        action="store_true",
        help="answer every call from the cache, make no provider call (same numbers)",
    )
    report.add_argument(
        "--batch",
        action="store_true",
        help="through the providers' batch APIs (about half price, answered within 24 h)",
    )
    report.add_argument(
        "--estimate", action="store_true", help="print calls, tokens and cost; run nothing"
    )
    report.add_argument("--show-input", action="store_true", help="show the code in the HTML")
    report.add_argument(
        "--kernel", metavar="NAME", help="a Jupyter kernel name (default: this Python)"
    )
    report.add_argument("--timeout", type=float, help="seconds allowed per cell")
    report.add_argument(
        "--list-parameters", action="store_true", help="print the template's parameters"
    )
    report.set_defaults(func=cmd_report)
    models = sub.add_parser("models", help="list simulated models and which API keys are set")
    models.add_argument(
        "--proxy",
        nargs="?",
        const="",
        default=None,
        metavar="URL",
        help="list what a LiteLLM proxy serves to your key (default URL: $NBTOOLKIT_PROXY_URL)",
    )
    models.set_defaults(func=cmd_models)
    cache = sub.add_parser("cache", help="inspect, clear or export the call cache")
    cache.add_argument("action", choices=["info", "clear", "export"])
    cache.add_argument("path", nargs="?", help="with export: the recordings file to write")
    cache.set_defaults(func=cmd_cache)
    return parser


def for_the_shell(exc: NbtoolkitError) -> str:
    """A mistake's line in the shell's terms: ``export VAR=...``, not Python's os.environ."""
    if isinstance(exc, MissingAPIKeyError) and len(exc.missing) > 1:
        said = "; ".join(f"{label} needs {' or '.join(names)}" for label, names in exc.missing)
        exports = " ".join(f"{names[0]}=..." for _, names in exc.missing)
        return (
            f"API keys are missing: {said}. Set them in the shell (export {exports}), or keep "
            "a key in another variable and pass its name with -p api_key_env NAME"
        )
    if isinstance(exc, MissingAPIKeyError) and exc.variables:
        names = " or ".join(exc.variables)
        return (
            f"{exc.model} needs the environment variable {names}: set it in the shell "
            f"(export {exc.variables[0]}=...), or keep the key in another variable and pass "
            "its name with -p api_key_env NAME"
        )
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except NbtoolkitError as exc:
        print(f"nbtoolkit: {for_the_shell(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nbtoolkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
