"""`fewclick benchmark <kind>`: one subcommand per benchmark kind.

To add a kind (e.g. ``load`` or ``endpoint``), write a module exposing
``add_arguments(parser)`` and ``run(args) -> int`` and add one line to `KINDS`.
Every kind's module is imported to build the parser, so keep heavy imports (torch,
boto3, matplotlib) inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# kind -> (module, help)
KINDS: dict[str, tuple[str, str]] = {
    "latency": ("fewclick.bench.latency", "per-request latency of the full local serving path (proxy + model)"),
    "load": ("fewclick.bench.load", "N simulated labelers against the local stack or a deployed API"),
    "endpoint": ("fewclick.bench.endpoint", "a deployed stack under load, SageMaker latency per instance type"),
    "model": ("fewclick_model.latency", "model time per request type and per fusion design"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="KIND")
    for kind, (module_name, help_text) in KINDS.items():
        kind_parser = sub.add_parser(kind, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(kind_parser)
        kind_parser.set_defaults(_bench_run=module.run)


def run(args: argparse.Namespace) -> int:
    runner = getattr(args, "_bench_run", None)
    if runner is None:
        print("choose a benchmark kind: " + ", ".join(KINDS), file=sys.stderr)
        return 2
    return int(runner(args) or 0)
