"""The SMTP listener end to end: a real daemon on the sandbox, clients over loopback.

Every reply code the listener gives is asserted here with the client still connected;
replies to senders are read from the daemon's Maildir.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from faxgate import metrics
from faxgate.app import Daemon, StartupError, started
from faxgate.domain.jobs import Intake, Job, JobState
from faxgate.hellofax.sandbox import Sandbox
from faxgate.store.spool import Spool
from tests.conftest import pdf_document, wait_for
from tests.daemon import (
    CALLBACK_TOKEN,
    SANDBOX_APIS,
    assert_sent_once_per_call,
    fast_settings,
    reports_delivered,
    sandbox_posts_to,
    settled,
)
from tests.intake.smtp.testing import (
    FAX_DOMAIN,
    SENDER,
    RawSmtp,
    fax_mail,
    replies,
    smtp_client,
    smtp_daemon,
    smtp_port,
    spool_files,
    subject,
)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with smtp_daemon(tmp_path / "state") as running:
        yield running


def refused(reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value("faxgate_smtp_refused_total", {"reason": reason})
    return value or 0.0


def accepted() -> float:
    return metrics.REGISTRY.get_sample_value("faxgate_smtp_accepted_total") or 0.0


def jobs_of(daemon: Daemon) -> list[Job]:
    return list(reversed(daemon.store.recent_jobs(100)))


async def outbox_done(daemon: Daemon, jobs: list[Job]) -> None:
    """Each job's one notification is done (delivered or found to have nobody to tell)."""

    def done() -> bool:
        rows = [row for job in jobs for row in daemon.store.notifications(job.id)]
        return len(rows) == len(jobs) and all(row.delivered_at for row in rows)

    await wait_for(done, what="every notification done")


# ---------------------------------------------------------------------------- happy paths


@pytest.fixture(params=SANDBOX_APIS)
async def daemon_with_readers(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Daemon]:
    """As in production: messages are read in worker processes; on each sandbox API."""
    sections = {"sandbox": {"api": request.param}}
    async with smtp_daemon(tmp_path / "state", sections, reader_processes=1) as running:
        yield running


async def test_a_mail_becomes_a_fax_and_the_sender_gets_a_reply(
    daemon_with_readers: Daemon,
) -> None:
    daemon = daemon_with_readers
    message = fax_mail("14155550123", pages=2)
    before = accepted()
    errors, text = await aiosmtplib.send(
        message,
        sender=SENDER,
        recipients=[f"14155550123@{FAX_DOMAIN}"],
        hostname="127.0.0.1",
        port=smtp_port(daemon),
    )
    assert errors == {}
    assert text.startswith("2.0.0 OK: queued as ")
    assert accepted() == before + 1

    (job,) = jobs_of(daemon)
    assert text.endswith(job.id)
    assert job.intake is Intake.SMTP
    assert job.to_number == "+14155550123"
    assert job.reply_to == SENDER
    assert job.cover_from == "Alice Example"
    assert job.cover_message == "Contract\n\nPlease sign and send back."
    assert job.intake_ref["message_id"] == "<contract-1@example.com>"
    assert job.intake_ref["sender"] == SENDER
    # The raw message is kept in the spool, as it came.
    assert await asyncio.to_thread(Path(job.intake_ref["eml"]).read_bytes) == message
    (document,) = daemon.store.documents(job.id)
    assert document.name == "contract.pdf"
    assert document.path.read_bytes().startswith(b"%PDF-")

    (ended,) = await settled(daemon, [job])
    assert ended.state is JobState.SENT
    await reports_delivered(daemon, [job])
    (reply,) = replies(daemon)
    assert reply["To"] == SENDER
    assert subject(reply) == "Fax to +1 415-555-0123 delivered (3 pages) - Re: Contract"
    assert reply["In-Reply-To"] == "<contract-1@example.com>"
    assert reply["References"] == "<contract-1@example.com>"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert not any(part.get_filename() for part in reply.walk())  # no document by default


async def test_smtplib_in_a_thread_works_too(daemon: Daemon) -> None:
    import smtplib

    def send() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", smtp_port(daemon), local_hostname="client") as client:
            return client.sendmail(SENDER, [f"+14155550124@{FAX_DOMAIN}"], fax_mail("14155550124"))

    assert await asyncio.to_thread(send) == {}
    (job,) = jobs_of(daemon)
    assert job.to_number == "+14155550124"


