"""The IMAP intake end to end: a real Dovecot, a whole daemon, mail put into the mailbox
as a mail system delivers it (APPEND)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from faxgate.app import Daemon, StartupError
from faxgate.domain.jobs import Intake, Job
from tests.conftest import wait_for
from tests.intake.imap.conftest import SHARED, imap_daemon
from tests.intake.imap.dovecot import Dovecot
from tests.intake.smtp.testing import fax_mail, replies, subject

PROCESSED = "faxgate.processed"  # Dovecot's maildir hierarchy delimiter is "."
REFUSED = "faxgate.refused"


def jobs_of(daemon: Daemon) -> list[Job]:
    return daemon.store.recent_jobs(500)


async def count(server: Dovecot, mailbox: str) -> int:
    return await asyncio.to_thread(server.count, mailbox)


async def moved(server: Dovecot, mailbox: str, expected: int) -> bool:
    return await count(server, mailbox) == expected and await count(server, "INBOX") == 0


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
async def test_a_message_in_the_mailbox_becomes_a_job_and_moves_to_processed(
    tmp_path: Path, dovecot: Dovecot, tls: str
) -> None:
    port = dovecot.imaps_port if tls == "implicit" else dovecot.imap_port
    dovecot.append(fax_mail("14155550123", subject="Contract"))
    async with imap_daemon(tmp_path / "state", dovecot, tls=tls, port=port) as daemon:
        jobs = await wait_for(lambda: jobs_of(daemon), what="the job from the mailbox")
        await wait_for(lambda: moved(dovecot, PROCESSED, 1), what="the move to processed")
        assert [job.to_number for job in jobs] == ["+14155550123"]
        job = jobs[0]
        assert job.intake is Intake.SMTP  # its report goes back as a reply, by the relay
        assert job.intake_ref["via"] == "imap"
        assert job.intake_ref["message_id"] == "<contract-1@example.com>"
        assert job.reply_to == "alice@example.com"
        assert await count(dovecot, REFUSED) == 0


async def test_mail_to_the_shared_address_is_faxed_to_the_number_in_its_subject(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    raw = fax_mail(
        SHARED,
        subject="Fax to +1 415 555 0142: the lease",
        headers={"Delivered-To": SHARED},
    )
    dovecot.append(raw)
    async with imap_daemon(tmp_path / "state", dovecot) as daemon:
        jobs = await wait_for(lambda: jobs_of(daemon), what="the job from the subject")
        assert [job.to_number for job in jobs] == ["+14155550142"]
        await wait_for(lambda: moved(dovecot, PROCESSED, 1), what="the move to processed")


async def test_idle_wakes_the_intake_when_mail_arrives(tmp_path: Path, dovecot: Dovecot) -> None:
    """poll_interval is an hour: only IDLE can bring the message in within the deadline."""
    dovecot.append(fax_mail("14155550101", message_id="<first@example.com>"))
    async with imap_daemon(tmp_path / "state", dovecot) as daemon:
        await wait_for(lambda: moved(dovecot, PROCESSED, 1), what="the first message")
        loop = asyncio.get_running_loop()
        appended = loop.time()
        await asyncio.to_thread(
            dovecot.append, fax_mail("14155550102", message_id="<second@example.com>")
        )
        await wait_for(lambda: len(jobs_of(daemon)) == 2, timeout=5.0, interval=0.005, what="IDLE")
        assert loop.time() - appended < 5.0
        await wait_for(lambda: moved(dovecot, PROCESSED, 2), what="the second move")


async def test_a_sender_outside_the_allowlist_is_refused_without_a_reply(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    dovecot.append(fax_mail("14155550123", sender="Mallory <mallory@elsewhere.example>"))
    async with imap_daemon(tmp_path / "state", dovecot) as daemon:
        await wait_for(lambda: moved(dovecot, REFUSED, 1), what="the move to refused")
        assert jobs_of(daemon) == []
        assert await count(dovecot, PROCESSED) == 0
        assert daemon.store.pending_notifications(daemon.store._clock(), 10) == []
    assert replies(daemon) == []


async def test_a_message_with_nothing_to_fax_is_refused_with_one_reply(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    raw = fax_mail(
        "14155550123",
        subject="The archive",
        body=None,
        message_id="<archive@example.com>",
        attachment=("archive.zip", b"PK\x03\x04 not a document", "application/zip"),
    )
    dovecot.append(raw)
    async with imap_daemon(tmp_path / "state", dovecot) as daemon:
        await wait_for(lambda: moved(dovecot, REFUSED, 1), what="the move to refused")
        reply = (await wait_for(lambda: replies(daemon), what="the reply"))[0]
        assert jobs_of(daemon) == []
    assert len(replies(daemon)) == 1
    assert reply["To"] == "alice@example.com"
    assert reply["In-Reply-To"] == "<archive@example.com>"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert subject(reply) == "Fax not sent - Re: The archive"
    assert "archive.zip" in reply.get_content()


async def test_a_message_to_no_fax_address_is_refused_with_the_reason(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    dovecot.append(fax_mail("bob@company.example", subject="Lunch?"))
    async with imap_daemon(tmp_path / "state", dovecot) as daemon:
        await wait_for(lambda: moved(dovecot, REFUSED, 1), what="the move to refused")
        reply = (await wait_for(lambda: replies(daemon), what="the reply"))[0]
    assert "no fax address" in reply.get_content()


async def test_a_reload_reads_the_contacts_file_again_for_the_mailbox_too(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    contacts = tmp_path / "contacts.toml"
    contacts.write_text('[contacts.drsmith]\nnumber = "+1 415 555 0171"\n')
    sections = {"addressing": {"contacts_file": str(contacts)}}
    async with imap_daemon(tmp_path / "state", dovecot, sections) as daemon:
        contacts.write_text('[contacts.northside]\nnumber = "+1 415 555 0174"\n')
        await daemon.reload_from(daemon.settings)  # the settings unchanged: the file is not
        dovecot.append(fax_mail("northside@fax.local", subject="Order"))
        await wait_for(lambda: moved(dovecot, PROCESSED, 1), what="the move to processed")
        assert [job.to_number for job in jobs_of(daemon)] == ["+14155550174"]


async def test_a_burst_of_200_messages_is_taken_exactly_once(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    messages = [
        fax_mail(f"1415555{100 + n % 100:04d}", message_id=f"<burst-{n}@example.com>", pages=1)
        for n in range(200)
    ]
    async with imap_daemon(tmp_path / "state", dovecot) as daemon:
        await asyncio.to_thread(dovecot.append_many, messages)
        await wait_for(
            lambda: moved(dovecot, PROCESSED, 200), timeout=60, interval=0.2, what="200 moved"
        )
        jobs = jobs_of(daemon)
    assert len(jobs) == 200
    assert sorted(job.intake_ref["message_id"] for job in jobs) == sorted(
        f"<burst-{n}@example.com>" for n in range(200)
    )
    assert sorted(await asyncio.to_thread(dovecot.message_ids, PROCESSED)) == sorted(
        f"<burst-{n}@example.com>" for n in range(200)
    )


async def test_the_intake_comes_back_after_the_server_restarts(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    async with imap_daemon(tmp_path / "state", dovecot) as daemon:
        dovecot.append(fax_mail("14155550101", message_id="<before@example.com>"))
        await wait_for(lambda: moved(dovecot, PROCESSED, 1), what="the first message")
        await asyncio.to_thread(dovecot.stop)
        await asyncio.to_thread(dovecot.start)
        dovecot.append(fax_mail("14155550102", message_id="<after@example.com>"))
        await wait_for(
            lambda: len(jobs_of(daemon)) == 2, timeout=30, what="the message after the restart"
        )
        await wait_for(lambda: moved(dovecot, PROCESSED, 2), what="the second move")


async def test_without_an_allowlist_the_intake_does_not_start(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    smtp = {"listen": "127.0.0.1:0", "allowed_senders": []}
    with pytest.raises(StartupError, match=r"smtp\.allowed_senders, or imap\.trusted"):
        async with imap_daemon(tmp_path / "state", dovecot, sections={"smtp": smtp}):
            pass


async def test_a_trusted_mailbox_takes_mail_from_anyone(tmp_path: Path, dovecot: Dovecot) -> None:
    smtp = {"listen": "127.0.0.1:0", "reader_processes": 0, "allowed_senders": []}
    dovecot.append(fax_mail("14155550123", sender="Bob <bob@anywhere.example>"))
    async with imap_daemon(
        tmp_path / "state", dovecot, sections={"smtp": smtp}, trusted=True
    ) as daemon:
        jobs = await wait_for(lambda: jobs_of(daemon), what="the job")
        assert jobs[0].reply_to == "bob@anywhere.example"


async def test_an_oauth2_token_is_read_afresh_at_each_login(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    """The file first holds an expired token: the login is refused, then the outside tool
    writes a fresh one and the next try logs in with it."""
    token_file = tmp_path / "token"
    token_file.write_text(dovecot.oauth2_token(lifetime=-60))
    dovecot.append(fax_mail("14155550123"))
    async with imap_daemon(
        tmp_path / "state", dovecot, password="", oauth2_token_file=str(token_file)
    ) as daemon:
        await wait_for(
            lambda: "method=XOAUTH2" in dovecot.logs() and "auth failed" in dovecot.logs(),
            what="the refused login",
        )
        assert jobs_of(daemon) == []
        token_file.write_text(dovecot.oauth2_token())
        await wait_for(lambda: jobs_of(daemon), timeout=15, what="the job after the refresh")
        await wait_for(lambda: moved(dovecot, PROCESSED, 1), what="the move to processed")


async def test_a_server_without_idle_or_move_is_polled_and_copied_from(tmp_path: Path) -> None:
    """Dovecot announcing neither IDLE nor MOVE nor UIDPLUS: the intake asks every
    poll_interval and moves by COPY, \\Deleted and EXPUNGE."""
    server = Dovecot(tmp_path / "plain-dovecot", capability="IMAP4rev1 LITERAL+")
    server.start()
    try:
        server.append(fax_mail("14155550101", message_id="<one@example.com>"))
        async with imap_daemon(tmp_path / "state", server, poll_interval="0.2s") as daemon:
            await wait_for(lambda: moved(server, PROCESSED, 1), what="the first move")
            server.append(fax_mail("14155550102", message_id="<two@example.com>"))
            await wait_for(lambda: moved(server, PROCESSED, 2), what="the polled message")
            assert len(jobs_of(daemon)) == 2
    finally:
        server.stop()
        server.remove()
