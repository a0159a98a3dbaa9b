"""What a claim holds, planned from a drop, and the fax request a claim makes. Pure: the
drop's id, the time and the names already taken are handed in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

from faxgate.domain.jobs import Intake
from faxgate.domain.numbers import FaxNumber
from faxgate.intake.folder.claim_records import ClaimedFile, DropClaim
from faxgate.intake.folder.drops import Drop
from faxgate.intake.folder.naming import STATUS_SUFFIX, unique_name
from faxgate.intake.folder.ready import Signature
from faxgate.intake.folder.status import FolderRef, Places
from faxgate.intake.queue import FaxRequest, IncomingDocument
from faxgate.store.spool import SpooledFile, clean_suffix


def plan_claim(
    places: Places,
    folder: str,
    drop: Drop,
    signatures: Mapping[str, Signature],
    statuses: set[str],
    *,
    drop_id: str,
    now: datetime,
) -> DropClaim:
    """The claim of one planned drop in `folder` ("" or a sub-folder): spool names made
    of `drop_id`, and a status file name not in `statuses` (the names in processing/),
    which gets it added."""

    def claimed(name: str, target: str) -> ClaimedFile:
        sig = signatures[name]
        source = f"{folder}/{name}" if folder else name
        return ClaimedFile(
            source=source, target=target, size=sig.size, mtime_ns=sig.mtime_ns, inode=sig.inode
        )

    documents = [
        claimed(name, f"{drop_id}-{i}{clean_suffix(Path(name).suffix)}")
        for i, name in enumerate(drop.documents)
    ]
    status_name = unique_name(drop.documents[0], lambda n: n + STATUS_SUFFIX in statuses)
    statuses.add(status_name + STATUS_SUFFIX)
    return DropClaim(
        drop=drop_id,
        documents=documents,
        names=list(drop.documents),
        sidecar=None if drop.sidecar is None else claimed(drop.sidecar, f"{drop_id}.sidecar"),
        numbers=[n.e164 for n in drop.numbers],
        from_line=drop.from_line,
        cover_to=drop.cover_to,
        cover_from=drop.cover_from,
        cover_message=drop.cover_message,
        notify=drop.notify,
        priority=drop.priority,
        number_from=drop.source.value,
        status=places.processing / (status_name + STATUS_SUFFIX),
        taken_at=now,
    )


def fax_request(claim: DropClaim, ref: FolderRef, spooled: Iterable[SpooledFile]) -> FaxRequest:
    """The jobs a claimed drop makes, its documents as they lie in the spool."""
    return FaxRequest(
        numbers=[FaxNumber(e164, None) for e164 in claim.numbers],
        documents=[
            IncomingDocument(name, file) for name, file in zip(claim.names, spooled, strict=True)
        ],
        intake=Intake.FOLDER,
        intake_ref=ref.intake_ref(),
        from_line=claim.from_line,
        cover_to=claim.cover_to,
        cover_from=claim.cover_from,
        cover_message=claim.cover_message,
        reply_to=claim.notify,
        priority=claim.priority,
    )