async def test_several_recipients_one_fax_and_one_reply_each(daemon: Daemon) -> None:
    to = [
        f"Bob Builder <14155550131@{FAX_DOMAIN}>",
        f"Carol <+14155550132@{FAX_DOMAIN.upper()}>",
        f"415-555-0133@{FAX_DOMAIN}",
        "0014155550134@Fax.Local",
    ]
    envelope = [address.rpartition("<")[2].rstrip(">") for address in to]
    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        # The same number written twice is one fax.
        reply = await client.send(
            SENDER, [*envelope, f"1-415-555-0131@{FAX_DOMAIN}"], fax_mail(*to, pages=1)
        )
    assert reply.code == 250, reply
    jobs = jobs_of(daemon)
    assert [job.to_number for job in jobs] == [f"+1415555013{n}" for n in range(1, 5)]
    assert len({job.group_id for job in jobs}) == 1
    assert jobs[0].group_id
    assert [job.cover_to for job in jobs] == ["Bob Builder", "Carol", None, None]
    assert len({job.intake_ref["eml"] for job in jobs}) == 1

    await settled(daemon, jobs)
    await reports_delivered(daemon, jobs)
    subjects = sorted(subject(mail) for mail in replies(daemon))
    assert subjects == [
        f"Fax to +1 415-555-013{n} delivered (2 pages) - Re: Contract" for n in range(1, 5)
    ]


@pytest.mark.parametrize("api", SANDBOX_APIS)
async def test_each_failure_gets_a_reply_with_its_reason_and_tries(
    tmp_path: Path, api: str
) -> None:
    # The sandbox fails these numbers, each for its own reason (see test_daemon.py); v3
    # has no code for a blacklisted number, which it reports as error_could_not_fax.
    reasons = {
        "0001": ("the line was busy", 3),  # tried again twice, then given up
        "0002": ("no one answered", 2),
        "0003": ("not allocated", 1),
        "0004": ("disconnected", 1),
        "0005": ("blacklisted" if api == "hellofax" else "unknown reason", 1),
        "0006": ("unknown reason", 1),
    }
    sections: dict[str, dict[str, Any]] = {
        "retry": {"busy_retries": 2, "no_answer_retries": 1},
        "sandbox": {"api": api},
    }
    async with smtp_daemon(tmp_path / "state", sections=sections) as daemon:
        async with smtp_client(smtp_port(daemon)) as client:
            await client.ehlo()
            to = [f"1415555{last}@{FAX_DOMAIN}" for last in reasons]
            assert (await client.send(SENDER, to, fax_mail("x"))).code == 250
        jobs = jobs_of(daemon)
        assert all(job.state is JobState.FAILED for job in await settled(daemon, jobs))
        await reports_delivered(daemon, jobs)
    by_number = {subject(mail).split()[3]: mail for mail in replies(daemon)}
    assert len(by_number) == len(reasons)
    for last, (reason, tries) in reasons.items():
        mail = by_number[f"415-555-{last}"]
        assert subject(mail).startswith(f"Fax to +1 415-555-{last} failed: "), subject(mail)
        assert reason in subject(mail)
        assert subject(mail).endswith(" - Re: Contract")
        assert (f"({tries} tries)" in subject(mail)) is (tries > 1)
        body = mail.get_body()
        assert body is not None
        if tries > 1:
            assert f"faxgate tried {tries} times" in body.get_content()


async def test_the_sent_document_is_attached_when_asked(tmp_path: Path) -> None:
    async with smtp_daemon(tmp_path / "state", attach_document=True) as daemon:
        async with smtp_client(smtp_port(daemon)) as client:
            await client.ehlo()
            reply = await client.send(SENDER, [f"14155550140@{FAX_DOMAIN}"], fax_mail("x"))
        assert reply.code == 250
        jobs = jobs_of(daemon)
        await settled(daemon, jobs)
        await reports_delivered(daemon, jobs)
    (mail,) = replies(daemon)
    (attached,) = [part for part in mail.walk() if part.get_filename()]
    assert attached.get_filename() == "contract.pdf"
    assert attached.get_content_type() == "application/pdf"


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("recipient", "code", "status", "words", "reason"),
    [
        ("bob@example.com", 550, "5.1.1", "not a fax address here", "relay"),
        (f"12@{FAX_DOMAIN}", 553, "5.1.3", "too short", "bad_number"),
        (f"fax-me@{FAX_DOMAIN}", 553, "5.1.3", "contains letters", "bad_number"),
        (f"19005550100@{FAX_DOMAIN}", 550, "5.7.1", "premium-rate", "forbidden_number"),
        (f"+442079460958@{FAX_DOMAIN}", 550, "5.7.1", "are not allowed", "forbidden_number"),
    ],
)
async def test_recipients_are_refused_at_rcpt_with_the_reason(
    tmp_path: Path, recipient: str, code: int, status: str, words: str, reason: str
) -> None:
    sections = {"numbers": {"allowed_countries": ["US", "CA"]}}
    async with smtp_daemon(tmp_path / "state", sections=sections) as daemon:
        before = refused(reason)
        async with smtp_client(smtp_port(daemon)) as client:
            await client.ehlo()
            assert (await client.command(f"MAIL FROM:<{SENDER}>")).code == 250
            reply = await client.command(f"RCPT TO:<{recipient}>")
            assert (reply.code, reply.status) == (code, status), reply
            assert words in reply.text
            assert refused(reason) == before + 1
            # The session goes on: a good recipient is still taken.
            assert (await client.command(f"RCPT TO:<14155550150@{FAX_DOMAIN}>")).code == 250
            assert (await client.data(fax_mail("14155550150"))).code == 250
        assert [job.to_number for job in jobs_of(daemon)] == ["+14155550150"]


