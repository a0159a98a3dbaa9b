"""What /_sandbox/... shows tests: every transmission received, duplicates, callback attempts."""

from __future__ import annotations

from collections import Counter, defaultdict

from pydantic import BaseModel, ConfigDict, Field

from faxgate.sandbox.lifecycle import billed_pages
from faxgate.sandbox.records import AttemptRecord, TransmissionRecord


class InspectedFile(BaseModel):
    name: str
    sha256: str
    pages: int
    size: int


class InspectedTransmission(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    guid: str
    to: str
    from_: str = Field(alias="from")
    is_inbound: bool
    status: str
    error_code: str | None
    pages_billed: int
    files: list[InspectedFile]
    document_sha256: str = Field(description="sha256 over the files' sha256s, in order")
    created_at: float
    # How many outbound transmissions carried this same document to this same number.
    same_document_to_same_number: int
    # Gone from GET and the list, as the provider removes sent faxes (removal.py).
    removed: bool = False


class DuplicateSend(BaseModel):
    to: str
    document_sha256: str
    count: int
    guids: list[str]


class CallbackAttempt(BaseModel):
    callback_id: int
    transmission_guid: str
    kind: str
    url: str
    attempt: int
    reason: str
    status: int | None
    error: str | None
    at: float


def inspect_transmissions(records: list[TransmissionRecord]) -> list[InspectedTransmission]:
    sent = Counter((r.to, r.fingerprint) for r in records if not r.is_inbound)
    return [
        InspectedTransmission(
            guid=r.guid,
            to=r.to,
            from_=r.from_,
            is_inbound=r.is_inbound,
            status=r.status,
            error_code=r.error_code,
            pages_billed=billed_pages(r.status, r.pages),
            files=[
                InspectedFile(name=f.name, sha256=f.sha256, pages=f.pages, size=f.size)
                for f in r.files
            ],
            document_sha256=r.fingerprint,
            created_at=r.created_at,
            same_document_to_same_number=0 if r.is_inbound else sent[(r.to, r.fingerprint)],
            removed=r.removed_at is not None,
        )
        for r in records
    ]


def duplicate_sends(records: list[TransmissionRecord]) -> list[DuplicateSend]:
    groups: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    for record in records:
        if not record.is_inbound:
            groups[(record.to, record.fingerprint)].append(record.guid)
    return [
        DuplicateSend(to=to, document_sha256=fingerprint, count=len(guids), guids=guids)
        for (to, fingerprint), guids in groups.items()
        if len(guids) > 1
    ]


def callback_attempts(records: list[AttemptRecord]) -> list[CallbackAttempt]:
    return [
        CallbackAttempt(
            callback_id=a.callback_id,
            transmission_guid=a.transmission_guid,
            kind=a.kind,
            url=a.url,
            attempt=a.attempt,
            reason=a.reason,
            status=a.status,
            error=a.error,
            at=a.at,
        )
        for a in records
    ]
