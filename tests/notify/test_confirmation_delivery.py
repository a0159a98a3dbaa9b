"""Confirmation reports delivered: attached to the reply of a mailed fax and written beside
a hot folder's result, by the whole daemon against the sandbox over real HTTP and SMTP;
made after the 250 and after the job ends, never on the way in."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from faxgate.app import Daemon, started
from faxgate.cli import main as cli_main
from faxgate.domain.jobs import Job, JobState
from faxgate.notify import confirmation
from faxgate.notify.confirmation import Confirmations
from faxgate.notify.mail_reply import smtp_report_handler
from faxgate.notify.mailer import MaildirMailer
from faxgate.notify.notifier import report_mail_handler
from faxgate.settings import FolderSettings
from faxgate.store import Store
from tests.conftest import wait_for
from tests.daemon import fast_settings, reports_delivered, settled
from tests.intake.smtp.testing import (
    FAX_DOMAIN,
    SENDER,
    fax_mail,
    replies,
    smtp_client,
    smtp_daemon,
    smtp_port,
)
from tests.notify.mailed import maildir_mails
from tests.notify.reports import (
    bomb_png,
    images_in,
    inked_pdf,
    picture_variance,
    report_text,
)
from tests.notify.test_confirmation import busy_then, make_job

FOLDER_QUICK: dict[str, Any] = {"stable_for": 0.2, "sidecar_wait": 0.5, "rescan_interval": 3600}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "faxgate.sqlite3") as opened:
        yield opened


def attachments(mail: EmailMessage) -> dict[str, bytes]:
    found = {}
    for part in mail.iter_attachments():
        name = part.get_filename()
        assert name is not None
        content = part.get_content()
        assert isinstance(content, bytes)
        found[name] = content
    return found


# ---------------------------------------------------------------------------- the reply


async def test_the_reply_carries_the_report_before_the_document(
    store: Store, tmp_path: Path
) -> None:
    job = busy_then(store, make_job(store, tmp_path, inked_pdf()), JobState.SENT, "sent")
    maildir = tmp_path / "maildir"
    handle = smtp_report_handler(
        MaildirMailer(maildir),
        store,
        attach_document=True,
        confirmations=Confirmations("with_image"),
    )
    (notification,) = store.notifications(job.id)
    await handle(notification, store.get_job(job.id))
    (mail,) = await asyncio.to_thread(maildir_mails, maildir)
    names = [part.get_filename() for part in mail.iter_attachments()]
    assert names == [f"fax-report-{job.id}.pdf", "contract.pdf"]
    report = attachments(mail)[f"fax-report-{job.id}.pdf"]
    assert "Your fax to +1 415-555-0123 was sent (3 pages), on try 2." in report_text(report)
    assert picture_variance(report) > 1000


async def test_a_report_that_cannot_be_made_leaves_the_reply_to_go_without_it(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: object) -> bytes:
        raise RuntimeError("a fault in the layout")

    monkeypatch.setattr(confirmation, "layout_report", broken)
    job = busy_then(store, make_job(store, tmp_path, inked_pdf()), JobState.SENT, "sent")
    maildir = tmp_path / "maildir"
    handle = smtp_report_handler(
        MaildirMailer(maildir), store, confirmations=Confirmations("without_image")
    )
    (notification,) = store.notifications(job.id)
    await handle(notification, store.get_job(job.id))
    (mail,) = await asyncio.to_thread(maildir_mails, maildir)
    assert list(mail.iter_attachments()) == []
    assert f"no confirmation report for job {job.id}" in caplog.text


async def test_reports_off_leave_the_reply_as_it_was(store: Store, tmp_path: Path) -> None:
    job = busy_then(store, make_job(store, tmp_path, inked_pdf()), JobState.SENT, "sent")
    maildir = tmp_path / "maildir"
    handle = smtp_report_handler(MaildirMailer(maildir), store, confirmations=Confirmations("off"))
    (notification,) = store.notifications(job.id)
    await handle(notification, store.get_job(job.id))
    (mail,) = await asyncio.to_thread(maildir_mails, maildir)
    assert list(mail.iter_attachments()) == []


# ---------------------------------------------------------------------------- the daemon


def jobs_of(daemon: Daemon) -> list[Job]:
    return list(reversed(daemon.store.recent_jobs(100)))


async def mail_a_fax(daemon: Daemon, number: str, attachment: tuple[str, bytes, str]) -> None:
    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        reply = await client.send(
            SENDER, [f"{number}@{FAX_DOMAIN}"], fax_mail(number, attachment=attachment)
        )
    assert reply.code == 250


async def test_a_mailed_fax_is_answered_with_its_report(tmp_path: Path) -> None:
    sections = {"reports": {"confirmation": "with_image"}}
    async with smtp_daemon(tmp_path / "state", sections) as daemon:
        await mail_a_fax(daemon, "14155550140", ("offer.pdf", inked_pdf(2), "application/pdf"))
        jobs = jobs_of(daemon)
        (job,) = await settled(daemon, jobs)
        await reports_delivered(daemon, jobs)
    (mail,) = replies(daemon)
    report = attachments(mail)[f"fax-report-{job.id}.pdf"]
    text = report_text(report)
    assert "SENT" in text
    assert "+1 415-555-0140" in text
    assert job.id in text
    assert job.provider_guid is not None
    assert job.provider_guid in text
    assert "First page of offer.pdf" in text
    assert picture_variance(report) > 1000


async def test_a_failed_mailed_fax_report_says_why(tmp_path: Path) -> None:
    sections = {"reports": {"confirmation": "without_image"}}
    async with smtp_daemon(tmp_path / "state", sections) as daemon:
        # The sandbox fails numbers ending 0004 (docs/sandbox.md).
        await mail_a_fax(daemon, "14155550004", ("offer.pdf", inked_pdf(), "application/pdf"))
        jobs = jobs_of(daemon)
        (job,) = await settled(daemon, jobs)
        await reports_delivered(daemon, jobs)
    assert job.state is JobState.FAILED
    (mail,) = replies(daemon)
    report = attachments(mail)[f"fax-report-{job.id}.pdf"]
    text = report_text(report)
    assert "FAILED" in text
    assert f"could not be sent: {job.reason}" in " ".join(text.split())
    assert images_in(report) == 0


@contextlib.asynccontextmanager
async def folder_daemon(tmp_path: Path, mode: str) -> AsyncIterator[Daemon]:
    outbox = tmp_path / "outbox"
    outbox.mkdir(exist_ok=True)
    settings = fast_settings(
        tmp_path / "state",
        folders=[FolderSettings(path=outbox, **FOLDER_QUICK)],
        reports={"confirmation": mode},
    )
    async with started(settings) as daemon:
        yield daemon


def written(path: Path) -> bytes | None:
    try:
        return path.read_bytes() or None
    except FileNotFoundError:
        return None


async def test_a_dropped_file_gets_its_report_beside_its_result(tmp_path: Path) -> None:
    async with folder_daemon(tmp_path, "with_image") as daemon:
        outbox = daemon.settings.folders[0].path
        (outbox / "14155550123_letter.pdf").write_bytes(inked_pdf(3))
        sent = outbox / "sent"
        result = await wait_for(
            lambda: written(sent / "14155550123_letter.pdf.result.json"),
            timeout=20,
            what="the result",
        )
        report = await wait_for(
            lambda: written(sent / "14155550123_letter.pdf.report.pdf"),
            timeout=20,
            what="the report",
        )
    facts = json.loads(result)
    text = report_text(report)
    assert facts["outcome"] == "sent"
    assert facts["faxes"][0]["job"] in text
    assert facts["provider_guid"] in text
    assert "Pages 3" in text
    # The spool let go of the sent file before the report was made: drawn from sent/.
    assert picture_variance(report) > 1000


async def test_a_drop_to_two_numbers_gets_a_report_for_each(tmp_path: Path) -> None:
    async with folder_daemon(tmp_path, "without_image") as daemon:
        outbox = daemon.settings.folders[0].path
        (outbox / "both.pdf.json").write_text(json.dumps({"to": ["+14155550124", "+14155550004"]}))
        (outbox / "both.pdf").write_bytes(inked_pdf())
        failed = outbox / "failed"
        reports = [
            failed / "both.pdf.report-14155550124.pdf",
            failed / "both.pdf.report-14155550004.pdf",
        ]
        texts = [
            report_text(await wait_for(functools.partial(written, path), 20, what=path.name))
            for path in reports
        ]
        await wait_for(lambda: written(failed / "both.pdf.result.json"), what="the result")
    assert "SENT" in texts[0]
    assert "+1 415-555-0124" in texts[0]
    assert "FAILED" in texts[1]
    assert "+1 415-555-0004" in texts[1]
    assert not (failed / "both.pdf.report.pdf").exists()


async def test_a_dropped_bomb_is_sent_and_reported_with_a_note(tmp_path: Path) -> None:
    """A decompression bomb is a valid PNG as far as the intake looks (it decodes no
    images); its report says there is no image, and why, and the daemon carries on."""
    async with folder_daemon(tmp_path, "with_image") as daemon:
        outbox = daemon.settings.folders[0].path
        (outbox / "14155550141_scan.png").write_bytes(bomb_png())
        report = await wait_for(
            lambda: written(outbox / "sent" / "14155550141_scan.png.report.pdf"),
            timeout=20,
            what="the report",
        )
        (outbox / "14155550142_next.pdf").write_bytes(inked_pdf())
        after = await wait_for(
            lambda: written(outbox / "sent" / "14155550142_next.pdf.report.pdf"),
            timeout=20,
            what="the next report",
        )
    text = report_text(report)
    assert "SENT" in text
    assert "No image: 14155550141_scan.png could not be drawn: the image is too large" in text
    assert images_in(report) == 0
    assert picture_variance(after) > 1000


async def test_a_drop_with_an_owner_mails_the_report_too(tmp_path: Path) -> None:
    async with folder_daemon(tmp_path, "with_image") as daemon:
        outbox = daemon.settings.folders[0].path
        sidecar = {"to": "+14155550125", "notify": "owner@example.com"}
        (outbox / "deed.pdf.json").write_text(json.dumps(sidecar))
        (outbox / "deed.pdf").write_bytes(inked_pdf())
        beside = await wait_for(
            lambda: written(outbox / "sent" / "deed.pdf.report.pdf"), 20, what="the report"
        )
        mails = daemon.settings.maildir / "new"
        await wait_for(lambda: mails.exists() and any(mails.iterdir()), what="the report mail")
        (job,) = jobs_of(daemon)
    (mail,) = replies(daemon)
    assert mail["To"] == "owner@example.com"
    mailed = attachments(mail)[f"fax-report-{job.id}.pdf"]
    assert mailed == beside
    assert picture_variance(mailed) > 1000


# ---------------------------------------------------------------------------- send --notify


async def test_the_default_report_mail_carries_the_report_when_reports_are_on(
    store: Store, tmp_path: Path
) -> None:
    job = busy_then(store, make_job(store, tmp_path, inked_pdf()), JobState.SENT, "sent")
    (notification,) = store.notifications(job.id)
    for mode, expected in (("with_image", 1), ("without_image", 0)):
        maildir = tmp_path / mode
        handle = report_mail_handler(MaildirMailer(maildir), store, Confirmations(mode))  # type: ignore[arg-type]
        await handle(notification, store.get_job(job.id))
        (mail,) = await asyncio.to_thread(maildir_mails, maildir)
        report = attachments(mail)[f"fax-report-{job.id}.pdf"]
        assert "Your fax to +1 415-555-0123 was sent" in report_text(report)
        assert images_in(report) == expected
    maildir = tmp_path / "off"
    await report_mail_handler(MaildirMailer(maildir), store, Confirmations("off"))(
        notification, store.get_job(job.id)
    )
    (mail,) = await asyncio.to_thread(maildir_mails, maildir)
    assert list(mail.iter_attachments()) == []


async def test_send_notify_mails_the_report_with_the_text_drawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = tmp_path / "message.txt"
    message.write_text("Dear pharmacy,\n\nPlease refill:\n" + "  Amoxicillin 500 mg\n" * 20)
    settings = fast_settings(tmp_path / "state", reports={"confirmation": "with_image"})
    monkeypatch.setenv("FAXGATE_STATE_DIR", str(settings.state_dir))
    async with started(settings) as daemon:
        command = ["send", "+1 415 555 0150", str(message), "--notify", "me@example.com"]
        assert await asyncio.to_thread(cli_main, command) == 0
        jobs = jobs_of(daemon)
        (job,) = await settled(daemon, jobs)
        await reports_delivered(daemon, jobs)
    (mail,) = await asyncio.to_thread(maildir_mails, settings.maildir)
    assert mail["To"] == "me@example.com"
    report = attachments(mail)[f"fax-report-{job.id}.pdf"]
    text = " ".join(report_text(report).split())
    assert "First page of message.txt" in text
    assert "the provider's layout may differ" in text
    assert picture_variance(report) > 50  # typed lines, not a blank box
