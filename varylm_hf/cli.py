"""The ``varylm`` command line: ``varylm <group> <command> [--help]``.

Each subcommand lives in its own module under :mod:`varylm_hf.commands` and exposes
``register(subparsers)``; this file only wires them together and turns user errors into a
one-line message and exit status 2 (set ``VARYLM_DEBUG=1`` to see the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import VarylmError

# One module per subcommand group; each defines register(subparsers).
COMMAND_MODULES = [
    "varylm_hf.commands.data",
    "varylm_hf.commands.demo",
    "varylm_hf.commands.reproduce",
    "varylm_hf.commands.hub",
    "varylm_hf.commands.eval",
    "varylm_hf.commands.score",
]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage stays in ``--help``); exit status 2.

    Subcommand parsers inherit the class (``add_subparsers`` uses ``type(self)``).
    """

    def error(self, message: str):
        first = message.splitlines()[0] if message else "bad arguments"
        self.exit(2, f"varylm: error: {first} (see `{self.prog} --help`)\n")


def make_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    parser = _Parser(
        prog="varylm",
        description="Train and evaluate causal LMs to match human next-word variability.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``varylm`` console script; returns the exit status."""
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except (VarylmError, ValueError, OSError, KeyboardInterrupt) as err:
        if os.environ.get("VARYLM_DEBUG"):
            raise
        if isinstance(err, KeyboardInterrupt):
            print("varylm: interrupted", file=sys.stderr)
            return 130
        if isinstance(err, UnicodeDecodeError):  # name what could not be decoded (the codec message does not)
            msg = f"cannot decode input as {err.encoding} at byte {err.start} ({err.reason})"
        else:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"varylm: error: {msg}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
