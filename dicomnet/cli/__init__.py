"""The ``dicomnet`` command line.

Each subcommand is one small module with ``add_parser(subparsers, parent)``
and ``run(args) -> int``; :data:`COMMANDS` lists them in help order. Exit
codes are in :mod:`dicomnet.cli.common`.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dicomnet._version import __version__
from dicomnet.cli.common import EXIT_FAILURE, common_parser, setup_logging

__all__ = ["main", "build_parser", "COMMANDS"]

#: Subcommand modules under dicomnet.cli, in the order ``--help`` lists them.
COMMANDS = ("echo", "store", "find", "move", "get", "store-scp", "sample-server", "bench", "dump")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every subcommand registered)."""
    parser = argparse.ArgumentParser(prog="dicomnet", description="DICOM networking tools (dicomnet).")
    parser.add_argument("--version", action="version", version=f"dicomnet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    parent = common_parser()
    for name in COMMANDS:
        importlib.import_module(f"dicomnet.cli.{name.replace('-', '_')}").add_parser(subparsers, parent)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for a usage error)."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    setup_logging(args.verbose, args.quiet)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("dicomnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