async def test_too_many_recipients(tmp_path: Path) -> None:
    async with smtp_daemon(tmp_path / "state", max_recipients=2) as daemon:
        async with smtp_client(smtp_port(daemon)) as client:
            await client.ehlo()
            await client.command(f"MAIL FROM:<{SENDER}>")
            for n in (1, 2):
                assert (await client.command(f"RCPT TO:<1415555016{n}@{FAX_DOMAIN}>")).code == 250
            reply = await client.command(f"RCPT TO:<14155550163@{FAX_DOMAIN}>")
            assert (reply.code, reply.status) == (452, "4.5.3")
            assert "at most 2" in reply.text
            assert (await client.data(fax_mail("x"))).code == 250
        assert len(jobs_of(daemon)) == 2


async def test_senders_outside_the_allowlist_are_refused(tmp_path: Path) -> None:
    allowed = ["@example.com", "scanner@office.example.net", "*@*.branch.example.org"]
    async with (
        smtp_daemon(tmp_path / "state", allowed_senders=allowed) as daemon,
        smtp_client(smtp_port(daemon)) as client,
    ):
        await client.ehlo()
        for sender in ("mallory@evil.example", "", "bob@sub.example.com"):
            reply = await client.command(f"MAIL FROM:<{sender}>")
            assert (reply.code, reply.status) == (550, "5.7.1"), (sender, reply)
        for sender in ("Bob@Example.COM", "scanner@office.example.net", "x@a.branch.example.org"):
            assert (await client.command(f"MAIL FROM:<{sender}>")).code == 250
            assert (await client.command("RSET")).code == 250


async def test_messages_over_the_size_limit_are_refused(tmp_path: Path) -> None:
    limit = 64 * 1024
    async with smtp_daemon(tmp_path / "state", max_message_size=limit) as daemon:
        big = fax_mail("x", attachment=("big.pdf", b"%PDF-1.4\n" + b"0" * limit, "application/pdf"))
        async with smtp_client(smtp_port(daemon)) as client:
            hello = await client.ehlo()
            assert f"SIZE {limit}" in hello.lines
            # Declared too big: refused at MAIL FROM.
            reply = await client.command(f"MAIL FROM:<{SENDER}> SIZE={len(big)}")
            assert (reply.code, reply.status) == (552, "5.3.4")
            # Not declared: refused once the data is in, and nothing is kept.
            reply = await client.send(SENDER, [f"14155550170@{FAX_DOMAIN}"], big)
            assert (reply.code, reply.status) == (552, "5.3.4")
            # The session goes on.
            reply = await client.send(SENDER, [f"14155550170@{FAX_DOMAIN}"], fax_mail("x"))
            assert reply.code == 250
        assert len(jobs_of(daemon)) == 1


async def test_the_daily_limit_per_sender(tmp_path: Path) -> None:
    async with smtp_daemon(tmp_path / "state", daily_limit=3) as daemon:
        port = smtp_port(daemon)
        async with smtp_client(port) as client:
            await client.ehlo()
            to = [f"1415555018{n}@{FAX_DOMAIN}" for n in (1, 2)]
            assert (await client.send(SENDER, to, fax_mail("x"))).code == 250
            # One fax is left today: a message to two numbers gets the second refused.
            await client.command(f"MAIL FROM:<{SENDER}>")
            assert (await client.command(f"RCPT TO:<14155550183@{FAX_DOMAIN}>")).code == 250
            reply = await client.command(f"RCPT TO:<14155550184@{FAX_DOMAIN}>")
            assert (reply.code, reply.status) == (452, "4.7.1")
            await client.command("RSET")
            # Another sender has a limit of their own.
            other = "bob@example.com"
            assert (await client.send(other, to, fax_mail("x"))).code == 250

        # Two sessions that both passed RCPT: the limit holds at DATA.
        first, second = await RawSmtp.connect(port), await RawSmtp.connect(port)
        try:
            for client in (first, second):
                await client.ehlo()
                await client.command(f"MAIL FROM:<{SENDER}>")
                assert (await client.command(f"RCPT TO:<14155550185@{FAX_DOMAIN}>")).code == 250
            assert (await first.data(fax_mail("x"))).code == 250
            reply = await second.data(fax_mail("x"))
            assert (reply.code, reply.status) == (452, "4.7.1")
        finally:
            await first.close()
            await second.close()
        senders = [job.intake_ref["sender"] for job in jobs_of(daemon)]
        assert senders.count(SENDER) == 3


