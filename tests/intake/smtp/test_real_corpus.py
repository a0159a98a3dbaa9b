"""A handful of the real corpus through the real listener: the reply each gets at DATA,
and for those taken, the documents stored (tests/corpus/real/expected.toml says which)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from faxgate.app import Daemon
from faxgate.intake.smtp.policy import reply_lines
from tests.domain.test_real_corpus import CORPUS, ENTRIES
from tests.intake.smtp.testing import FAX_DOMAIN, SENDER, smtp_client, smtp_daemon, smtp_port

THROUGH_THE_LISTENER = [
    "php-mime-mail-parser/m0020.eml",  # an Exchange meeting request
    "mail/plain_emails-raw_email_bad_time.eml",  # Outlook Express, boundary unquoted
    "flanker/attached-pdf.eml",
    "mimekit/messages-bounce.eml",
    "php-mime-mail-parser/m0018.eml",  # a Korean file name in the refusal
    "mail/attachment_emails-attachment_pdf.eml",  # a PDF cut short
]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with smtp_daemon(tmp_path / "state") as running:
        yield running


async def test_the_listener_answers_as_expected(daemon: Daemon) -> None:
    for name in THROUGH_THE_LISTENER:
        await answered_as_expected(daemon, name)


async def answered_as_expected(daemon: Daemon, name: str) -> None:
    (entry,) = [entry for entry in ENTRIES if entry["file"] == name]
    raw = (CORPUS / name).read_bytes()
    recipient = f"14155550160@{FAX_DOMAIN}"
    before = {job.id for job in daemon.store.recent_jobs(100)}
    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        reply = await client.send(SENDER, [recipient], raw)
    jobs = [job for job in daemon.store.recent_jobs(100) if job.id not in before]
    if "refuse" in entry:
        assert reply.code == 554, (name, reply)
        assert reply.lines == [f"5.6.0 {line}" for line in reply_lines("\n".join(entry["refuse"]))]
        assert reply.text.isascii()
        assert jobs == []
    else:
        assert reply.code == 250, (name, reply)
        (job,) = jobs
        assert [document.name for document in daemon.store.documents(job.id)] == entry["accept"]
