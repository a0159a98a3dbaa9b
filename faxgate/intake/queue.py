"""Hand a fax request to the store: documents spooled durably, one job per number.

Every intake (SMTP, hot folder, CLI) ends here, so the rules for what may be queued live in
one place: the numbers are already parsed (faxgate.domain.numbers), the documents are
checked (faxgate.domain.documents), and either every job is created or none is.

Grouped commits live here too: `queue_faxes` takes a burst of requests (a hot folder's
batch) in one transaction, and GroupCommitter gathers the requests that arrive while a
commit runs (the SMTP listener's messages) into the next one.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from faxgate.domain.documents import DocumentCheck, check_batch, check_document
from faxgate.domain.jobs import Intake, Job
from faxgate.domain.numbers import FaxNumber
from faxgate.store import NewDocument, NewJob, Store
from faxgate.store.spool import Spool, SpooledFile

_HEAD_BYTES = 512
MAX_BATCH: Final = 64  # requests per grouped transaction

log = logging.getLogger("faxgate.smtp")


@dataclass(frozen=True, slots=True)
class IncomingDocument:
    """A document as intake has it: a file on disk (copied, never moved), bytes, or a file
    the intake already moved into the spool itself (taken as it is, never removed here)."""

    name: str
    source: Path | bytes | SpooledFile

    def size(self) -> int:
        if isinstance(self.source, SpooledFile):
            return self.source.size
        return self.source.stat().st_size if isinstance(self.source, Path) else len(self.source)

    def head(self) -> bytes:
        if isinstance(self.source, bytes):
            return self.source[:_HEAD_BYTES]
        path = self.source.path if isinstance(self.source, SpooledFile) else self.source
        with path.open("rb") as handle:
            return handle.read(_HEAD_BYTES)


@dataclass(frozen=True, slots=True)
class Destination:
    """A number with what is its own in a request: the cover page's addressee (instead
    of the request's) and what the intake records of it, such as the address it came as."""

    number: FaxNumber
    cover_to: str | None = None
    intake_ref: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaxRequest:
    numbers: Sequence[FaxNumber | Destination]
    documents: Sequence[IncomingDocument]
    intake: Intake
    intake_ref: Mapping[str, Any] = field(default_factory=dict)
    from_line: str | None = None  # provider digits of one of the account's lines
    cover_to: str | None = None
    cover_from: str | None = None
    cover_message: str | None = None
    reply_to: str | None = None
    priority: int = 0  # urgent 1, normal 0, bulk -1


@dataclass(slots=True)
class Prepared:
    """A request's jobs, built and not yet committed, and the files written for them."""

    jobs: list[NewJob]
    files: list[SpooledFile]


def queue_fax(store: Store, spool: Spool, request: FaxRequest) -> list[Job]:
    """Spool the documents and create one queued job per number, all or nothing.

    Raises DocumentRefused (a reason for the user) before anything is written.
    """
    (jobs,) = queue_faxes(store, spool, [request])
    return jobs


def queue_faxes(store: Store, spool: Spool, requests: Sequence[FaxRequest]) -> list[list[Job]]:
    """queue_fax for several requests in one transaction (one commit for a burst of
    files); the jobs of each request, in order. All or nothing, like queue_fax."""
    checked = [check_request(request) for request in requests]
    prepared: list[Prepared] = []
    try:
        for request, checks in zip(requests, checked, strict=True):
            prepared.append(_prepare(spool, request, checks))
        created = iter(store.create_jobs([job for each in prepared for job in each.jobs]))
        return [[next(created) for _ in each.jobs] for each in prepared]
    except BaseException:
        # Nothing was queued: leave no orphan documents behind.
        for each in prepared:
            discard(spool, each.files)
        raise


def prepare(spool: Spool, request: FaxRequest) -> Prepared:
    """The documents spooled and the jobs built, for a caller that commits them itself
    (the SMTP listener's grouped commits). Blocking.

    Raises DocumentRefused before anything is written; on any other failure removes what
    it wrote.
    """
    return _prepare(spool, request, check_request(request))


def _prepare(spool: Spool, request: FaxRequest, checks: Sequence[DocumentCheck]) -> Prepared:
    files: list[SpooledFile] = []  # written here, so removed here if nothing is queued
    try:
        documents = []
        for document, check in zip(request.documents, checks, strict=True):
            file = _spooled(spool, document, Path(check.name).suffix)
            if file is not document.source:
                files.append(file)
            documents.append(
                NewDocument(name=_readable(check.name), file=file, content_type=check.content_type)
            )
        group_id = secrets.token_hex(6) if len(request.numbers) > 1 else None
        jobs = [_new_job(request, to, documents, group_id) for to in request.numbers]
    except BaseException:
        discard(spool, files)
        raise
    return Prepared(jobs, files)


