"""Replies to faxes that came by email: threading, subjects, attachments, and silence when
no reply may go. A real store and a real Maildir."""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from faxgate.domain.jobs import Job, JobState
from faxgate.notify.mail_reply import (
    Attachment,
    compose_reply,
    reply_subject_line,
    smtp_report_handler,
)
from faxgate.notify.mailer import MaildirMailer
from faxgate.notify.report_text import read_outcome
from faxgate.notify.reporter import NothingToDeliver, PermanentFailure
from faxgate.store import Store
from tests.conftest import pdf_document
from tests.notify.mailed import T0, ended_with_report, maildir_mails, mailed_job

REF = {
    "sender": "alice@example.com",
    "message_id": "<contract-1@example.com>",
    "subject": "Re: AW: Contract",
}


def make_job(
    store: Store,
    tmp_path: Path,
    *,
    reply_to: str | None = "alice@example.com",
    ref: dict[str, Any] | None = None,
) -> Job:
    ref = REF if ref is None else ref
    return mailed_job(
        store, tmp_path, pdf_document(1), intake_ref=ref, reply_to=reply_to, cover_to="Bob"
    )


def end(store: Store, job: Job, state: JobState, reason: str, attempts: int = 1) -> Job:
    return ended_with_report(
        store, job, state, reason, attempts=attempts, error_code="B", called_at=T0
    )


def compose(store: Store, job: Job, attachments: list[Attachment] | None = None) -> EmailMessage:
    (notification,) = store.notifications(job.id)
    return compose_reply(
        job,
        store.documents(job.id),
        store.events(job.id),
        notification.payload,
        attachments or [],
    )


# ---------------------------------------------------------------------------- composing


def test_a_delivered_fax_reply_is_threaded_under_the_message(store: Store, tmp_path: Path) -> None:
    job = end(store, make_job(store, tmp_path), JobState.SENT, "the fax was sent")
    reply = compose(store, job)
    assert reply["To"] == "alice@example.com"
    assert reply["Subject"] == "Fax to +1 415-555-0123 delivered (3 pages) - Re: Contract"
    assert reply["In-Reply-To"] == "<contract-1@example.com>"
    assert reply["References"] == "<contract-1@example.com>"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert len(reply.get_all("Subject") or []) == 1
    assert reply["X-Faxgate-Job"] == job.id
    body = reply.get_content()
    assert "Your fax to +1 415-555-0123 was sent (3 pages)." in body
    assert "Cover page to:  Bob" in body
    assert not reply.is_multipart()


def test_a_failed_fax_says_why_and_how_often_it_was_tried(store: Store, tmp_path: Path) -> None:
    job = end(store, make_job(store, tmp_path), JobState.FAILED, "the line was busy", attempts=4)
    reply = compose(store, job)
    assert reply["Subject"] == (
        "Fax to +1 415-555-0123 failed: the line was busy (4 tries) - Re: Contract"
    )
    assert "could not be sent: the line was busy" in reply.get_content()


def test_subjects_without_an_original_subject(store: Store, tmp_path: Path) -> None:
    job = end(store, make_job(store, tmp_path, ref={}), JobState.SENT, "the fax was sent")
    reply = compose(store, job)
    assert reply["Subject"] == "Fax to +1 415-555-0123 delivered (3 pages)"
    assert reply["In-Reply-To"] is None
    assert reply["Auto-Submitted"] == "auto-replied"  # a reply all the same
    (notification,) = store.notifications(job.id)
    one_page = read_outcome(job, store.events(job.id), {**notification.payload, "pages": 1})
    assert reply_subject_line(job, one_page, None) == "Fax to +1 415-555-0123 delivered (1 page)"


def test_what_was_not_faxed_is_told(store: Store, tmp_path: Path) -> None:
    ref = {**REF, "skipped": ["signature image logo.png not faxed"]}
    job = end(store, make_job(store, tmp_path, ref=ref), JobState.SENT, "the fax was sent")
    body = compose(store, job).get_content()
    assert "Not faxed from your message:\n  - signature image logo.png not faxed" in body
    assert body.endswith("-- \nfaxgate\n")


def test_file_names_in_any_script_reach_the_reply_whole(store: Store, tmp_path: Path) -> None:
    ref = {**REF, "skipped": ["small image 사진.png not faxed", "contact card Иван.vcf not faxed"]}
    job = end(store, make_job(store, tmp_path, ref=ref), JobState.SENT, "the fax was sent")
    wire = compose(store, job).as_bytes(policy=email.policy.SMTP)
    body = email.message_from_bytes(wire, policy=email.policy.default)
    assert isinstance(body, EmailMessage)
    text = body.get_content().replace("\r\n", "\n")
    assert "  - small image 사진.png not faxed\n  - contact card Иван.vcf not faxed" in text


def test_the_document_can_ride_along(store: Store, tmp_path: Path) -> None:
    job = end(store, make_job(store, tmp_path), JobState.SENT, "the fax was sent")
    reply = compose(store, job, [Attachment("contract.pdf", b"%PDF-1.4 x", "application/pdf")])
    (attached,) = list(reply.iter_attachments())
    assert attached.get_filename() == "contract.pdf"
    assert attached.get_content() == b"%PDF-1.4 x"


# ---------------------------------------------------------------------------- the handler


async def test_the_handler_mails_the_reply(store: Store, tmp_path: Path) -> None:
    job = end(store, make_job(store, tmp_path), JobState.SENT, "the fax was sent")
    maildir = tmp_path / "maildir"
    handle = smtp_report_handler(MaildirMailer(maildir), store)
    (notification,) = store.notifications(job.id)
    await handle(notification, store.get_job(job.id))
    (reply,) = await asyncio.to_thread(maildir_mails, maildir)
    assert reply["Subject"] == "Fax to +1 415-555-0123 delivered (3 pages) - Re: Contract"
    assert reply["From"] == "faxgate@localhost"
    assert list(reply.iter_attachments()) == []


async def test_the_handler_attaches_the_sent_document_when_asked(
    store: Store, tmp_path: Path
) -> None:
    maildir = tmp_path / "maildir"
    handle = smtp_report_handler(MaildirMailer(maildir), store, attach_document=True)
    sent = end(store, make_job(store, tmp_path), JobState.SENT, "the fax was sent")
    failed = end(store, make_job(store, tmp_path), JobState.FAILED, "the line was busy")
    for job in (sent, failed):
        (notification,) = store.notifications(job.id)
        await handle(notification, store.get_job(job.id))
    mailed = await asyncio.to_thread(maildir_mails, maildir)
    by_job = {str(mail["X-Faxgate-Job"]): mail for mail in mailed}
    (attached,) = list(by_job[sent.id].iter_attachments())
    assert attached.get_content() == pdf_document(1)
    # A failed fax's document is still in the sender's own mailbox.
    assert list(by_job[failed.id].iter_attachments()) == []


async def test_no_reply_where_none_may_go(store: Store, tmp_path: Path) -> None:
    ref = {**REF, "no_reply": "the message came from a mailing list"}
    job = end(store, make_job(store, tmp_path, reply_to=None, ref=ref), JobState.SENT, "sent")
    handle = smtp_report_handler(MaildirMailer(tmp_path / "maildir"), store)
    (notification,) = store.notifications(job.id)
    with pytest.raises(NothingToDeliver, match="mailing list"):
        await handle(notification, store.get_job(job.id))
    with pytest.raises(PermanentFailure):
        await handle(notification, None)
    assert not (tmp_path / "maildir").exists()
