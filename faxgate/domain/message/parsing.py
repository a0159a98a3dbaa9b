"""The raw message parsed, after mending what real mail gets wrong."""

from __future__ import annotations

import email
import email.feedparser
import email.policy
import re
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import Message
from functools import lru_cache
from typing import Final

from faxgate.domain.message.values import MessageRefused

# The header parser's time grows with the square of a value's length: a hostile megabyte
# Reply-To would hold a reader for a minute. Far beyond any real header (two hundred
# recipients fill 8 KiB), a text is read only that far, and a structured value (addresses,
# parameters), which a cut could change, is read as empty.
LONGEST_HEADER_READ: Final = 16_384


class _RememberingHeaders(HeaderRegistry):
    """The standard header classes, each (name, value) parsed once.

    The parser asks a part for its Content-Type a dozen times while reading it, and the
    default policy parses the header anew at every ask: a third of a message's reading
    time. Parsed headers are immutable, so one parse can serve every ask, and every message
    that carries the same header (the same boundary, the same "application/pdf").
    """

    _LONGEST_KEPT: Final = 998  # the longest line RFC 5322 allows: huge values are not kept

    def __init__(self) -> None:
        super().__init__()
        self._parsed = lru_cache(maxsize=512)(super().__call__)

    def __call__(self, name: str, value: str) -> BaseHeader:
        if len(value) > LONGEST_HEADER_READ:
            unstructured = issubclass(self[name], UnstructuredHeader)
            value = value[:LONGEST_HEADER_READ] if unstructured else ""
        if len(value) > self._LONGEST_KEPT:
            return super().__call__(name, value)
        return self._parsed(name, value)


POLICY: Final = email.policy.default.clone(header_factory=_RememberingHeaders())


class _LineEndAtTheEnd:
    """email.feedparser's NLCRE_eol, a line end at the very end of a text, found by
    looking at the end only.

    The parser asks it of each part's whole payload, and the regular expression engine
    tries every position of the payload first: 0.8 ms for a 100 KB attachment, a fifth
    of reading a message. Looking at the last two characters gives the same answer.
    """

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern

    def search(self, text: str) -> re.Match[str] | None:
        return self.pattern.search(text, max(0, len(text) - 2))


_STDLIB_LINE_END = getattr(email.feedparser, "NLCRE_eol", None)  # not in the type stubs
if isinstance(_STDLIB_LINE_END, re.Pattern) and _STDLIB_LINE_END.pattern == r"(\r\n|\r|\n)\Z":
    setattr(email.feedparser, "NLCRE_eol", _LineEndAtTheEnd(_STDLIB_LINE_END))  # noqa: B010


def _parse(raw: bytes) -> Message:
    try:
        return email.message_from_bytes(_mended(raw), policy=POLICY)
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
    raw = _quoted_boundaries(raw.removeprefix(b"\xef\xbb\xbf"))
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


def _quoted_boundaries(raw: bytes) -> bytes:
    """`_BARE_BOUNDARY` applied only around the lines that name a boundary: run over a
    whole message, the pattern tries every line of every attachment (1.4 ms for 140 KB)."""
    lowered = raw.lower()
    at = lowered.find(b"boundary")
    if at < 0:
        return raw
    pieces = []
    done = 0
    while at >= 0:
        # From the line before (a `;` may end it, the parameter on the folded line after)
        # to the end of the line naming the boundary.
        start = max(done, raw.rfind(b"\n", 0, max(raw.rfind(b"\n", 0, at), 0)) + 1)
        end = raw.find(b"\n", at)
        end = len(raw) if end < 0 else end
        pieces += [raw[done:start], _BARE_BOUNDARY.sub(rb'\1"\2"', raw[start:end])]
        done = end
        at = lowered.find(b"boundary", end)
    pieces.append(raw[done:])
    return b"".join(pieces)


def _header_end(raw: bytes) -> int:
    ends = [at for at in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if at >= 0]
    return min(ends) if ends else len(raw)
