"""The ``facerestore`` command: one subcommand per module of this package.

Each module has ``add_parser(subparsers)``, which registers its flags and sets ``func`` to its
``run(args) -> exit status``. The CLI only parses and reports; the work is done by the library.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

# subcommand -> module; add a front-end by adding a line here.
COMMANDS = {
    "restore": "facerestore.cli.restore",
    "models": "facerestore.cli.models",
    "convert": "facerestore.cli.convert",
    "summarize": "facerestore.cli.summarize",
    "components": "facerestore.cli.components",
    "serve": "facerestore.cli.serve",
    "evaluate": "facerestore.cli.evaluate",
    "train": "facerestore.cli.train",
    "export": "facerestore.cli.export",
}
SUBCOMMANDS = tuple(COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="facerestore",
        description="Blind face restoration with the GFPGAN family, in plain PyTorch. "
                    "`facerestore -i photos -o results` is short for `facerestore restore ...`.")
    parser.add_argument("--version", action="version", version=f"facerestore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The official CLI has no subcommands: `facerestore -i x -o y` means `facerestore restore -i x -o y`.
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
        argv.insert(0, "restore")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    verbose = getattr(args, "verbose", False) or os.environ.get("FACERESTORE_VERBOSE")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a clear one-line message; the traceback only when asked for
        if verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
