"""`faxgate smtp hash-password`: the stored form of a password for [smtp.users]."""

from __future__ import annotations

import argparse
import getpass
import sys

from faxgate.cli.common import EXIT_OK, EXIT_USAGE, CommandError, Subparsers, add_command_group
from faxgate.domain.passwords import hash_password


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(subparsers, "smtp", "the email-to-fax listener")
    hashing = commands.add_parser(
        "hash-password",
        help="print a password's scrypt hash for [smtp.users] (the password is never shown)",
        description="Asks for the password twice (or reads one line from standard input "
        "when it is not a terminal) and prints the line to put in [smtp.users], e.g. "
        'alice = "scrypt$16384$8$1$...".',
    )
    hashing.add_argument("user", nargs="?", help='print a whole `user = "..."` line')
    hashing.set_defaults(func=hash_password_command)


def hash_password_command(args: argparse.Namespace) -> int:
    password = _read_password()
    if not password:
        raise CommandError("no password given", EXIT_USAGE)
    hashed = hash_password(password)
    print(f'{args.user} = "{hashed}"' if args.user else hashed)
    return EXIT_OK


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise CommandError("the two passwords differ", EXIT_USAGE)
    return first
