"""The soak run's clients: a mail server handing faxes to faxgate over SMTP, and a program
dropping files into the hot folder; both carry on across the daemon's kills.

Every try at handing a fax over is a Copy with a tag of its own and a document of its own
(a one-page PDF whose title is the tag), so that whatever faxgate made of it (a job, a
fax at the sandbox, a reply, a result file) can be traced back to it by the document's
sha256.

Mail: a message counts as accepted only when it got its 250. A try that got no answer (the
connection refused or cut by a kill) or a 4xx is not accepted; the fax is handed over
again as a new copy (a new Message-ID and document) once the daemon is back. A copy that
got no answer may still have been stored (the 250 lost in the kill): the audit finds it
as a job that nobody was told of and checks it like the others.

Folder: each file is written under a `.part` name and renamed in, as scanners do. It counts
as accepted once it is gone from the folder (claimed); one refused is in failed/ beside a
`.reason.txt`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

import aiosmtplib
from soak_plan import FaxPlan

from tests.conftest import pdf_document

__all__ = [
    "Copy",
    "Ledger",
    "MailRoute",
    "drop_files",
    "left_in",
    "message_for",
    "send_mail",
    "tagged_pdf",
]

FAX_DOMAIN = "fax.local"
SENDER = "soak@example.com"
MAX_COPIES = 20  # tries at one message before the fax counts as not accepted
SMTP_TIMEOUT = 30.0

CopyState = Literal["pending", "accepted", "unanswered", "refused", "dropped"]


def tagged_pdf(tag: str) -> bytes:
    """A one-page PDF whose bytes are its own: the tag is its title."""
    return pdf_document(1, title=tag)


@dataclass
class Copy:
    """One try at handing a fax to faxgate."""

    tag: str
    plan: FaxPlan
    pdf: bytes
    state: CopyState = "pending"
    detail: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.pdf).hexdigest()

    @property
    def message_id(self) -> str:
        return f"<{self.tag}@soak.faxgate.invalid>"

    @property
    def file_name(self) -> str:
        return f"{self.plan.digits}_{self.tag}.pdf"


@dataclass
class Ledger:
    """Every copy made, by tag and by document."""

    copies: dict[str, Copy] = field(default_factory=dict)
    by_sha256: dict[str, Copy] = field(default_factory=dict)

    def new_copy(self, plan: FaxPlan) -> Copy:
        tries = sum(1 for c in self.copies.values() if c.plan.index == plan.index)
        tag = f"{plan.name}-{tries + 1}"
        copy = Copy(tag, plan, tagged_pdf(tag))
        self.copies[tag] = copy
        self.by_sha256[copy.sha256] = copy
        return copy

    def of_intake(self, intake: str) -> list[Copy]:
        return [c for c in self.copies.values() if c.plan.intake == intake]

    def answered(self) -> int:
        return sum(1 for c in self.copies.values() if c.state == "accepted")


async def _until(start: float, offset: float) -> None:
    """Wait for a fax's turn in the run's schedule (load shaping, not synchronisation)."""
    delay = start + offset - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def message_for(copy: Copy) -> bytes:
    message = EmailMessage()
    message["From"] = f"Soak <{SENDER}>"
    message["To"] = f"{copy.plan.digits}@{FAX_DOMAIN}"
    message["Subject"] = f"Soak {copy.tag}"
    message["Message-ID"] = copy.message_id
    message["Date"] = "Thu, 26 Nov 2026 10:00:00 +0000"
    message.set_content(f"Please fax the letter attached ({copy.tag}).\n")
    message.add_attachment(
        copy.pdf, maintype="application", subtype="pdf", filename=f"{copy.tag}.pdf"
    )
    return message.as_bytes()


# Where a fax goes by mail: the SMTP port of the instance that takes it, and an event set
# while that instance is up. Asked again at every try, as a mail server with several MX
# hosts picks one for each.
MailRoute = Callable[[FaxPlan], tuple[int, asyncio.Event]]


async def send_mail(
    plans: Iterable[FaxPlan],
    offsets: dict[int, float],
    ledger: Ledger,
    route: MailRoute,
    *,
    start: float,
    workers: int = 4,
) -> None:
    """Hand every fax over by SMTP, `workers` connections at once, each in its turn."""
    queue: asyncio.Queue[FaxPlan] = asyncio.Queue()
    for plan in plans:
        queue.put_nowait(plan)

    async def worker() -> None:
        client: aiosmtplib.SMTP | None = None
        try:
            while not queue.empty():
                plan = queue.get_nowait()
                await _until(start, offsets[plan.index])
                client = await _deliver(plan, ledger, route, client)
        finally:
            if client is not None:
                await _close(client)

    await asyncio.gather(*(worker() for _ in range(workers)))


async def _deliver(
    plan: FaxPlan, ledger: Ledger, route: MailRoute, client: aiosmtplib.SMTP | None
) -> aiosmtplib.SMTP | None:
    """Try until the message is accepted or refused; the connection to go on with."""
    for tries in range(MAX_COPIES):
        copy = ledger.new_copy(plan)
        port, up = route(plan)
        await up.wait()
        if client is not None and client.port != port:
            await _close(client)  # this fax goes to another instance
            client = None
        try:
            if client is None:
                client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=SMTP_TIMEOUT)
                await client.connect()
            _, answer = await client.sendmail(
                SENDER, [f"{plan.digits}@{FAX_DOMAIN}"], message_for(copy)
            )
        except aiosmtplib.SMTPResponseException as refusal:
            copy.detail = f"{refusal.code} {refusal.message}"
            if refusal.code >= 500:
                copy.state = "refused"
                return client
            copy.state = "unanswered"
        except (aiosmtplib.SMTPException, OSError) as error:
            copy.state = "unanswered"
            copy.detail = f"{type(error).__name__}: {error}"
        else:
            copy.state, copy.detail = "accepted", answer
            return client
        if client is not None:
            await _close(client)
            client = None
        await asyncio.sleep(min(1.0, 0.05 * 2**tries))  # a client's backoff before it tries again
    return client


async def _close(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
        if client.is_connected:
            await client.quit()
    client.close()


async def drop_files(
    plans: Iterable[FaxPlan],
    offsets: dict[int, float],
    ledger: Ledger,
    folder_for: Callable[[FaxPlan], Path],
    *,
    start: float,
) -> None:
    """Write each fax's file into its hot folder (`folder_for`, asked at its turn) in its
    turn (several share a turn: a burst), whether or not the daemon is up: the folder is
    only a folder."""
    for plan in plans:
        await _until(start, offsets[plan.index])
        copy = ledger.new_copy(plan)
        await asyncio.to_thread(_write_in, folder_for(plan), copy.file_name, copy.pdf)
        copy.state = "dropped"


def _write_in(folder: Path, name: str, content: bytes) -> None:
    part = folder / f"{name}.part"
    part.write_bytes(content)
    os.rename(part, folder / name)


def left_in(outbox: Path) -> set[str]:
    """The file names still waiting in the hot folder (not yet taken)."""
    return {entry.name for entry in os.scandir(outbox) if entry.is_file()}
