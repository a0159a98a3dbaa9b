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

from faxgate.domain.documents import check_batch, check_document
from faxgate.domain.jobs import Intake, Job
from faxgate.domain.numbers import FaxNumber
from faxgate.spool import Spool, SpooledFile
from faxgate.store import NewDocument, NewJob, Store

_HEAD_BYTES = 512


@dataclass(frozen=True, slots=True)
class IncomingDocument:
    """A document as intake has it: a file on disk (copied, never moved) or bytes."""

    name: str
    source: Path | bytes

    def size(self) -> int:
        return self.source.stat().st_size if isinstance(self.source, Path) else len(self.source)

    def head(self) -> bytes:
        if isinstance(self.source, bytes):
            return self.source[:_HEAD_BYTES]
        with self.source.open("rb") as handle:
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
    if not request.numbers:
        raise ValueError("a fax request needs at least one number")
    sizes = [document.size() for document in request.documents]
    check_batch(sizes)
    checks = [
        check_document(document.name, size, document.head())
        for document, size in zip(request.documents, sizes, strict=True)
    ]
    spooled: list[SpooledFile] = []
    try:
        for document, check in zip(request.documents, checks, strict=True):
            suffix = Path(check.name).suffix
            if isinstance(document.source, bytes):
                spooled.append(spool.store_bytes(document.source, suffix=suffix))
            else:
                with document.source.open("rb") as stream:
                    spooled.append(spool.store_stream(stream, suffix=suffix))
        documents = [
            NewDocument(name=check.name, file=file, content_type=check.content_type)
            for check, file in zip(checks, spooled, strict=True)
        ]
        group_id = secrets.token_hex(6) if len(request.numbers) > 1 else None
        return store.create_jobs(
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
    except BaseException:
        # Nothing was queued: leave no orphan documents behind.
        for file in spooled:
            spool.remove(file.path)
        raise
