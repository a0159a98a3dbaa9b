"""`faxgate contacts`: the address book ([addressing] contacts_file), checked."""

from __future__ import annotations

import argparse

from faxgate.cli import common
from faxgate.intake.contacts import ContactsUnreadable, read_address_book


def register(subparsers: common.Subparsers) -> None:
    parser = subparsers.add_parser(
        "contacts",
        help="list and check the contacts and groups faxes can be addressed to",
        description="Read [addressing] contacts_file as the daemon does; exit 1 on a problem.",
    )
    common.add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = common.settings_from(args)
    addressing = settings.addressing
    if not addressing.contacts_file:
        raise common.CommandError("no contacts file: set [addressing] contacts_file")
    try:
        book = read_address_book(
            addressing.contacts_file, settings.numbers.policy(), addressing.max_group_size
        )
    except ContactsUnreadable as exc:
        raise common.CommandError(str(exc)) from None
    domain = settings.smtp.domains[0]
    if args.json:
        common.print_json(
            {
                "file": addressing.contacts_file,
                "contacts": {
                    name: {"number": d.number.e164, "cover": d.cover_to}
                    for name, d in book.contacts.items()
                },
                "groups": {
                    name: [d.number.e164 for d in members] for name, members in book.groups.items()
                },
                "problems": list(book.problems),
            }
        )
    else:
        rows: list[tuple[object, ...]] = [
            (f"{name}@{domain}", d.number.display(), d.cover_to)
            for name, d in sorted(book.contacts.items())
        ]
        rows += [
            (
                f"{name}@{domain}",
                ", ".join(d.number.display() for d in members),
                f"group of {len(members)}",
            )
            for name, members in sorted(book.groups.items())
        ]
        common.print_table(("address", "fax number", "cover"), rows)
        for problem in book.problems:
            print(f"problem: {problem}")
    return common.EXIT_FAILURE if book.problems else common.EXIT_OK
