"""The ``nbtoolkit`` command.

::

    nbtoolkit demo                 # a small panel of simulated models, offline, no key needed
    nbtoolkit models               # the simulated profiles, and which API keys are set
    nbtoolkit cache info|clear|export PATH
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from .errors import NbtoolkitError

DEMO_MODELS = [
    "sim/oracle-large",
    "sim/steady-medium",
    "sim/swift-mini",
    "sim/budget-a",
    "sim/budget-b",
]


class TerminalProgress:
    """One line on stderr, rewritten in place: done/total per model and the money spent."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = -1

    def __call__(self, state: Any) -> None:
        done = state.completed
        if not self.live and not state.finished:
            return
        if done == self.last and not state.finished:
            return
        self.last = done
        failed = sum(state.failed.values())
        line = f"  {done}/{state.all} calls, {failed} failed, ${state.cost_usd:.4f} spent"
        end = "\n" if state.finished else ""
        self.stream.write("\r" + line + end)
        self.stream.flush()


def cmd_demo(args: argparse.Namespace) -> int:
    import pandas as pd

    from .api import orchestrate
    from .providers import sim

    bank = pd.DataFrame(sim.question_bank()[: args.rows]).rename(columns={"answer": "gold"})
    print(
        f"Asking {len(DEMO_MODELS)} simulated models (offline, no API key) "
        f"{len(bank)} arithmetic questions, then voting.\n"
    )
    res = orchestrate(
        "{question}\nReason briefly, then reply as JSON with an 'answer' field.",
        DEMO_MODELS,
        data=bank,
        extract=["json:answer", "number"],
        seed=args.seed,
        progress=TerminalProgress(),
    )
    with pd.option_context(
        "display.width", 140, "display.max_columns", 20, "display.max_colwidth", 40
    ):
        print("\n== outputs: one row per (question, model) ==")
        shown = res.outputs.drop(columns=["output", "sample", "cached"]).head(15)
        shown["error"] = shown["error"].str.slice(0, 45)
        print(shown.to_string())
        print(f"... {len(res.outputs)} rows in all\n")
        print("== consensus: one row per question ==")
        print(res.consensus.drop(columns=["question"]).to_string())
    gold = res.consensus["gold"].astype(str)
    out = res.outputs.assign(
        right=res.outputs["answer"] == gold.iloc[res.outputs["row"]].to_numpy()
    )
    print("\n== accuracy ==")
    for model, right in out.groupby("model", sort=False)["right"].mean().items():
        print(f"  {model:22s} {right:6.1%}")
    print(f"  {'majority vote':22s} {(res.consensus['answer'] == gold).mean():6.1%}")
    totals = res.totals()
    print(
        f"\n{totals['calls']} calls, {totals['prompt_tokens'] + totals['completion_tokens']} tokens, "
        f"${totals['cost_usd']:.4f} (simulated prices), {res.wall_s:.1f}s"
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .providers import sim

    print("Simulated models (offline, for demos and teaching):")
    for name, profile in sim.PROFILES.items():
        print(f"  sim/{name:15s} {profile.description}")
    print("\nAPI keys in the environment:")
    for var in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "MISTRAL_API_KEY",
        "COHERE_API_KEY",
    ):
        print(f"  {var:20s} {'set' if os.environ.get(var) else 'not set'}")
    print("\nAny litellm model id works: https://docs.litellm.ai/docs/providers")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from .cache import Cache

    cache = Cache()
    if args.action == "info":
        info = cache.info()
        print(f"{info['path']}: {info['entries']} entries, {info['bytes'] / 1e6:.1f} MB")
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
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a small orchestration on simulated models, offline")
    demo.add_argument("--rows", type=int, default=8, help="how many questions (default 8)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)
    models = sub.add_parser("models", help="list simulated models and which API keys are set")
    models.set_defaults(func=cmd_models)
    cache = sub.add_parser("cache", help="inspect, clear or export the call cache")
    cache.add_argument("action", choices=["info", "clear", "export"])
    cache.add_argument("path", nargs="?", help="with export: the recordings file to write")
    cache.set_defaults(func=cmd_cache)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except NbtoolkitError as exc:
        print(f"nbtoolkit: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nbtoolkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
