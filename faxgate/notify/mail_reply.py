"""Replies to faxes that came by email: the notifier's reporter for the "smtp" intake.

When a fax ends, the person who mailed it gets a reply to their message: threaded under
it (In-Reply-To, References, "Re:"), marked Auto-Submitted: auto-replied, with the
outcome in the subject ("Fax to +1 415-555-0100 delivered (3 pages) - Re: Contract") and
the story in the body (faxgate.notify.report_text tells it, as for every intake). A message to
several numbers gets one reply per number. The sent documents are attached only when
smtp.attach_document is on: faxes often carry health data. A confirmation report (a
one-page PDF, as a fax machine prints) is attached as [reports] confirmation asks.

No reply goes to a message that may not be answered (a null sender, a mailing list,
automatic mail: faxgate.domain.autoreply decided at accept time and left the job without
a reply address); the notification is then done, with the reason logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Final

from faxgate.domain.autoreply import reply_headers
from faxgate.domain.jobs import Document, Event, Job, JobState, Notification
from faxgate.domain.numbers import display_number
from faxgate.notify.confirmation import Confirmations, report_name
from faxgate.notify.mailer import Mailer
from faxgate.notify.report_text import (
    Outcome,
    calls,
    compose_report,
    read_outcome,
    report_body,
    report_subject,
)
from faxgate.notify.reporter import NothingToDeliver, PermanentFailure, Reporter
from faxgate.store import Store

_THREADING: Final = ("In-Reply-To", "References", "Auto-Submitted")


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    content: bytes
    content_type: str


def reply_subject_line(job: Job, outcome: Outcome, original_subject: str | None) -> str:
    """The outcome at a glance, then the original subject as a reply's."""
    if outcome.state is JobState.SENT:
        subject = f"Fax to {display_number(job.to_number)} delivered"
        if outcome.pages:
            subject += f" ({outcome.pages} page{'' if outcome.pages == 1 else 's'})"
    else:
        subject = report_subject(job, outcome)
    if original_subject and original_subject.strip():
        subject += " - " + reply_headers(None, original_subject)["Subject"]
    return subject


def compose_reply(
    job: Job,
    documents: Sequence[Document],
    events: Sequence[Event],
    payload: Mapping[str, Any],
    attachments: Sequence[Attachment] = (),
) -> EmailMessage:
    """The reply to the message a job came from. Pure; the mailer adds From and Date."""
    message = compose_report(job, documents, events, payload)
    outcome = read_outcome(job, events, payload)
    ref = job.intake_ref
    original_subject = _text(ref.get("subject"))
    threading = reply_headers(_text(ref.get("message_id")), original_subject)
    for name in ("Subject", *_THREADING):
        del message[name]
    message["Subject"] = reply_subject_line(job, outcome, original_subject)
    for name in _THREADING:
        if name in threading:
            message[name] = threading[name]
    body = report_body(job, documents, calls(events), outcome)
    message.set_content(_with_notes(body, ref))
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.content,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=attachment.name,
        )
    return message


def _with_notes(body: str, ref: Mapping[str, Any]) -> str:
    """The report's body, with what the message held that was not faxed."""
    skipped = [str(item) for item in ref.get("skipped") or () if str(item).strip()]
    if not skipped:
        return body
    main, _, signature = body.rpartition("\n\n-- \n")
    notes = "Not faxed from your message:\n" + "\n".join(f"  - {item}" for item in skipped)
    return f"{main}\n\n{notes}\n\n-- \n{signature}"


def read_attachments(documents: Sequence[Document]) -> list[Attachment]:
    """The sent documents from the spool (blocking); those gone since are left out."""
    found = []
    for document in documents:
        try:
            content = document.path.read_bytes()
        except FileNotFoundError:
            continue
        found.append(Attachment(document.name, content, document.content_type))
    return found


def smtp_report_handler(
    mailer: Mailer,
    store: Store,
    *,
    attach_document: bool = False,
    confirmations: Confirmations | None = None,
) -> Reporter:
    """The reporter for jobs that came by email; with `confirmations`, the confirmation
    report (faxgate.notify.confirmation) is attached first."""

    async def handle(notification: Notification, job: Job | None) -> None:
        if job is None:
            raise PermanentFailure("the job it reports on is no longer in the store")
        if not job.reply_to:
            why = _text(job.intake_ref.get("no_reply")) or "the message has no reply address"
            raise NothingToDeliver(f"no reply for job {job.id}: {why}")
        documents = await asyncio.to_thread(store.documents, job.id)
        events = await asyncio.to_thread(store.events, job.id)
        # Tell the story up to this outcome, not what a later retry added.
        told = [event for event in events if event.at <= notification.created_at]
        attachments: list[Attachment] = []
        if confirmations is not None and confirmations.enabled:
            report = await confirmations.report(job, documents, told, notification.payload)
            if report is not None:
                attachments.append(Attachment(report_name(job), report, "application/pdf"))
        if attach_document and _sent(notification.payload, job):
            attachments += await asyncio.to_thread(read_attachments, documents)
        await mailer.send(compose_reply(job, documents, told, notification.payload, attachments))

    return handle


def _sent(payload: Mapping[str, Any], job: Job) -> bool:
    return str(payload.get("state") or job.state.value) == JobState.SENT.value


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None
