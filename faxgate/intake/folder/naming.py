"""Hot folder names, pure rules: which files are looked at, where a file's number comes
from, and how result files are named. No IO: the caller lists the folder.

Where the number comes from, in this order (the sidecar is read in sidecar.py):
1. a sidecar beside the file, `NAME.json` (`contract.pdf.json` or `contract.json`);
2. a sub-folder named by the number: `outbox/+14155550100/contract.pdf`;
3. the file name: all of it, or the part before the first `_` or ` - `:
   `14155550100.pdf`, `14155550100_contract.pdf`, `+44 20 7946 0958 - offer.pdf`.
The part taken must be the whole number: `invoice 4155550100.pdf` holds no number, so a
date or an order number in a name is never dialled by mistake.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import PurePath
from typing import Final, Literal

from faxgate.domain.numbers import FaxNumber, NumberPolicy, NumberRefused, parse_fax_number

# Names tools give a file while they write it; it is taken once renamed.
WRITING_SUFFIXES: Final = (".tmp", ".part", ".partial", ".filepart", ".crdownload", ".swp")
# Files desktops leave in every folder they show.
DESKTOP_FILES: Final = frozenset({"thumbs.db", "desktop.ini"})
# faxgate's own files beside a document.
RESULT_SUFFIX: Final = ".result.json"
STATUS_SUFFIX: Final = ".status.json"
REASON_SUFFIX: Final = ".reason.txt"
SIDECAR_SUFFIX: Final = ".json"
_OWN_SUFFIXES: Final = (RESULT_SUFFIX, STATUS_SUFFIX, REASON_SUFFIX)
# The longest file name most file systems take, in bytes; faxgate's names leave room for
# their longest companion suffix.
NAME_MAX: Final = 255
_LONGEST_NAME: Final = NAME_MAX - max(len(suffix) for suffix in _OWN_SUFFIXES)
_NUMBER_ENDS: Final = ("_", " - ")
_MAX_NAME_NUMBER: Final = 10_000


class NumberSource(StrEnum):
    SIDECAR = "sidecar"
    FOLDER = "folder"
    NAME = "name"


@dataclass(frozen=True, slots=True)
class Found:
    numbers: tuple[FaxNumber, ...]
    source: NumberSource


@dataclass(frozen=True, slots=True)
class NotFound:
    code: Literal["no_number", "bad_number"]
    reason: str  # plain words, without the naming help


def is_ignored(name: str) -> bool:
    """Names never taken: hidden, still being written, desktop clutter, faxgate's own."""
    lower = name.lower()
    return (
        name.startswith((".", "~"))
        or lower.endswith(WRITING_SUFFIXES)
        or lower.endswith(_OWN_SUFFIXES)
        or lower in DESKTOP_FILES
    )


def is_sidecar(name: str) -> bool:
    return name.lower().endswith(SIDECAR_SUFFIX)


def sidecar_names(document: str) -> tuple[str, str]:
    """The two names a document's own sidecar may have: "a.pdf.json", then "a.json"."""
    return document + SIDECAR_SUFFIX, PurePath(document).stem + SIDECAR_SUFFIX


def is_plain_name(name: str) -> bool:
    """A file name that stays in its folder: no path separator, no "..", not hidden."""
    return (
        bool(name)
        and name == name.strip()
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
        and not name.startswith(".")
    )


def number_in_name(name: str) -> str | None:
    """The part of a file name (its extension left out) that should be the number, or None
    when the name shows none; see number_in_text."""
    return number_in_text(PurePath(name).stem)


def number_in_text(text: str) -> str | None:
    """The whole text, or the part before the first "_" or " - ". A part with letters or
    without digits is no number at all (None); one with digits may still be refused by
    parse_fax_number."""
    cut = min((i for i in (text.find(end) for end in _NUMBER_ENDS) if i >= 0), default=len(text))
    candidate = text[:cut].strip()
    if not any(char.isdigit() for char in candidate) or any(char.isalpha() for char in candidate):
        return None
    return candidate


