"""Headers, read without ever raising."""

from __future__ import annotations

import re
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses
from typing import Final

from faxgate.domain.message.values import _LONGEST_HEADER, _LONGEST_LINE


def _header_text(message: Message, name: str) -> str | None:
    """The header's decoded value, whitespace collapsed, at most a line long (what a reply
    can carry); None when absent or blank."""
    raw = _raw_header(message, name)
    if raw is None:
        return None
    value: object
    if len(raw) > _LONGEST_HEADER:
        # The email package's header parser takes time quadratic in a header's words:
        # a huge one is cut first, and decoded the simple way.
        value = _decoded(raw[:_LONGEST_HEADER])
    else:
        try:
            value = message.get(name)
        except Exception:  # the header parser fails on some malformed values
            value = _decoded(raw)
    text = " ".join(_readable(str(value)).split())
    return text[:_LONGEST_LINE] or None


def _raw_header(message: Message, name: str) -> str | None:
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _decoded(raw: str) -> str:
    try:
        return str(make_header(decode_header(raw)))
    except Exception:
        return raw


def _mailboxes(message: Message, name: str) -> list[tuple[str, str]]:
    """(display name, address) of every mailbox in the header(s) `name`."""
    try:
        headers = message.get_all(name) or []
        return [
            (_readable(str(address.display_name)), str(address.addr_spec))
            for header in headers
            for address in getattr(header, "addresses", ())
        ]
    except Exception:
        raw = _raw_header(message, name)
        try:
            return [(_readable(n), a) for n, a in getaddresses([raw])] if raw else []
        except Exception:
            return []


def _readable(text: str) -> str:
    """Header text as meant: undecodable bytes as U+FFFD, Windows-1252 labelled Latin-1 fixed.

    The parser keeps undecodable bytes as surrogates; and Outlook labels Windows-1252 as
    ISO-8859-1, whose 0x80-0x9F are control characters nobody writes on purpose.
    """
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        text = text.encode("utf-8", "replace").decode("utf-8")
    return _C1_CONTROLS.sub(_as_cp1252, text)


_C1_CONTROLS: Final = re.compile("[\x80-\x9f]")


def _as_cp1252(match: re.Match[str]) -> str:
    return match[0].encode("latin-1").decode("cp1252", "replace")
