"""Durable accept for the SMTP listener: a message is taken only once it is on disk.

A message's raw bytes (the .eml) and its documents go to the spool (each fsynced, then
renamed), then its jobs, one per fax number, are committed to the store. Only then does
the listener answer 250. If anything fails, the files written are removed and no job
exists: the client is told 451 and sends again later.

The message goes through the queue's door like every intake's (faxgate.intake.queue:
the same document rules, the same jobs), with what the listener adds: the .eml beside
the documents, each number's own cover addressee, and the jobs of several messages
arriving together committed in one transaction by the queue's GroupCommitter (one fsync
of the database for all of them instead of one each).

A client that hangs up before its message reaches the store leaves nothing behind (it
will send again); one that hangs up later has its faxes sent, as SMTP allows.

A full disk, a read-only spool or a store that cannot grow is logged in plain words, once
per message; the listener answers 451 and the client's own retries bring the message
once there is room again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from faxgate.domain.jobs import Intake, Job
from faxgate.domain.message import MailDocument
from faxgate.domain.numbers import FaxNumber
from faxgate.intake.queue import (
    MAX_BATCH,
    Abandoned,
    Destination,
    FaxRequest,
    GroupCommitter,
    IncomingDocument,
    Prepared,
    Ticket,
    check_request,
    discard,
    prepare,
)
from faxgate.store import Store
from faxgate.store.spool import Spool, disk_trouble

log = logging.getLogger("faxgate.smtp")

_HEAD_BYTES: Final = 512


@dataclass(frozen=True, slots=True)
class Fax:
    """One fax a message asks for: the number and its cover page's addressee."""

    number: FaxNumber
    recipient: str  # the envelope address it came as
    cover_to: str | None = None
    by_subject: bool = False  # the number came from the subject of mail to a shared address


@dataclass(frozen=True, slots=True, kw_only=True)
class MailToFax:
    """An accepted message as the listener hands it over."""

    raw: bytes
    faxes: Sequence[Fax]
    documents: Sequence[MailDocument]
    cover_from: str | None = None
    cover_message: str | None = None
    from_line: str | None = None
    reply_to: str | None = None
    intake_ref: Mapping[str, Any] = field(default_factory=dict)
    priority: int = 0  # urgent 1, normal 0, bulk -1: a subject tag or a header


def spool_message(spool: Spool, mail: MailToFax) -> Prepared:
    """The .eml and the documents spooled, the jobs built (not committed). Blocking.

    Raises DocumentRefused before anything is written; on any other failure removes what
    it wrote.
    """
    if not mail.faxes:
        raise ValueError("a message to fax needs at least one number")
    request = FaxRequest(
        numbers=[
            Destination(fax.number, fax.cover_to, {"recipient": fax.recipient})
            for fax in mail.faxes
        ],
        documents=[IncomingDocument(doc.name, doc.content) for doc in mail.documents],
        intake=Intake.SMTP,
        intake_ref=mail.intake_ref,
        from_line=mail.from_line,
        cover_from=mail.cover_from,
        cover_message=mail.cover_message,
        reply_to=mail.reply_to,
        priority=mail.priority,
    )
    check_request(request)  # a refusal before the .eml is written
    eml = spool.store_bytes(mail.raw, suffix=".eml")
    try:
        prepared = prepare(
            spool, replace(request, intake_ref={**request.intake_ref, "eml": str(eml.path)})
        )
    except BaseException:
        discard(spool, [eml])
        raise
    prepared.files.insert(0, eml)
    return prepared


class MailIntake:
    """Spool, then commit: the one way a message from the listener becomes jobs."""

    def __init__(self, store: Store, spool: Spool, *, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.spool = spool
        self.committer = GroupCommitter(store, max_batch=max_batch)

    async def accept(self, mail: MailToFax, ticket: Ticket | None = None) -> list[Job]:
        """The jobs created, all committed; DocumentRefused, Abandoned or a storage error
        otherwise, with nothing left behind."""
        ticket = ticket or Ticket()
        try:
            spooled = await asyncio.to_thread(spool_message, self.spool, mail)
        except Exception as exc:
            _not_stored(exc, f"cannot write it into the spool {self.spool.root}")
            raise
        try:
            if ticket.abandoned:
                raise Abandoned()
            return await self.committer.commit(spooled.jobs, ticket)
        except Exception as exc:
            # The transaction never happened or was rolled back: the files are orphans.
            # (A cancel is no proof of that: the commit may be under way; files stay.)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(discard, self.spool, spooled.files)
            _not_stored(exc, f"cannot record its faxes in the store {self.store.location}")
            raise


def _not_stored(exc: BaseException, what: str) -> None:
    """Say why a message is answered 451, when the reason is the disk's."""
    trouble = disk_trouble(exc)
    if trouble is not None:
        log.warning(
            "smtp message not stored, nothing kept, answered 451: %s: %s; it is taken "
            "once there is room again",
            what,
            trouble,
        )
