"""The ``facerestore`` command: one subcommand per module of this package.

Each module has ``add_parser(subparsers)``, which registers its flags and sets ``func`` to its
``run(args) -> exit status``. The CLI only parses and reports; the work is done by the library.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

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


def output_file_problem(path: str | os.PathLike, flag: str) -> str | None:
    """An error line naming ``flag`` when ``path``'s folder cannot be written, else None.

    Checked before the work, so that a long export or detection pass does not end in a raw
    OSError ("[enforce fail at inline_container.cc]") only when the result is saved.
    """
    from pathlib import Path

    from ..pipeline.options import OptionsError, check_output_folder

    target = Path(path)
    if target.is_dir():
        return f"{flag}: {target} is a folder; give a file name"
    try:
        check_output_folder(target.parent)
    except OptionsError as exc:
        return f"{flag}: {str(exc).split(': ', 1)[1]}"
    return None


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where it tells the user something.

    argparse's own formatter also adds it to on/off switches (``--no-landmark-check`` read
    "(default: True)", the opposite of what the switch does), to options without a default
    ("(default: None)", "(default: [])" for a repeatable flag) and to help that already states
    its default.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        # `is`, not `in`: a default of 1 or 0 equals True/False and must still be shown.
        if (any(action.default is v for v in (None, False, True, argparse.SUPPRESS)) or action.nargs == 0
                or action.default == [] or "default" in help_text):
            return help_text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="facerestore",
        description="Blind face restoration in plain PyTorch: GFPGAN, RestoreFormer(++), CodeFormer and GPEN "
                    "with their released weights, on PyTorch, onnxruntime or OpenVINO. "
                    "`facerestore -i photos -o results` is short for `facerestore restore ...`.")
    parser.add_argument("--version", action="version", version=f"facerestore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The official CLI has no subcommands: `facerestore -i x -o y` means `facerestore restore -i x -o y`.
    # `--version` alone prints ours; followed by more (`--version 1.3 -i x`) it is the official
    # model-version flag of a restore, which must not silently print the version and exit 0.
    top_level = ("-h", "--help") + (("--version",) if len(argv) == 1 else ())
    if argv and argv[0] not in COMMANDS and argv[0] not in top_level:
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
