"""What /_sandbox/... shows tests: every transmission received, duplicates, callback attempts."""

from __future__ import annotations

import dataclasses
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
    deleted: bool = False  # removed because the client asked (v3 DELETE)
    title: str | None = None  # v3
    test_mode: bool = False  # v3: nothing dialled or billed


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


# Shown as the record has them.
_AS_KEPT = ("guid", "to", "is_inbound", "status", "error_code", "created_at", "title", "test_mode")


def inspect_transmissions(records: list[TransmissionRecord]) -> list[InspectedTransmission]:
    sent = Counter((r.to, r.fingerprint) for r in records if not r.is_inbound)
    return [
        InspectedTransmission(
            **{name: getattr(r, name) for name in _AS_KEPT},
            from_=r.from_,
            pages_billed=0 if r.test_mode else billed_pages(r.status, r.pages),
            files=[
                InspectedFile(name=f.name, sha256=f.sha256, pages=f.pages, size=f.size)
                for f in r.files
            ],
            document_sha256=r.fingerprint,
            same_document_to_same_number=0 if r.is_inbound else sent[(r.to, r.fingerprint)],
            removed=r.removed_at is not None,
            deleted=r.deleted_at is not None,
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
    return [CallbackAttempt.model_validate(dataclasses.asdict(a)) for a in records]
