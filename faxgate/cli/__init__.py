"""The command line: parses commands, calls the core, prints. No rules live here.

Each command group is a module with ``register(subparsers)``; every parser sets ``func``,
a callable that takes the parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from faxgate import __version__
from faxgate.cli import api, config, contacts, inbox, jobs, run, sandbox, smtp
from faxgate.cli.common import EXIT_USAGE, CommandError
from faxgate.settings import ConfigError

COMMAND_GROUPS = (run, jobs, inbox, contacts, config, api, sandbox, smtp)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faxgate",
        description="Email and hot folders to fax, through the HelloFax API.",
    )
    parser.add_argument("--version", action="version", version=f"faxgate {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        help="settings file (default: $FAXGATE_CONFIG, else ./config/faxgate.toml if present)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debugging detail to stderr"
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
