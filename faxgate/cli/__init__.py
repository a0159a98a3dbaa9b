"""The command line: parses commands, calls the core, prints. No rules live here.

Each command group is a module with ``register(subparsers)``; every parser sets ``func``,
a callable that takes the parsed arguments and returns the exit code. A group's module is
imported only when one of its commands runs (or for the full help): `faxgate status` need
not load the HTTP client, the sandbox or the daemon.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from typing import NoReturn

from faxgate import __version__
from faxgate.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_USAGE,
    CommandError,
    freeze_what_start_up_builds,
    start_up,
)
from faxgate.config_error import ConfigError

COMMAND_GROUPS = (
    "run",
    "jobs",
    "inbox",
    "contacts",
    "config",
    "doctor",
    "api",
    "sandbox",
    "smtp",
    "purge",
)
# The group (module under faxgate.cli) that registers each top-level command.
GROUP_OF_COMMAND = {
    "run": "run",
    "send": "jobs",
    "status": "jobs",
    "retry": "jobs",
    "cancel": "jobs",
    "inbox": "inbox",
    "contacts": "contacts",
    "config": "config",
    "doctor": "doctor",
    "account": "api",
    "lines": "api",
    "areacodes": "api",
    "transmissions": "api",
    "fax": "api",
    "sandbox": "sandbox",
    "smtp": "smtp",
    "purge": "purge",
}


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        help="settings file (default: $FAXGATE_CONFIG, else ./config/faxgate.toml if present)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debugging detail to stderr"
    )


def build_parser(groups: Iterable[str] = COMMAND_GROUPS) -> argparse.ArgumentParser:
    """The parser with the commands of `groups` (every command by default)."""
    parser = argparse.ArgumentParser(
        prog="faxgate",
        description="Email and hot folders to fax, through HelloFax v1 or the Dropbox Fax API v3.",
    )
    parser.add_argument("--version", action="version", version=f"faxgate {__version__}")
    _add_global_options(parser)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for group in groups:
        importlib.import_module(f"faxgate.cli.{group}").register(subparsers)
    return parser


class _Scout(argparse.ArgumentParser):
    """Reads only the global options and the command's name; says nothing when it cannot."""

    def error(self, message: str) -> NoReturn:
        raise _Unreadable(message)


class _Unreadable(Exception):
    pass


def _groups_needed(argv: Sequence[str]) -> tuple[str, ...]:
    """The command groups this command line needs: its command's, none for a bare
    --version, else all (the full help, a mistyped command: argparse lists every choice)."""
    # Read with the same global options as the real parser, so "-c PATH", "--config=PATH"
    # and "-vc PATH" are skipped alike; whatever is left first is the command.
    scout = _Scout(add_help=False)
    _add_global_options(scout)
    scout.add_argument("-h", "--help", action="store_true")
    scout.add_argument("--version", action="store_true")
    scout.add_argument("command", nargs="?")
    try:
        known, _ = scout.parse_known_args(argv)
        group = GROUP_OF_COMMAND.get(known.command or "")
        if group is not None and known.help:
            # "faxgate -h status" is the full help; "faxgate status -h" the command's.
            before, _ = scout.parse_known_args(argv[: argv.index(known.command)])
            if before.help:
                return COMMAND_GROUPS
    except _Unreadable:  # a malformed global option: the real parser says what is wrong
        return COMMAND_GROUPS
    if group is not None:
        return (group,)
    if known.version and known.command is None and not known.help:
        return ()
    return COMMAND_GROUPS


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the `faxgate` script: a process of the command's own
        freeze_what_start_up_builds()
    try:
        try:
            return _run(sys.argv[1:] if argv is None else list(argv))
        finally:
            # Written out here (also after --help), not at exit, where a closed pipe could
            # only print a traceback.
            sys.stdout.flush()
    except BrokenPipeError:
        return _reader_went_away()


def _run(argv: list[str]) -> int:
    with start_up():
        parser = build_parser(_groups_needed(argv))
        args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"faxgate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as exc:
        print(f"faxgate: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code


def _reader_went_away() -> int:
    """The output's reader closed it early (`faxgate status | head -1`): stop quietly, with
    the status a shell gives a command killed by SIGPIPE."""
    # Whatever is still buffered for stdout would fail again at exit: send it nowhere.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_BROKEN_PIPE
