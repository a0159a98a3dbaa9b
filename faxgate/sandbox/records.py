"""What the sandbox keeps, as plain values (state.py stores them, shapes.py shows them)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AccountRecord:
    guid: str
    inbound_callback_url: str | None
    outbound_callback_url: str | None
    send_confirmation_emails: bool
    include_pdfs_in_received_emails: bool
    confirmed: bool
    event_callback_url: str | None = None  # v3: one URL for every event


@dataclass(frozen=True)
class Step:
    """One move of a fax's life: after `after` seconds (already scaled), take `status`."""

    status: str
    error_code: str | None
    after: float


@dataclass(frozen=True)
class CoverPage:
    to: str | None = None
    from_: str | None = None
    message: str | None = None

    @property
    def present(self) -> bool:
        return any((self.to, self.from_, self.message))


@dataclass(frozen=True)
class FileRecord:
    position: int
    name: str
    sha256: str
    size: int
    pages: int
    readable: bool
    kind: str | None  # "pdf", "tiff", "txt", ... or None when unreadable


@dataclass(frozen=True)
class TransmissionRecord:
    guid: str
    seq: int  # order of arrival; ties in CreatedAt are broken by it
    account_guid: str
    to: str
    from_: str
    is_inbound: bool
    status: str
    error_code: str | None
    created_at: float
    updated_at: float
    pages: int  # documents plus cover page, billed once sent
    cover: CoverPage
    fingerprint: str  # sha256 over the files' sha256s, in order
    plan: tuple[Step, ...] = ()  # moves still to come
    next_at: float | None = None  # when plan[0] is due (wall clock)
    files: tuple[FileRecord, ...] = field(default_factory=tuple)
    removed_at: float | None = None  # gone from GET and the list (see removal.py)
    deleted_at: float | None = None  # removed because the client asked (v3 DELETE)
    title: str | None = None  # v3
    test_mode: bool = False  # v3: nothing dialled or billed


@dataclass(frozen=True)
class CallbackRecord:
    id: int
    transmission_guid: str
    kind: str  # "outbound" or "inbound"
    url: str
    payload: str  # the JSON text of the `json` part, fixed when the event happened
    document_sha256: str | None  # inbound faxes carry their document
    document_name: str | None
    attempts: int
    next_at: float | None
    state: str  # "pending", "delivered" or "abandoned"
    created_at: float


@dataclass(frozen=True)
class AttemptRecord:
    id: int
    callback_id: int
    transmission_guid: str
    kind: str
    url: str
    attempt: int  # 1 is the first delivery, 2 the first retry, ...
    reason: str  # "delivery", "retry", "duplicate" or "late"
    status: int | None  # the receiver's HTTP status; None when no answer came
    error: str | None
    at: float
