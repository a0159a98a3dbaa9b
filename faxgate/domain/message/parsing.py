"""The raw message parsed, after mending what real mail gets wrong."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import Message
from typing import Final

from faxgate.domain.message.values import MessageRefused


def _parse(raw: bytes) -> Message:
    try:
        return email.message_from_bytes(_mended(raw), policy=email.policy.default)
    except Exception as error:  # the parser's own bugs on hostile input, deep nesting
        raise MessageRefused("the message could not be read as an email") from error


_HEADER_LINE: Final = re.compile(rb"[!-9;-~]+[ \t]*:")
# An unquoted boundary parameter holding characters a token may not (RFC 2045), on a
# Content-Type line or its continuation.
_BARE_BOUNDARY: Final = re.compile(
    rb"^((?:content-type:|[ \t])[^\n]*?;\s*boundary[ \t]*=[ \t]*)"
    rb"([^\"\s;]*[=/?@:,()<>\[\]][^\"\s;]*)",
    re.IGNORECASE | re.MULTILINE,
)


def _mended(raw: bytes) -> bytes:
    """The message with two faults of real mail mended, as mail readers mend them.

    A byte order mark before the first header (a message saved by a Windows editor) would
    make every header body text. A boundary with "=" left unquoted (Outlook Express:
    boundary=----=_NextPart_000...) would be cut at the "=": it is quoted. A folded header
    line that lost its leading blank (seen from Exchange) would end the headers there, the
    MIME headers after it lost: a line without a colon between header lines is read as a
    continuation.
    """
    raw = _BARE_BOUNDARY.sub(rb'\1"\2"', raw.removeprefix(b"\xef\xbb\xbf"))
    end = _header_end(raw)
    lines = raw[:end].split(b"\n")
    mended = False
    for at in range(1, len(lines) - 1):
        line = lines[at]
        if not line.strip() or line[:1] in b" \t" or _HEADER_LINE.match(line):
            continue
        if not _HEADER_LINE.match(lines[at + 1]):
            break  # the body starts here, without its blank line: left as it is
        lines[at] = b" " + line
        mended = True
    return b"\n".join(lines) + raw[end:] if mended else raw


def _header_end(raw: bytes) -> int:
    ends = [at for at in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if at >= 0]
    return min(ends) if ends else len(raw)
