"""Taking one message from the mailbox: the SMTP listener's rules, then the store.

Each message ends in one of two ways, recorded in the store's imap_taken table (by the
mailbox, its UIDVALIDITY and the message's UID) in the same transaction as what it left:
- processed: its jobs, exactly as the listener would have queued them (the same sender
  policy, addressing, documents and cover page; jobs of the "smtp" intake, so their
  reports go back through the relay as replies, threaded under the message);
- refused: nothing queued; a reply saying why goes into the outbox in that same
  transaction, unless the sender is not allowed (no reply to a sender anyone can forge)
  or RFC 3834 says not to answer (faxgate.domain.autoreply).

Only once that transaction is committed is the message moved out of the mailbox. A
message found in the mailbox but already in imap_taken (the daemon stopped between the
commit and the move) is moved without being taken again.

A failure to store (a full disk, say) takes nothing: the message stays in the mailbox and
is tried again later.

Several instances sharing a PostgreSQL store may watch one mailbox and take the same
message at once: imap_taken's key decides (faxgate.store.imap_taken). The batch that loses
keeps nothing (no job, no reply, no file in the spool) and raises TakenElsewhere; the
watcher then moves its messages as taken, as after a stop.

Blocking: the watcher calls this from its thread.
"""

from __future__ import annotations

import contextlib
import email.policy
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from email.parser import BytesHeaderParser
from enum import StrEnum
from typing import Any, Final

from faxgate import metrics
from faxgate.clock import utc_now
from faxgate.domain.addressing import AddressRefused
from faxgate.domain.autoreply import may_reply
from faxgate.domain.documents import DocumentRefused
from faxgate.domain.jobs import Intake, Job
from faxgate.domain.message import MessageRefused
from faxgate.intake import queue
from faxgate.intake.imap.envelope import Addressed, address_message, read_envelope
from faxgate.intake.smtp.accept import MailToFax, spool_message
from faxgate.intake.smtp.handler import HandlerConfig
from faxgate.intake.smtp.message import SubjectRule, read_mail, reply_address
from faxgate.intake.smtp.policy import (
    Refusal,
    check_sender,
    daily_limit_reached,
    line_for,
    start_of_day,
    subject_refusal,
)
from faxgate.store import NewNotification, Store, TakenMessage
from faxgate.store.spool import Spool

log = logging.getLogger("faxgate.imap")

REFUSAL_KIND: Final = "imap_refusal"  # the outbox rows of replies to refused messages
_HEADERS = BytesHeaderParser(policy=email.policy.default)


class Outcome(StrEnum):
    PROCESSED = "processed"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Taken:
    outcome: Outcome
    jobs: list[Job] = field(default_factory=list)
    reason: str = ""  # why it was refused
    replied: bool = False  # a reply to the refusal is in the outbox
    again: bool = False  # it had been taken before: only the move was left


@dataclass(frozen=True, slots=True)
class Place:
    """Where a message is: the mailbox, its UIDVALIDITY, the message's UID."""

    mailbox: str
    uidvalidity: int
    uid: int


