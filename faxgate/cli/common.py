"""What every command shares: settings, output as a table or JSON, errors, the event loop."""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

if TYPE_CHECKING:
    from faxgate.settings import Settings
    from faxgate.store import Store

EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran and failed: the provider refused, a job is unknown...
EXIT_USAGE = 2  # the command could not run: bad arguments or settings
EXIT_BROKEN_PIPE = 141  # the reader of the output closed it early (128 + SIGPIPE, as a shell)

T = TypeVar("T")
# Subscripted only for the type checker: the runtime class is not generic on 3.11.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CommandError(Exception):
    """A failure to show the user as one plain line, with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _StartUp:
    # True in the command's own process (the `faxgate` script), not in a caller's.
    freeze = False


def freeze_what_start_up_builds() -> None:
    """In a process of the command's own, what start-up builds is frozen (see start_up)."""
    _StartUp.freeze = True


@contextmanager
def start_up() -> Iterator[None]:
    """Builds what lives as long as the command: its modules, the parser, the settings and
    their validators. Hundreds of thousands of objects, none of them garbage, which the
    cyclic collector would walk again and again while they are made (a fifth of `status`):
    it waits until they are built. In the command's own process they are then frozen out
    of its sight (gc.freeze), so no later collection walks them, the one at exit included.
    """
    if not gc.isenabled():  # within another start_up, or the caller's choice
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if _StartUp.freeze:
            gc.freeze()
        gc.enable()


def settings_from(args: argparse.Namespace) -> Settings:
    # Imported here: pydantic and the settings' models are most of a command's start-up,
    # and `--version` or `smtp hash-password` need neither.
    with start_up():
        from faxgate.settings import load_settings

        settings = load_settings(args.config)
    # Start-up ends with the first settings: a daemon's later ones (a reload's) and their
    # garbage are left to the collector as usual.
    _StartUp.freeze = False
    return settings


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio  # a third of `faxgate --version`'s time, and only API commands need it

    return asyncio.run(coro)


def add_command_group(subparsers: Subparsers, name: str, help_text: str) -> Subparsers:
    """A command made of sub-commands (`faxgate NAME COMMAND`), theirs to add; NAME alone
    prints its help and exits with EXIT_USAGE."""
    group = subparsers.add_parser(name, help=help_text)
    commands = group.add_subparsers(title=f"{name} commands", metavar="COMMAND")

    def usage(_args: argparse.Namespace) -> int:
        group.print_help(sys.stderr)
        return EXIT_USAGE

    group.set_defaults(func=usage)
    return commands


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str, ensure_ascii=False)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Columns padded to their widest cell; empty cells show as '-'."""
    cells = [[("-" if value in (None, "") else str(value)) for value in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        print(
            "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        )


@contextmanager
def open_store(settings: Settings) -> Iterator[Store]:
    """The store the settings name, for one command: [store] url's PostgreSQL database,
    or (url empty) the SQLite file in the state directory; closed when the command ends."""
    from faxgate.store import Store, StoreError

    try:
        store = Store.open_configured(
            settings.store.url,
            settings.store.password.get_secret_value(),
            settings.database_path,
            spool_dir=settings.spool_dir,
        )
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    with store:
        yield store