async def test_a_message_with_nothing_to_fax_is_refused_at_data(daemon: Daemon) -> None:
    before_files = spool_files(daemon)
    archive = ("scans.zip", b"PK\x03\x04" + b"\0" * 100, "application/zip")
    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        reply = await client.send(
            SENDER, [f"14155550190@{FAX_DOMAIN}"], fax_mail("x", attachment=archive)
        )
    assert (reply.code, reply.status) == (554, "5.6.0")
    assert "scans.zip" in reply.text
    assert "accepted are PDF" in reply.text
    assert jobs_of(daemon) == []
    assert spool_files(daemon) == before_files


# ---------------------------------------------------------------------------- relaying


async def test_no_open_relay(daemon: Daemon) -> None:
    attempts = [
        "victim@example.net",
        "victim@[127.0.0.1]",
        f"@{FAX_DOMAIN}:victim@example.net",  # a source route
        f"victim%example.net@{FAX_DOMAIN}",  # the percent hack
        f"14155550123%example.net@{FAX_DOMAIN}",
        f"example.net!victim@{FAX_DOMAIN}",  # a bang path
        f'"victim@example.net"@{FAX_DOMAIN}',
    ]
    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        await client.command(f"MAIL FROM:<{SENDER}>")
        for address in attempts:
            reply = await client.command(f"RCPT TO:<{address}>")
            assert (reply.code, reply.status) == (550, "5.1.1"), (address, reply)
        assert (await client.command("DATA")).code == 503  # no recipient was taken
    assert jobs_of(daemon) == []


async def test_faxgate_will_not_listen_beyond_loopback_as_an_open_relay(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "open", smtp={"listen": "0.0.0.0:0"})
    with pytest.raises(StartupError, match="anyone could send faxes"):
        async with started(settings):
            pass
    guarded = fast_settings(
        tmp_path / "guarded", smtp={"listen": "0.0.0.0:0", "allowed_senders": ["@example.com"]}
    )
    async with started(guarded) as daemon:
        assert daemon.smtp is not None
        assert daemon.smtp.host == "0.0.0.0"


# ---------------------------------------------------------------------------- no loops


@pytest.mark.parametrize(
    ("sender", "headers"),
    [
        ("", {}),
        ("MAILER-DAEMON@example.com", {}),
        (SENDER, {"Auto-Submitted": "auto-generated"}),
        (SENDER, {"List-Id": "<scans.lists.example.com>"}),
        (SENDER, {"Precedence": "bulk"}),
    ],
)
async def test_no_reply_to_bounces_lists_or_automatic_mail(
    daemon: Daemon, sender: str, headers: dict[str, str]
) -> None:
    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        reply = await client.send(
            sender, [f"14155550200@{FAX_DOMAIN}"], fax_mail("x", headers=headers)
        )
    assert reply.code == 250
    (job,) = jobs_of(daemon)
    assert job.reply_to is None
    assert job.intake_ref["no_reply"]
    await settled(daemon, [job])
    await outbox_done(daemon, [job])
    assert replies(daemon) == []


async def test_the_reply_goes_to_reply_to(daemon: Daemon) -> None:
    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        message = fax_mail("x", headers={"Reply-To": "Office <office@example.com>"})
        assert (await client.send(SENDER, [f"14155550210@{FAX_DOMAIN}"], message)).code == 250
    jobs = jobs_of(daemon)
    await settled(daemon, jobs)
    await reports_delivered(daemon, jobs)
    (mail,) = replies(daemon)
    assert mail["To"] == "office@example.com"


# ---------------------------------------------------------------------------- durability


