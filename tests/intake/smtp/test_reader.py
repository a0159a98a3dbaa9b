"""Messages read in worker processes: results and refusals come back; a dead worker fails
only its message."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator

import pytest

from faxgate.domain.message import CoverMode, MessageRefused
from faxgate.domain.numbers import parse_fax_number
from faxgate.intake.smtp.accept import Fax, MailToFax
from faxgate.intake.smtp.reader import MessageReader, ReaderFailed
from tests.intake.smtp.testing import fax_mail

FAXES = [Fax(parse_fax_number("14155550101"), recipient="14155550101@fax.local")]
ARCHIVE = ("a.zip", b"PK\x03\x04", "application/zip")


@pytest.fixture
async def reader() -> AsyncIterator[MessageReader]:
    running = MessageReader(workers=1)
    try:
        yield running
    finally:
        await running.close()


async def read(reader: MessageReader, raw: bytes) -> MailToFax:
    return await reader.read(
        raw, sender="alice@example.com", login=None, faxes=FAXES, cover=CoverMode.WHEN_BODY,
        from_line=None,
    )  # fmt: skip


async def test_a_worker_reads_and_refuses_as_read_mail_does(reader: MessageReader) -> None:
    mail = await read(reader, fax_mail("14155550101"))
    assert [document.name for document in mail.documents] == ["contract.pdf"]
    with pytest.raises(MessageRefused, match=r"a\.zip"):
        await read(reader, fax_mail("14155550101", attachment=ARCHIVE))


async def test_a_dead_worker_fails_one_message_only(reader: MessageReader) -> None:
    await read(reader, fax_mail("14155550101"))
    pool = reader._pool
    assert pool is not None
    for process in list(pool._processes.values()):  # the worker, as the OOM killer would
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(ReaderFailed):
        await read(reader, fax_mail("14155550101"))
    mail = await read(reader, fax_mail("14155550101"))
    assert mail.faxes == FAXES
    assert reader._pool is not pool


async def test_without_workers_a_thread_reads() -> None:
    reader = MessageReader(workers=0)
    mail = await read(reader, fax_mail("14155550101"))
    assert mail.faxes == FAXES
    assert reader._pool is None
    await reader.close()
