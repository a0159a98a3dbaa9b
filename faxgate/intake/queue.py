"""Hand a fax request to the store: documents spooled durably, one job per number.

Every intake (SMTP, hot folder, CLI) ends here, so the rules for what may be queued live in
one place: the numbers are already parsed (faxgate.domain.numbers), the documents are
checked (faxgate.domain.documents), and either every job is created or none is.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faxgate.domain.documents import DocumentCheck, check_batch, check_document
from faxgate.domain.jobs import Intake, Job
from faxgate.domain.numbers import FaxNumber
from faxgate.store import NewDocument, NewJob, Store
from faxgate.store.spool import Spool, SpooledFile

_HEAD_BYTES = 512


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


@dataclass(frozen=True, slots=True, kw_only=True)
class FaxRequest:
    numbers: Sequence[FaxNumber]
    documents: Sequence[IncomingDocument]
    intake: Intake
    intake_ref: Mapping[str, Any] = field(default_factory=dict)
    from_line: str | None = None  # provider digits of one of the account's lines
    cover_to: str | None = None
    cover_from: str | None = None
    cover_message: str | None = None
    reply_to: str | None = None


def queue_fax(store: Store, spool: Spool, request: FaxRequest) -> list[Job]:
    """Spool the documents and create one queued job per number, all or nothing.

    Raises DocumentRefused (a reason for the user) before anything is written.
    """
    (jobs,) = queue_faxes(store, spool, [request])
    return jobs


def queue_faxes(store: Store, spool: Spool, requests: Sequence[FaxRequest]) -> list[list[Job]]:
    """queue_fax for several requests in one transaction (one commit for a burst of
    files); the jobs of each request, in order. All or nothing, like queue_fax."""
    checked = [_check(request) for request in requests]
    spooled: list[SpooledFile] = []  # written here, so removed here if nothing is queued
    try:
        new_jobs: list[list[NewJob]] = []
        for request, checks in zip(requests, checked, strict=True):
            documents = []
            for document, check in zip(request.documents, checks, strict=True):
                file = _spooled(spool, document, Path(check.name).suffix)
                if file is not document.source:
                    spooled.append(file)
                documents.append(
                    NewDocument(
                        name=_readable(check.name), file=file, content_type=check.content_type
                    )
                )
            group_id = secrets.token_hex(6) if len(request.numbers) > 1 else None
            new_jobs.append(
                [
                    NewJob(
                        to_number=number.e164,
                        intake=request.intake,
                        documents=documents,
                        intake_ref=request.intake_ref,
                        from_line=request.from_line,
                        cover_to=request.cover_to,
                        cover_from=request.cover_from,
                        cover_message=request.cover_message,
                        reply_to=request.reply_to,
                        group_id=group_id,
                    )
                    for number in request.numbers
                ]
            )
        created = iter(store.create_jobs([job for jobs in new_jobs for job in jobs]))
        return [[next(created) for _ in jobs] for jobs in new_jobs]
    except BaseException:
        # Nothing was queued: leave no orphan documents behind.
        for file in spooled:
            spool.remove(file.path)
        raise


def _check(request: FaxRequest) -> list[DocumentCheck]:
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