def _new_job(
    request: FaxRequest,
    to: FaxNumber | Destination,
    documents: list[NewDocument],
    group_id: str | None,
) -> NewJob:
    destination = to if isinstance(to, Destination) else Destination(to, request.cover_to)
    return NewJob(
        to_number=destination.number.e164,
        intake=request.intake,
        documents=documents,
        intake_ref={**request.intake_ref, **destination.intake_ref},
        from_line=request.from_line,
        cover_to=destination.cover_to,
        cover_from=request.cover_from,
        cover_message=request.cover_message,
        reply_to=request.reply_to,
        group_id=group_id,
        priority=request.priority,
    )


def discard(spool: Spool, files: Sequence[SpooledFile]) -> None:
    """Remove files written for jobs that were never committed."""
    for file in files:
        try:
            spool.remove(file.path)
        except OSError as exc:
            log.warning("could not remove spooled file path=%s error=%s", file.path, exc)


def check_request(request: FaxRequest) -> list[DocumentCheck]:
    """The documents checked (DocumentRefused with the reason); nothing written."""
    if not request.numbers:
        raise ValueError("a fax request needs at least one number")
    sizes = [document.size() for document in request.documents]
    check_batch(sizes)
    return [
        check_document(document.name, size, document.head())
        for document, size in zip(request.documents, sizes, strict=True)
    ]


def _spooled(spool: Spool, document: IncomingDocument, suffix: str) -> SpooledFile:
    if isinstance(document.source, SpooledFile):
        return document.source
    if isinstance(document.source, bytes):
        return spool.store_bytes(document.source, suffix=suffix)
    with document.source.open("rb") as stream:
        return spool.store_stream(stream, suffix=suffix)


def _readable(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (a name straight from a file system)
    become "\ufffd"."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# ---------------------------------------------------------------------------- grouped commits


class Abandoned(Exception):
    """The client went away before its message reached the store: nothing was kept."""


@dataclass(slots=True)
class Ticket:
    """Lets a connection that is gone call off a message not yet in the store."""

    abandoned: bool = False

    def abandon(self) -> None:
        self.abandoned = True


@dataclass(slots=True)
class _Entry:
    jobs: list[NewJob]
    ticket: Ticket
    future: asyncio.Future[list[Job]]


class GroupCommitter:
    """Commits the jobs of the messages waiting together in one transaction.

    While one transaction runs (in a worker thread), the messages that arrive wait; the
    next transaction takes them all. No timer: a lone message goes at once. If a batch
    fails, its messages are tried one by one, so one message cannot sink the others.
    """

    def __init__(self, store: Store, *, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._max_batch = max_batch
        self._waiting: list[_Entry] = []
        self._flusher: asyncio.Task[None] | None = None
        self.transactions = 0  # for tests and the benchmark

    async def commit(self, jobs: list[NewJob], ticket: Ticket) -> list[Job]:
        """Raises Abandoned when the ticket was given up before the commit began."""
        future: asyncio.Future[list[Job]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Entry(jobs, ticket, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="smtp-group-commit")
        return await future

    async def idle(self) -> None:
        """Return once nothing waits or is being committed."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        while self._waiting:
            taken, self._waiting = (
                self._waiting[: self._max_batch],
                self._waiting[self._max_batch :],
            )
            batch = []
            for entry in taken:
                if entry.ticket.abandoned:
                    _settle(entry.future, error=Abandoned())
                else:
                    batch.append(entry)
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[_Entry]) -> None:
        try:
            created = await asyncio.to_thread(self._create, [entry.jobs for entry in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0].future, error=exc)
                return
            log.warning("a batch failed; committing one by one messages=%d", len(batch))
            for entry in batch:
                await self._commit([entry])
            return
        for entry, jobs in zip(batch, created, strict=True):
            _settle(entry.future, result=jobs)

    def _create(self, batches: list[list[NewJob]]) -> list[list[Job]]:
        flat = [job for jobs in batches for job in jobs]
        created = self._store.create_jobs(flat)
        self.transactions += 1
        out, at = [], 0
        for jobs in batches:
            out.append(created[at : at + len(jobs)])
            at += len(jobs)
        return out


def _settle(
    future: asyncio.Future[list[Job]],
    *,
    result: list[Job] | None = None,
    error: BaseException | None = None,
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result or [])