async def test_a_restart_between_accept_and_submit_sends_the_fax_once(
    tmp_path: Path, sandbox: Sandbox, unused_tcp_port: int
) -> None:
    state = tmp_path / "state"
    # Callbacks reach the daemon from its first fax on: sent faxes are confirmed.
    await sandbox_posts_to(sandbox, unused_tcp_port)
    provider = {
        "provider": {"base_url": sandbox.base_url},
        "http": {"listen": f"127.0.0.1:{unused_tcp_port}", "callback_token": CALLBACK_TOKEN},
    }
    async with smtp_daemon(state, sections=provider) as first:
        first.dispatcher.stop()  # nothing leaves: the faxes wait in the store
        async with smtp_client(smtp_port(first)) as client:
            await client.ehlo()
            to = [f"1415555022{n}@{FAX_DOMAIN}" for n in (1, 2)]
            assert (await client.send(SENDER, to, fax_mail("x"))).code == 250
        waiting = jobs_of(first)
        assert [job.state for job in waiting] == [JobState.QUEUED] * 2
    assert sandbox.inspect() == []

    async with smtp_daemon(state, sections=provider) as second:
        ended = await settled(second, waiting)
        assert all(job.state is JobState.SENT for job in ended)
        assert_sent_once_per_call(sandbox, second, waiting)
        await reports_delivered(second, waiting)


async def test_stopping_right_after_250_loses_nothing(tmp_path: Path, sandbox: Sandbox) -> None:
    state = tmp_path / "state"
    provider = {"provider": {"base_url": sandbox.base_url}}
    async with smtp_daemon(state, sections=provider) as first:
        async with smtp_client(smtp_port(first)) as client:
            await client.ehlo()
            reply = await client.send(SENDER, [f"14155550230@{FAX_DOMAIN}"], fax_mail("x"))
        assert reply.code == 250
        (job,) = jobs_of(first)
    async with smtp_daemon(state, sections=provider) as second:
        await settled(second, [job])
        assert_sent_once_per_call(sandbox, second, [job])


async def test_a_storing_failure_answers_451_and_keeps_nothing(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    before_files = spool_files(daemon)

    def broken_disk(*_args: object, **_kwargs: object) -> list[Job]:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(daemon.store, "create_jobs", broken_disk)
    failures = refused("storage")
    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        to = [f"1415555024{n}@{FAX_DOMAIN}" for n in (1, 2)]
        reply = await client.send(SENDER, to, fax_mail("x"))
        assert (reply.code, reply.status) == (451, "4.3.0")
        assert refused("storage") == failures + 1
        assert spool_files(daemon) == before_files

        # A document that cannot be written: the .eml already written goes too.
        monkeypatch.undo()
        assert daemon.smtp is not None
        spool = daemon.smtp.handler.intake.spool
        writes = 0
        real_store_bytes = Spool.store_bytes

        def full_disk(self: Spool, data: bytes, *, suffix: str = "") -> object:
            nonlocal writes
            writes += 1
            if writes == 2:
                raise OSError(28, "No space left on device")
            return real_store_bytes(self, data, suffix=suffix)

        monkeypatch.setattr(Spool, "store_bytes", full_disk)
        reply = await client.send(SENDER, to, fax_mail("x"))
        assert (reply.code, reply.status) == (451, "4.3.0")
        assert spool_files(daemon) == before_files
        assert writes == 2
        assert spool is daemon.smtp.handler.intake.spool

        # Mended: the client's retry goes through.
        monkeypatch.undo()
        assert (await client.send(SENDER, to, fax_mail("x"))).code == 250
    assert len(jobs_of(daemon)) == 2


async def test_long_lines_from_scanners_are_taken(daemon: Daemon) -> None:
    document = pdf_document(1) + b"%" + b"x" * 150_000 + b"\n"
    encoded = base64.b64encode(document)  # one line of 200 KB: no line breaks at all
    raw = b"\r\n".join(
        [
            b"From: Scanner <" + SENDER.encode() + b">",
            b"To: 14155550250@fax.local",
            b"Subject: Scan " + b"y" * 3000,
            b"MIME-Version: 1.0",
            b'Content-Type: multipart/mixed; boundary="b"',
            b"",
            b"--b",
            b"Content-Type: text/plain",
            b"",
            b"Scanned document. " * 300,
            b"--b",
            b'Content-Type: application/pdf; name="scan.pdf"',
            b"Content-Transfer-Encoding: base64",
            b'Content-Disposition: attachment; filename="scan.pdf"',
            b"",
            encoded,
            b"--b--",
            b"",
        ]
    )
    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        reply = await client.send(SENDER, [f"14155550250@{FAX_DOMAIN}"], raw)
    assert reply.code == 250, reply
    (job,) = jobs_of(daemon)
    (stored,) = daemon.store.documents(job.id)
    assert stored.path.read_bytes() == document
