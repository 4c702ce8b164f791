"""The `fewclick` console command.

Each subcommand lives in its own module, which exposes
``add_arguments(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> int``. Modules are imported only when their
subcommand runs, so `fewclick --help` stays fast and works without torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Subcommand:
    name: str
    module: str
    help: str


# Add a line here when a part gains a command; the module does the rest.
SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("serve", "fewclick.local.serve", "run the whole system locally: UI, gateway, proxy, model"),
    Subcommand("model-server", "fewclick_model.server.cli", "run the SageMaker-compatible model server"),
    Subcommand("train", "fewclick_model.train", "train the segmentation model"),
    Subcommand("train-refiner", "fewclick_model.train_refiner", "train the boundary-click refiner"),
    Subcommand("evaluate", "fewclick_model.evaluate", "evaluate with the robot-user protocol"),
    Subcommand("benchmark", "fewclick.bench.cli", "latency and load benchmarks"),
    Subcommand("labeling-job", "fewclick.groundtruth.cli", "Ground Truth labeling jobs"),
)


def _lazy_parser(sub: Subcommand, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return subparsers.add_parser(sub.name, help=sub.help, description=sub.help)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fewclick", description="Few-click segmentation labeling.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for sub in SUBCOMMANDS:
        sub_parser = _lazy_parser(sub, subparsers)
        if sub.name == chosen:
            module = importlib.import_module(sub.module)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(_run=module.run)
    return parser


# What bad input raises (a missing or unreadable file, a value out of range, a file of the wrong
# kind): the user gets one line saying what is wrong, like argparse's own errors, not a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, pickle.UnpicklingError)
TRACEBACK_ENV = "FEWCLICK_TRACEBACK"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if not argv else 2
    try:
        return int(args._run(args) or 0)
    except USER_ERRORS as exc:
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(
            f"fewclick {args.command}: error: {exc}\n(set {TRACEBACK_ENV}=1 to see where it was raised)",
            file=sys.stderr,
        )
        return 2
    except SystemExit as exc:
        # `raise SystemExit("why")` in a subcommand is a refusal too: Python would print the bare text
        # and exit 1; bad input exits 2 here, with the same "error:" line as everything else.
        if not isinstance(exc.code, str):
            raise
        print(f"fewclick {args.command}: error: {exc.code}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fewclick {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
