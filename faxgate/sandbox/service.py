"""What the provider does for each API call, without HTTP or wire format: the faces call these."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Sequence

from faxgate.sandbox import lifecycle
from faxgate.sandbox.documents import (
    DocumentInfo,
    ReceivedPart,
    examine,
    render_received_fax,
)
from faxgate.sandbox.faults import FaultInjector
from faxgate.sandbox.forms import (
    RequestError,
    SendRequest,
    Upload,
    normalize_number,
)
from faxgate.sandbox.inspection import (
    CallbackAttempt,
    DuplicateSend,
    InspectedTransmission,
    callback_attempts,
    duplicate_sends,
    inspect_transmissions,
)
from faxgate.sandbox.limits import MAX_PENDING
from faxgate.sandbox.lines import AccountLines
from faxgate.sandbox.parts import SimulationParts
from faxgate.sandbox.records import (
    AccountRecord,
    CoverPage,
    FileRecord,
    Step,
    TransmissionRecord,
)
from faxgate.sandbox.removal import Removal, removes
from faxgate.sandbox.settings import SandboxSettings
from faxgate.sandbox.wire import Wire


class TransmissionNotFound(RequestError):
    """Removed, or never there: the provider answers both alike (removal.py)."""

    def __init__(self) -> None:
        super().__init__(404, "Not found.")


class RateLimited(RequestError):
    """Too many faxes in flight, or a 429 storm switched on; each face words it."""

    def __init__(self) -> None:
        super().__init__(429, "Too many requests.")


def new_guid() -> str:
    return secrets.token_hex(20)


def fingerprint(sha256s: Sequence[str]) -> str:
    """One digest for a whole document set: the same files in the same order, same value."""
    return hashlib.sha256("\n".join(sha256s).encode()).hexdigest()


class SandboxService(AccountLines):
    def __init__(self, settings: SandboxSettings, parts: SimulationParts) -> None:
        self._settings = settings
        self._parts = parts
        self._store = parts.store
        self.guid = settings.account_guid

    @property
    def wire(self) -> Wire:
        return self._parts.wire

    @property
    def faults(self) -> FaultInjector:
        return self._parts.faults

    def wake(self) -> None:
        """Tell the clock that something changed (new work, a switch flipped)."""
        self._parts.wake()

    # Account ---------------------------------------------------------------------------

    def check_account(self, guid: str) -> None:
        if guid.lower() != self.guid:
            raise RequestError(404, f"Account {guid} not found")

    def account(self) -> AccountRecord:
        record = self._store.account(self.guid)
        assert record is not None, "the account is created on start"
        return record

    def update_account(self, changes: dict[str, object]) -> AccountRecord:
        """Set account columns (a face maps its own field names to them)."""
        with self._store.transaction():
            self._store.update_account(self.guid, **changes)
        return self.account()

    def set_confirmed(self, confirmed: bool) -> None:
        with self._store.transaction():
            self._store.update_account(self.guid, confirmed=int(confirmed))

    # Transmissions ---------------------------------------------------------------------

    async def submit(self, send: SendRequest) -> list[TransmissionRecord]:
        account = self.account()
        from_ = self._sending_line(send.from_)
        if not send.files:
            raise RequestError(400, "Missing file: attach the document as file, file[] or file[N]")
        if self._parts.faults.take_rate_limit():
            raise RateLimited
        infos = await asyncio.to_thread(_examine_all, send.files)
        # No await from here on: counting the faxes in flight and adding these is atomic.
        if self._store.count_in_flight(self.guid) + len(send.to) > MAX_PENDING:
            raise RateLimited
        files = self._keep_files(send.files, infos)
        pages = sum(info.pages for info in infos) + (1 if send.cover.present else 0)
        readable = all(info.readable for info in infos)
        now = time.time()
        records: list[TransmissionRecord] = []
        one_line = self._parts.faults.settings.one_call_per_line
        for to in send.to:
            outcome = lifecycle.decide(
                to, documents_readable=readable, pages=pages, confirmed=account.confirmed
            )
            if one_line and outcome.transmits and self._line_in_use(to, records):
                outcome = lifecycle.line_in_use()
            steps = lifecycle.plan(outcome, pages, self._settings.speed)
            records.append(
                self._new_record(
                    to,
                    from_,
                    now,
                    pages,
                    files,
                    status=lifecycle.PENDING,
                    cover=send.cover,
                    plan=steps,
                    title=send.title,
                    test_mode=send.test_mode,
                )
            )
        with self._store.transaction():
            stored = [self._store.add_transmission(record) for record in records]
        self._parts.wake()
        return stored

    def _line_in_use(self, to: str, batch: list[TransmissionRecord]) -> bool:
        return any(r.to == to for r in batch) or self._store.count_in_flight_to(self.guid, to) > 0

    def _new_record(
        self,
        to: str,
        from_: str,
        now: float,
        pages: int,
        files: tuple[FileRecord, ...],
        *,
        status: str,
        cover: CoverPage,
        plan: tuple[Step, ...] = (),
        title: str | None = None,
        test_mode: bool = False,
        guid: str | None = None,
    ) -> TransmissionRecord:
        """A new fax: outbound with a plan to follow, inbound (already received) without."""
        return TransmissionRecord(
            guid=guid or new_guid(),
            seq=0,
            account_guid=self.guid,
            to=to,
            from_=from_,
            is_inbound=not plan,
            status=status,
            error_code=None,
            created_at=now,
            updated_at=now,
            pages=pages,
            cover=cover,
            fingerprint=fingerprint([file.sha256 for file in files]),
            plan=plan,
            next_at=now + plan[0].after if plan else None,
            files=files,
            title=title,
            test_mode=test_mode,
        )

    def _sending_line(self, requested: str | None) -> str:
        lines = self.lines()
        if requested is None:
            if not lines:
                raise RequestError(400, "This account has no fax line to send from; buy one")
            return lines[0]
        number = normalize_number(requested)
        if number is None or number not in lines:
            raise RequestError(400, f"From {requested!r} is not one of this account's fax lines")
        return number

    def _keep_files(
        self, uploads: Sequence[Upload], infos: Sequence[DocumentInfo]
    ) -> tuple[FileRecord, ...]:
        files = []
        for position, (upload, info) in enumerate(zip(uploads, infos, strict=True)):
            sha256 = hashlib.sha256(upload.content).hexdigest()
            self._store.put_document(sha256, upload.content)
            files.append(
                FileRecord(
                    position=position,
                    name=upload.name,
                    sha256=sha256,
                    size=len(upload.content),
                    pages=info.pages,
                    readable=info.readable,
                    kind=info.kind,
                )
            )
        return tuple(files)

    def transmission(self, guid: str) -> TransmissionRecord:
        record = self._store.transmission(self.guid, guid)
        if record is None:
            raise TransmissionNotFound
        return record

    def any_transmission(self, guid: str) -> TransmissionRecord | None:
        """The account's transmission, removed or not (a face may tell removed from deleted)."""
        record = self._store.transmission_by_guid(guid)
        return record if record is not None and record.account_guid == self.guid else None

    def delete(self, record: TransmissionRecord) -> None:
        """The client removes a fax: gone from GET, the list and its files."""
        if record.status in lifecycle.IN_FLIGHT:
            raise RequestError(400, "The fax is still being sent; delete it once it has ended")
        with self._store.transaction():
            self._store.delete(record.guid, time.time())

    async def document(self, record: TransmissionRecord) -> bytes:
        """The fax as one PDF: what arrived, or what the receiving end gets."""
        if record.is_inbound:
            return self._store.document(record.files[0].sha256)
        return await received_document(self.sent_parts(record), record.cover)

    @property
    def removal(self) -> Removal:
        return self._settings.removal

    def remove_if_due(self, record: TransmissionRecord, now: float) -> None:
        """Remove an ended outbound fax when the rules say so; inside a transaction."""
        if not record.is_inbound and removes(self._settings.removal, record.status):
            self._store.remove(record.guid, now)

    def count(self) -> int:
        """How many transmissions GET and the list can see."""
        return self._store.count_transmissions(self.guid)

    def newest(self, offset: int, limit: int) -> list[TransmissionRecord]:
        return self._store.newest_transmissions(self.guid, offset=offset, limit=limit)

    # Inbound ---------------------------------------------------------------------------

    async def inject_inbound(self, to: str, from_: str, upload: Upload) -> TransmissionRecord:
        """A fax arriving from outside at one of the account's lines."""
        line = normalize_number(to)
        if line is None or line not in self.lines():
            raise RequestError(404, f"{to!r} is not one of this account's fax lines")
        sender = normalize_number(from_)
        if sender is None:
            raise RequestError(400, f"Invalid from {from_!r}: give the fax number in digits")
        info = await asyncio.to_thread(examine, upload.name, upload.content)
        if not info.readable:
            raise RequestError(400, f"Not a readable document: {info.reason}")
        part = ReceivedPart(upload.name, upload.content, info)
        document = await received_document([part], CoverPage())
        with self._store.transaction():
            record = self.record_received(
                to=line, from_=sender, document=document, pages=info.pages, now=time.time()
            )
        self._parts.wake()
        return record

    def record_received(
        self, *, to: str, from_: str, document: bytes, pages: int, now: float
    ) -> TransmissionRecord:
        """Store an inbound fax and queue its callback; call inside a transaction."""
        sha256 = hashlib.sha256(document).hexdigest()
        self._store.put_document(sha256, document)
        guid = new_guid()
        name = f"fax-{guid}.pdf"
        files = (FileRecord(0, name, sha256, len(document), pages, True, "pdf"),)
        record = self._store.add_transmission(
            self._new_record(
                to, from_, now, pages, files, status=lifecycle.SENT, cover=CoverPage(), guid=guid
            )
        )
        url = self._parts.wire.inbound_url(self.account())
        if url:
            attach = self._parts.wire.document_part is not None
            self._store.add_callback(
                transmission_guid=guid,
                kind="inbound",
                url=url,
                payload=self._parts.wire.inbound_payload(record),
                document_sha256=sha256 if attach else None,
                document_name=name if attach else None,
                due_at=now,
            )
        return record

    def sent_parts(self, record: TransmissionRecord) -> list[ReceivedPart]:
        """The documents of an outbound fax, as the receiving end gets them."""
        parts = []
        for file in record.files:
            content = self._store.document(file.sha256)
            info = DocumentInfo(file.readable, file.pages, file.kind, "")
            parts.append(ReceivedPart(file.name, content, info))
        return parts

    # Inspection ------------------------------------------------------------------------

    def inspect(self) -> list[InspectedTransmission]:
        return inspect_transmissions(self._store.all_transmissions())

    def duplicates(self) -> list[DuplicateSend]:
        return duplicate_sends(self._store.all_transmissions())

    def callback_attempts(self) -> list[CallbackAttempt]:
        return callback_attempts(self._store.attempts())


def _examine_all(uploads: Sequence[Upload]) -> list[DocumentInfo]:
    return [examine(upload.name, upload.content) for upload in uploads]


async def received_document(parts: list[ReceivedPart], cover: CoverPage) -> bytes:
    """The PDF the receiving line gets; a lone PDF without cover page arrives as it is."""
    if len(parts) == 1 and parts[0].info.kind == "pdf" and not cover.present:
        return parts[0].content
    return await asyncio.to_thread(render_received_fax, parts, cover)
