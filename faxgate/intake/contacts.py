"""The contacts file ([addressing] contacts_file) read into an address book.

The rules are in faxgate/domain/addressing.py; this module only reads the file. A file
that cannot be read at all raises ContactsUnreadable; a file with wrong entries gives a
book without them, each problem named in `book.problems` for the log and
`faxgate contacts`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from faxgate.domain.addressing import (
    AddressBook,
    address_book_from_csv,
    address_book_from_toml,
)
from faxgate.domain.numbers import NumberPolicy

# Larger than any office's address book; a bigger file is a mistake, not contacts.
MAX_FILE_BYTES = 4 * 1024 * 1024


class ContactsUnreadable(Exception):
    """The contacts file cannot be read at all; the message says why."""


def read_address_book(path: str | Path, policy: NumberPolicy, max_group_size: int) -> AddressBook:
    """The book in `path` (TOML or CSV by its ending); an empty book for no path."""
    if not path:
        return AddressBook()
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ContactsUnreadable(f"cannot read the contacts file {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ContactsUnreadable(
            f"the contacts file {path} is larger than {MAX_FILE_BYTES // 1024 // 1024} MB"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ContactsUnreadable(
            f"the contacts file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    if path.suffix.lower() == ".csv":
        return address_book_from_csv(text, policy, max_group_size)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ContactsUnreadable(f"the contacts file {path} is not valid TOML: {exc}") from None
    return address_book_from_toml(data, policy, max_group_size)
