"""Reading DATA in bulk gives what reading it line by line gives (RFC 5321 4.5.2)."""

from __future__ import annotations

import asyncio

import pytest

from faxgate.intake.smtp.data import MessageTooBig, read_message


async def read(wire: bytes, *, limit: int | None = None, stream_limit: int = 2**20) -> bytes:
    reader = asyncio.StreamReader(limit=stream_limit)
    reader.feed_data(wire)
    reader.feed_eof()
    return await read_message(reader, limit)


def line_by_line(wire: bytes) -> bytes:
    """aiosmtpd's way: CRLF lines up to the lone dot, a leading dot taken off each."""
    lines: list[bytes] = []
    rest = wire
    while True:
        line, _, rest = rest.partition(b"\r\n")
        if line == b".":
            return b"".join(lines)
        lines.append((line[1:] if line.startswith(b".") else line) + b"\r\n")


@pytest.mark.parametrize(
    "wire",
    [
        b".\r\n",  # an empty message
        b"Subject: x\r\n\r\nhello\r\n.\r\n",
        b"one line\r\n.\r\n",
        b"..\r\n.\r\n",  # a line holding one dot, stuffed
        b"..leading dot\r\nEnd of sentence.\r\n...\r\n.\r\n",
        b"a.\r\n.b\r\n..\r\n.\r\n",
        b"x" * 100_000 + b"\r\n" + b"y.\r\n" * 50 + b".\r\n",
    ],
)
async def test_same_as_line_by_line(wire: bytes) -> None:
    assert await read(wire) == line_by_line(wire)


async def test_what_follows_the_dot_is_left_for_the_next_command() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"hello\r\n.\r\nQUIT\r\n")
    assert await read_message(reader, None) == b"hello\r\n"
    assert await reader.readline() == b"QUIT\r\n"


async def test_a_message_over_the_limit_is_read_to_its_end_and_refused() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"a" * 50 + b"\r\n" + b"b\r\n" * 20 + b".\r\nQUIT\r\n")
    with pytest.raises(MessageTooBig):
        await read_message(reader, 40)
    assert await reader.readline() == b"QUIT\r\n"


async def test_lines_longer_than_the_stream_buffer() -> None:
    # Longer than the stream's own limit: dropped as too big, the session goes on.
    reader = asyncio.StreamReader(limit=1024)
    reader.feed_data(b"z" * 5000 + b"\r\n.\r\nNOOP\r\n")
    with pytest.raises(MessageTooBig):
        await read_message(reader, None)
    assert await reader.readline() == b"NOOP\r\n"
    # A terminator right behind what was dropped is still found.
    reader = asyncio.StreamReader(limit=1024)
    reader.feed_data(b"z" * 3000 + b"\r\n" + b".\r\n" + b"NOOP\r\n")
    with pytest.raises(MessageTooBig):
        await read_message(reader, None)
    assert await reader.readline() == b"NOOP\r\n"


async def test_a_client_leaving_mid_message() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        await read(b"half a message\r\n")


async def test_dot_stuffing_is_undone_after_a_bare_line_feed_too() -> None:
    # Clients that end lines with a bare LF double a leading dot all the same.
    wire = b"Subject: x\n\n..hidden file\nlast line\n...\r\n.\r\n"
    assert await read(wire) == b"Subject: x\n\n.hidden file\nlast line\n..\r\n"


async def test_a_dot_after_a_bare_line_feed_does_not_end_the_message() -> None:
    # Only <CRLF>.<CRLF> ends it: another reading would let a relay smuggle a message.
    wire = b"one\n.\r\nMAIL FROM:<x@y>\r\n.\r\n"
    assert await read(wire) == b"one\n\r\nMAIL FROM:<x@y>\r\n"