class Ledger:
    """The store's record of what was taken (its imap_taken table, on either backend)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def outcomes(
        self, mailbox: str, uidvalidity: int, uids: Iterable[int]
    ) -> dict[int, tuple[Outcome, str | None]]:
        """Of `uids`, those taken already: their outcome and Message-ID."""
        found = self._store.imap_outcomes(mailbox, uidvalidity, uids)
        return {uid: (Outcome(outcome), message_id) for uid, (outcome, message_id) in found.items()}

    def by_message_id(self, mailbox: str, message_id: str) -> Outcome | None:
        """A message taken under an earlier UIDVALIDITY (the server renumbered the mailbox)."""
        found = self._store.imap_taken_by_message_id(mailbox, message_id)
        return Outcome(found) if found is not None else None


@dataclass(slots=True)
class Prepared:
    """A message read and judged, not yet committed: faxes to queue, or a refusal."""

    place: Place
    message_id: str | None
    sender: str = ""
    subject: str | None = None
    mail: MailToFax | None = None
    refusal: Refusal | None = None
    reply_to: str | None = None  # None: no reply may go (or none is owed)
    spooled: queue.Prepared | None = None


class MessageTaker:
    """The listener's rules for messages from the mailbox; see the module's docstring.

    A batch goes in three steps: decide (read and judge each message, no IO), spool (its
    files, each message on its own, so several can be written at once), commit (every
    message's jobs or refusal, and its imap_taken row, in one transaction).
    """

    def __init__(self, config: HandlerConfig, store: Store, spool: Spool, *, max_size: int) -> None:
        self.config = config
        self.store = store
        self.spool = spool
        self.max_size = max_size

    def take(self, place: Place, raw: bytes) -> Taken:
        """One message, all three steps."""
        prepared = self.decide(place, raw)
        self.limit([prepared])
        return self.commit([self.spool_files(prepared)])[0]

    def decide(self, place: Place, raw: bytes) -> Prepared:
        headers = _HEADERS.parsebytes(_header_block(raw))
        found = Prepared(place, _header(headers, "Message-ID"))
        found.subject = _header(headers, "Subject")
        envelope = read_envelope(raw)
        found.sender = sender = envelope.sender
        not_allowed = check_sender(
            sender, authenticated=False, allowed=self.config.allowed_senders, auth_offered=False
        )
        if not_allowed is not None:
            # No reply: a From line is as easy to forge as an envelope sender.
            found.refusal = not_allowed
            return found
        allowed, why_not = may_reply(sender, headers)
        if allowed:
            found.reply_to = reply_address(headers, sender)
        else:
            log.info("imap no reply possible uid=%d: %s", place.uid, why_not)
        if len(raw) > self.max_size:
            found.refusal = Refusal(
                552, "5.3.4", f"message too big: at most {self.max_size} bytes", "too_big"
            )
            return found
        addressed = address_message(envelope, self.config.recipients, self.config.max_recipients)
        if isinstance(addressed, Refusal):
            found.refusal = addressed
            return found
        try:
            found.mail = self._read(raw, sender, addressed)
        except MessageRefused as refused:
            found.refusal = Refusal(554, "5.6.0", refused.reason, "unfaxable")
        except AddressRefused as refused:
            found.refusal = subject_refusal(refused)
        except Exception:
            log.exception("imap message could not be read uid=%d", place.uid)
            found.refusal = Refusal(554, "5.6.0", "the message could not be read", "error")
        return found

    def limit(self, batch: Sequence[Prepared]) -> None:
        """The daily limit per sender, counting the batch's own faxes too."""
        limit = self.config.daily_limit
        if not limit:
            return
        since = start_of_day(utc_now())
        counted: dict[str, int] = {}
        for prepared in batch:
            if prepared.mail is None:
                continue
            sender = prepared.sender
            if sender not in counted:
                counted[sender] = self.store.count_intake_jobs(
                    Intake.SMTP, since, ref="sender", value=sender
                )
            adding = len(prepared.mail.faxes)
            over = daily_limit_reached(counted[sender], adding, limit)
            if over is not None:
                prepared.mail, prepared.refusal = None, over
            else:
                counted[sender] += adding

    def spool_files(self, prepared: Prepared) -> Prepared:
        """Write its files (blocking); a document refused becomes the refusal."""
        if prepared.mail is not None:
            try:
                prepared.spooled = spool_message(self.spool, prepared.mail)
            except DocumentRefused as refused:
                prepared.mail = None
                prepared.refusal = Refusal(554, "5.6.0", str(refused), "unfaxable")
        return prepared

    def commit(self, batch: Sequence[Prepared]) -> list[Taken]:
        """Every message's outcome in one transaction; on failure nothing is kept.
        TakenElsewhere: another instance recorded one of them first (nothing kept)."""
        if not batch:
            return []
        mailbox = batch[0].place.mailbox
        jobs = [job for prepared in batch if prepared.spooled for job in prepared.spooled.jobs]
        records = [
            TakenMessage(
                prepared.place.uidvalidity,
                prepared.place.uid,
                prepared.message_id,
                (Outcome.PROCESSED if prepared.spooled else Outcome.REFUSED).value,
            )
            for prepared in batch
        ]
        replies = [reply for reply in map(_refusal_reply, batch) if reply is not None]
        try:
            created = iter(self.store.take_imap_messages(mailbox, records, jobs, replies))
        except BaseException:
            self.discard(batch)
            raise
        taken = []
        for prepared in batch:
            if prepared.spooled is not None:
                mine = [next(created) for _ in prepared.spooled.jobs]
                metrics.smtp_accepted.inc()
                log.info(
                    "imap message taken uid=%d from=<%s> jobs=%s message_id=%s",
                    prepared.place.uid,
                    prepared.sender,
                    ",".join(job.id for job in mine),
                    prepared.message_id,
                )
                taken.append(Taken(Outcome.PROCESSED, mine))
                continue
            refusal = prepared.refusal
            assert refusal is not None
            replied = _refusal_reply(prepared) is not None
            metrics.smtp_refused.labels(reason=refusal.reason).inc()
            log.info(
                "imap message refused uid=%d from=<%s> reply=%s reason=%r",
                prepared.place.uid,
                prepared.sender,
                "yes" if replied else "no",
                refusal.text,
            )
            taken.append(Taken(Outcome.REFUSED, reason=refusal.text, replied=replied))
        return taken

    def discard(self, batch: Sequence[Prepared]) -> None:
        """Remove the files of a batch that was not committed."""
        for prepared in batch:
            if prepared.spooled is not None:
                with contextlib.suppress(Exception):
                    queue.discard(self.spool, prepared.spooled.files)
                prepared.spooled = None

    def _read(self, raw: bytes, sender: str, addressed: Addressed) -> MailToFax:
        config = self.config
        mail = read_mail(
            raw,
            sender=sender,
            login=None,
            faxes=addressed.faxes,
            cover=config.cover,
            from_line=line_for(sender, None, config.sender_lines, config.default_line),
            from_subject=SubjectRule(
                addressed.from_subject, config.recipients.numbers, config.max_recipients
            )
            if addressed.from_subject
            else None,
        )
        ref: dict[str, Any] = {**mail.intake_ref, "via": "imap"}
        if addressed.problems:  # told in the reply, with what else was not faxed
            ref["skipped"] = [*ref.get("skipped", ()), *addressed.problems]
        return replace(mail, intake_ref=ref)


def _refusal_reply(prepared: Prepared) -> NewNotification | None:
    if prepared.spooled is not None or prepared.refusal is None or prepared.reply_to is None:
        return None
    return NewNotification(
        kind=REFUSAL_KIND,
        payload={
            "to": prepared.reply_to,
            "reason": prepared.refusal.text,
            "message_id": prepared.message_id,
            "subject": prepared.subject,
        },
    )


def read_message_id(raw: bytes) -> str | None:
    return _header(_HEADERS.parsebytes(_header_block(raw)), "Message-ID")


def _header(headers: Any, name: str) -> str | None:
    try:
        value = headers.get(name)
    except Exception:  # a malformed header
        return None
    text = " ".join(str(value).split()) if value is not None else ""
    return text or None


def _header_block(raw: bytes) -> bytes:
    ends = [at for at in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if at >= 0]
    return raw[: min(ends) + 2] if ends else raw
