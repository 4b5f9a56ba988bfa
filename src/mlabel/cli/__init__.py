"""The command line: `mlabel inspect | adapt | train | tune | evaluate | predict | explain | export |
serve`.

Each subcommand is a module with `add_parser(subparsers)` and `run(args) -> int`; all work is
done by library functions, so everything the CLI does, Python code can do too.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
import warnings
from typing import NoReturn

from mlabel.errors import MlabelError

COMMANDS = (
    "train",
    "evaluate",
    "predict",
    "explain",
    "serve",
    "inspect",
    "tune",
    "export",
    "adapt",
)
USER_ERRORS = (MlabelError, FileNotFoundError)
DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors: no usage block before them, a pointer to --help.
    Subcommand parsers are of the same class (`add_subparsers` takes the parent's)."""

    def error(self, message: str) -> NoReturn:
        usage_error(self.prog, message)


def usage_error(prog: str, message: str) -> NoReturn:
    """Print `PROG: error: MESSAGE` and a pointer to its --help on one line; exit 2."""
    print(f"{prog}: error: {message} (see {prog} --help)", file=sys.stderr)
    sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mlabel", description="Multi-label text classification.")
    parser.add_argument("--version", action="version", version=f"mlabel {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"mlabel.cli.{name}_cmd")
        module.add_parser(sub).set_defaults(run=module.run)
    return parser


def _version() -> str:
    from importlib.metadata import version

    return version("mlabel")


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors print one line and exit 2, without a traceback."""
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # named after the command: argparse would blame `mlabel` itself
        usage_error(f"mlabel {args.command}", f"unrecognized arguments: {' '.join(unknown)}")
    if hasattr(signal, "SIGXFSZ"):  # over a file-size limit: an EFBIG error, not a silent kill
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.run(args) or 0
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Whoever read standard output stopped (`mlabel predict ... | head`): end as a command
        # killed by SIGPIPE would, without a traceback, and keep the exit flush from failing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        # The writers replace files only on success, so nothing half-written is left behind.
        where = f" writing {exc.filename}" if exc.filename else ""
        print(
            f"error: no space left{where} ({exc.strerror}); nothing was replaced", file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)
