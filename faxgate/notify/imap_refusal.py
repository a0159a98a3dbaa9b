"""The reply to a message refused from the mailbox: why it was not faxed, through the relay.

The SMTP listener refuses while the client is connected, and the sender's own mail system
tells them. A mailbox has no one to answer at that moment, so the refusal is a reply of
its own, threaded under the message and marked Auto-Submitted: auto-replied (RFC 3834).
It is written to the outbox with the refusal (faxgate.intake.imap.taking), so it goes
exactly as the notifier sends everything: at least once, again after a crash.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from faxgate.domain.autoreply import reply_headers
from faxgate.domain.jobs import Job, Notification
from faxgate.notify.mailer import Mailer
from faxgate.notify.reporter import PermanentFailure, Reporter


def compose_refusal(payload: dict[str, Any]) -> EmailMessage:
    """The reply; the mailer adds From, Date and Message-ID."""
    to = str(payload.get("to") or "")
    if not to:
        raise PermanentFailure("a refusal reply without an address")
    original_subject = payload.get("subject")
    headers = reply_headers(
        payload.get("message_id") if isinstance(payload.get("message_id"), str) else None,
        original_subject if isinstance(original_subject, str) else None,
    )
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = "Fax not sent - " + headers["Subject"]
    for name in ("In-Reply-To", "References", "Auto-Submitted"):
        if name in headers:
            message[name] = headers[name]
    reason = str(payload.get("reason") or "the message could not be faxed")
    message.set_content(
        "Your message was not faxed, and nothing was sent:\n\n"
        + "\n".join(f"  {line}" for line in reason.splitlines())
        + "\n\nCorrect it and send it again.\n\n-- \nfaxgate\n"
    )
    return message


def refusal_reply_handler(mailer: Mailer) -> Reporter:
    async def handle(notification: Notification, _job: Job | None) -> None:
        await mailer.send(compose_refusal(dict(notification.payload)))

    return handle