def find_number(name: str, folder: str | None, policy: NumberPolicy) -> Found | NotFound:
    """The number of a file without a sidecar: its sub-folder's name, else its own name.

    `folder` is the sub-folder the file lies in ("" or None: the hot folder itself).
    """
    problems: list[tuple[Literal["no_number", "bad_number"], str]] = []
    if folder:
        found = _parse(number_in_text(folder), policy)
        if isinstance(found, FaxNumber):
            return Found((found,), NumberSource.FOLDER)
        if found is not None:
            problems.append(("bad_number", f"the folder name {folder!r}: {found.reason}"))
    found = _parse(number_in_name(name), policy)
    if isinstance(found, FaxNumber):
        return Found((found,), NumberSource.NAME)
    if found is not None:
        problems.append(("bad_number", f"the file name: {found.reason}"))
    if not problems:
        where = "its name or its folder's name" if folder else "its name"
        return NotFound("no_number", f"no fax number was found in {where}, and no sidecar")
    return NotFound(problems[0][0], "; ".join(text for _, text in problems))


def _parse(text: str | None, policy: NumberPolicy) -> FaxNumber | NumberRefused | None:
    if text is None:
        return None
    try:
        return parse_fax_number(text, policy)
    except NumberRefused as refused:
        return refused


def naming_help(name: str) -> str:
    """How to give a file its number, for a person reading failed/NAME.reason.txt."""
    rest = PurePath(name).name
    return (
        "To give a file its fax number, do one of these:\n"
        f"  - start its name with the number: 14155550100_{rest} or"
        f" +44 20 7946 0958 - {rest}\n"
        f"  - put it in a folder named by the number: +14155550100/{rest}\n"
        f"  - drop a sidecar {rest}.json beside it, written before the file:\n"
        '      {"to": ["+14155550100"], "notify": "you@example.com"}\n'
        "Numbers without + or 00 are read as national numbers of the configured country."
    )


def numbered(name: str, n: int) -> str:
    """The n-th name for a file: "invoice.pdf", then "invoice (2).pdf", "invoice (3).pdf";
    short enough for NAME.result.json beside it (see `fitting`)."""
    path = PurePath(name)
    stem, suffix = (path.stem, path.suffix) if path.stem else (name, "")
    return fitting(name if n <= 1 else f"{stem} ({n}){suffix}")


def fitting(name: str) -> str:
    """`name`, or when it is too long to take a companion suffix within NAME_MAX bytes, its
    start and a short digest of all of it ("…~1a2b3c4d.pdf"): two long names stay two."""
    raw = _bytes(name)
    if len(raw) <= _LONGEST_NAME:
        return name
    suffix = PurePath(name).suffix
    suffix = suffix if len(_bytes(suffix)) <= 16 else ""
    digest = hashlib.sha256(raw).hexdigest()[:8]
    room = _LONGEST_NAME - len(_bytes(suffix)) - len(digest) - 1
    start = raw[:room].decode("utf-8", "ignore")  # a character cut in half goes
    return f"{start}~{digest}{suffix}"


def _bytes(name: str) -> bytes:
    # File names are bytes: one that is not UTF-8 keeps its bytes as surrogates.
    return name.encode("utf-8", "surrogateescape")


def unique_name(name: str, taken: Callable[[str], bool]) -> str:
    """The first of name, "name (2)", ... that `taken` does not claim."""
    for n in range(1, _MAX_NAME_NUMBER):
        candidate = numbered(name, n)
        if not taken(candidate):
            return candidate
    raise FileExistsError(f"no free name left for {name!r}")


def date_folder(when: datetime) -> str:
    """The day sub-folder of sent/ or failed/, in local time: "2024-05-01"."""
    return when.astimezone().strftime("%Y-%m-%d")
