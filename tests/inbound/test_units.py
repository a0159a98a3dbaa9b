"""The inbound parts on a real store and spool, without HTTP: receiver, mail, folder,
delivery. The whole path through the daemon is in test_inbound_daemon.py."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from faxgate.domain.inbound import NOTIFICATION_KIND, InboundFax, ReceivedDocument
from faxgate.domain.inbound_routes import RoutingTable
from faxgate.domain.jobs import Notification
from faxgate.domain.numbers import NumberPolicy
from faxgate.inbound import compose
from faxgate.inbound.documents import FilePart, choose_document, document_kind
from faxgate.inbound.folder import write_to_folder
from faxgate.inbound.receiver import InboundReceiver, prepare_upload_dir
from faxgate.notify.inbound_delivery import InboundDeliverer
from faxgate.notify.mailer import MailError
from faxgate.notify.notifier import DeliveryBackoff, Notifier
from faxgate.notify.reporter import PermanentFailure
from faxgate.store import Store
from faxgate.store.spool import Spool
from tests.conftest import pdf_document

GUID = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
T0 = datetime(2024, 5, 1, 10, 15, 30, tzinfo=UTC)
LINE = "14155550100"
SENDER = "12125550199"


@dataclass
class RecordingMailer:
    sent: list[EmailMessage] = field(default_factory=list)
    failures: list[MailError] = field(default_factory=list)  # raised in order, then sends

    async def send(self, message: EmailMessage) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "state" / "spool")


def routing(tmp_path: Path, **default: Any) -> RoutingTable:
    return RoutingTable.build(
        [],
        default_email=default.get("email", ["desk@example.com"]),
        default_folder=default.get("folder", str(tmp_path / "out")),
        policy=NumberPolicy(),
    )


def transaction(guid: str = GUID, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Guid": guid,
        "To": LINE,
        "From": SENDER,
        "IsInbound": True,
        "StatusCode": "S",
        "CreatedAt": str(int(T0.timestamp())),
        "NumPagesBilled": 2,
    }
    base.update(fields)
    return base


def upload(tmp_path: Path, content: bytes, name: str = "part-0") -> Path:
    folder = tmp_path / "state" / "inbound-uploads" / "faxgate-inbound-test"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path


async def deliver_all(store: Store, deliverer: InboundDeliverer) -> list[Notification]:
    rows = store.pending_notifications(datetime.now(UTC), 50)
    for row in rows:
        await deliverer(row, None)
    return rows


# ---------------------------------------------------------------------------- receiving


async def test_a_fax_is_spooled_and_recorded_with_its_deliveries(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    woken: list[bool] = []
    receiver = InboundReceiver(
        store, spool, routing(tmp_path), on_stored=lambda: woken.append(True)
    )
    document = pdf_document(2)
    await receiver(transaction(), [("../../etc/passwd", upload(tmp_path, document))])

    fax = store.find_inbound_by_guid(GUID)
    assert fax is not None
    assert (fax.to_number, fax.from_number, fax.pages) == ("+14155550100", "+12125550199", 2)
    assert fax.arrived_at == T0
    assert fax.document is not None
    # faxgate's own name in the spool, never the sender's
    assert fax.document.path.parent == spool.root
    assert fax.document.path.suffix == ".pdf"
    assert "passwd" not in fax.document.path.name
    assert fax.document.path.read_bytes() == document
    assert fax.document.sha256 == hashlib.sha256(document).hexdigest()
    assert [(d.kind, d.target, d.state) for d in store.inbound_deliveries(fax.id)] == [
        ("email", "desk@example.com", "pending"),
        ("folder", str(tmp_path / "out"), "pending"),
    ]
    rows = store.pending_notifications(datetime.now(UTC), 10)
    assert [(r.kind, r.payload["seq"]) for r in rows] == [
        (NOTIFICATION_KIND, 0),
        (NOTIFICATION_KIND, 1),
    ]
    assert woken == [True]


def assert_stored_once(store: Store, spool: Spool) -> None:
    """One inbound fax recorded, its document spooled once, its two deliveries owed."""
    assert len(store.recent_inbound(10)) == 1
    assert len(spool.files()) == 1
    assert len(store.pending_notifications(datetime.now(UTC), 10)) == 2


async def test_the_same_fax_twice_is_stored_once(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    receiver = InboundReceiver(store, spool, routing(tmp_path))
    for _ in range(2):
        await receiver(transaction(), [("fax.pdf", upload(tmp_path, pdf_document(1)))])
    assert_stored_once(store, spool)


async def test_copies_arriving_at_once_are_stored_once(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    receiver = InboundReceiver(store, spool, routing(tmp_path))
    copies = [
        receiver(transaction(), [("fax.pdf", upload(tmp_path, pdf_document(1), f"part-{n}"))])
        for n in range(4)
    ]
    await asyncio.gather(*copies)
    assert_stored_once(store, spool)


async def test_without_a_document_the_fax_is_still_recorded(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    receiver = InboundReceiver(store, spool, routing(tmp_path))
    await receiver(transaction(), [])
    fax = store.find_inbound_by_guid(GUID)
    assert fax is not None
    assert fax.document is None
    assert fax.note == "the provider's callback included no document"
    assert len(store.inbound_deliveries(fax.id)) == 2


async def test_files_that_are_not_documents_are_not_kept(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    receiver = InboundReceiver(store, spool, routing(tmp_path))
    script = upload(tmp_path, b"<html><script>alert(1)</script></html>", "part-0")
    await receiver(transaction(NumPagesBilled=None), [("fax.pdf", script)])
    fax = store.find_inbound_by_guid(GUID)
    assert fax is not None
    assert fax.document is None
    assert fax.pages is None
    assert "not a PDF, TIFF or image" in (fax.note or "")
    assert spool.files() == []


async def test_pages_are_counted_when_the_provider_does_not_say(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    receiver = InboundReceiver(store, spool, routing(tmp_path))
    other = upload(tmp_path, b"GIF89a...", "part-1")
    await receiver(
        transaction(NumPagesBilled=0), [("a.pdf", upload(tmp_path, pdf_document(3))), ("b", other)]
    )
    fax = store.find_inbound_by_guid(GUID)
    assert fax is not None
    assert fax.pages == 3
    assert fax.note == "1 more file part was left out"


async def test_an_outbound_report_at_the_inbound_url_is_ignored(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    receiver = InboundReceiver(store, spool, routing(tmp_path))
    await receiver(transaction(IsInbound=False), [("fax.pdf", upload(tmp_path, pdf_document(1)))])
    assert store.recent_inbound(10) == []
    assert spool.files() == []


async def test_a_failed_record_leaves_no_document_behind(
    tmp_path: Path, store: Store, spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "record_inbound", broken)
    receiver = InboundReceiver(store, spool, routing(tmp_path))
    with pytest.raises(OSError, match="disk full"):
        await receiver(transaction(), [("fax.pdf", upload(tmp_path, pdf_document(1)))])
    assert spool.files() == []


async def test_an_upload_on_another_file_system_is_copied_in(
    tmp_path: Path, store: Store, spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def across_devices(path: Path, *, suffix: str | None = None) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(spool, "adopt", across_devices)
    document = pdf_document(1)
    await InboundReceiver(store, spool, routing(tmp_path))(
        transaction(), [("fax.pdf", upload(tmp_path, document))]
    )
    (path,) = spool.files()
    assert path.read_bytes() == document


def test_leftover_uploads_are_cleared(tmp_path: Path) -> None:
    first = prepare_upload_dir(tmp_path / "state")
    (first / "faxgate-inbound-crashed").mkdir()
    (first / "faxgate-inbound-crashed" / "part-0").write_bytes(b"%PDF-")
    assert list(prepare_upload_dir(tmp_path / "state").iterdir()) == []


@pytest.mark.parametrize(
    ("head", "content_type"),
    [
        (b"%PDF-1.7", "application/pdf"),
        (b"II*\x00abcd", "image/tiff"),
        (b"MM\x00*abcd", "image/tiff"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"<html>", None),
        (b"MZ\x90\x00", None),
        (b"", None),
    ],
)
def test_documents_are_known_by_content(head: bytes, content_type: str | None) -> None:
    kind = document_kind(head)
    assert (kind.content_type if kind else None) == content_type


def test_an_empty_document_is_not_kept() -> None:
    pdf = document_kind(b"%PDF-")
    choice = choose_document([FilePart(0, 0, pdf), FilePart(1, 10, pdf)])
    assert choice.kept == FilePart(1, 10, pdf)


# ---------------------------------------------------------------------------- what is written


def a_fax(tmp_path: Path, *, document: bool = True, **changes: Any) -> InboundFax:
    received = None
    if document:
        path = tmp_path / "spooled.pdf"
        data = pdf_document(1)
        path.write_bytes(data)
        received = ReceivedDocument(
            path, len(data), hashlib.sha256(data).hexdigest(), "application/pdf"
        )
    values: dict[str, Any] = {
        "id": "1ngjb5f20d2s",
        "received_at": T0,
        "provider_guid": GUID,
        "to_number": "+14155550100",
        "from_number": "+14155550123",
        "pages": 3,
        "arrived_at": T0,
        "route": "sales",
        "document": received,
        "note": None,
    }
    values.update(changes)
    return InboundFax(**values)


def test_the_mail_says_who_sent_what(tmp_path: Path) -> None:
    fax = a_fax(tmp_path)
    assert fax.document is not None
    mail = compose.compose_mail(
        fax, ["a@example.com", "b@example.com"], fax.document.path.read_bytes()
    )
    assert mail["Subject"] == "Fax from +1 415-555-0123 (3 pages)"
    assert mail["To"] == "a@example.com, b@example.com"
    assert mail["Auto-Submitted"] == "auto-generated"
    text = mail.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    for fact in ("+1 415-555-0123", "+1 415-555-0100", "2024-05-01 10:15:30 UTC", GUID, "sales"):
        assert fact in body
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_filename() == "2024-05-01_101530_from-14155550123_1ngjb5f20d2s.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == fax.document.path.read_bytes()


def test_the_mail_of_a_fax_without_document_says_so(tmp_path: Path) -> None:
    fax = a_fax(tmp_path, document=False, from_number=None, pages=1, note="no file came")
    mail = compose.compose_mail(fax, ["a@example.com"], None)
    assert mail["Subject"] == "Fax from an unknown number (1 page), document not included"
    assert list(mail.iter_attachments()) == []
    assert "The document is not included: no file came." in mail.get_content()


def test_file_names_come_from_the_record(tmp_path: Path) -> None:
    fax = a_fax(tmp_path, from_number="anonymous / ../x")
    assert compose.file_stem(fax) == "2024-05-01_101530_from-anonymousx_1ngjb5f20d2s"
    assert compose.file_stem(a_fax(tmp_path, from_number=None)).endswith(
        "from-unknown_1ngjb5f20d2s"
    )


def test_folder_writes_are_atomic_and_idempotent(tmp_path: Path) -> None:
    fax = a_fax(tmp_path)
    assert fax.document is not None
    folder = tmp_path / "out" / "sales"
    stem = "2024-05-01_101530_from-14155550123_1ngjb5f20d2s"
    folder.mkdir(parents=True)
    (folder / f".{stem}.pdf.partial-dead").write_bytes(b"half")  # a crash mid-write
    written = write_to_folder(folder, fax)
    assert written == folder / f"{stem}.pdf"
    assert sorted(p.name for p in folder.iterdir()) == [f"{stem}.json", f"{stem}.pdf"]
    assert written.read_bytes() == fax.document.path.read_bytes()
    meta = json.loads((folder / f"{stem}.json").read_text())
    assert meta["provider_guid"] == GUID
    assert meta["document"]["file"] == f"{stem}.pdf"
    assert meta["from"] == "+14155550123"
    before = {p: p.stat().st_mtime_ns for p in folder.iterdir()}

    assert write_to_folder(folder, fax) == written  # again, as after a crash
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_a_fax_without_document_writes_its_metadata_only(tmp_path: Path) -> None:
    written = write_to_folder(tmp_path / "out", a_fax(tmp_path, document=False))
    assert written.suffix == ".json"
    assert [p.name for p in (tmp_path / "out").iterdir()] == [written.name]
    assert json.loads(written.read_text())["document"] is None


# ---------------------------------------------------------------------------- delivering


async def test_each_delivery_is_done_once(tmp_path: Path, store: Store, spool: Spool) -> None:
    await InboundReceiver(store, spool, routing(tmp_path))(
        transaction(), [("fax.pdf", upload(tmp_path, pdf_document(2)))]
    )
    mailer = RecordingMailer()
    deliverer = InboundDeliverer(store, mailer, from_address="fax@example.com")
    rows = await deliver_all(store, deliverer)
    assert len(mailer.sent) == 1
    assert mailer.sent[0]["Message-ID"].endswith("@example.com>")
    fax = store.find_inbound_by_guid(GUID)
    assert fax is not None
    assert [d.delivered_at is not None for d in store.inbound_deliveries(fax.id)] == [True, True]

    # The notifier died before marking its rows: they come again, and nothing is redone.
    for row in rows:
        await deliverer(row, None)
    assert len(mailer.sent) == 1
    assert len(list((tmp_path / "out").iterdir())) == 2


async def test_a_failing_mail_does_not_hold_up_the_folder(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    await InboundReceiver(store, spool, routing(tmp_path))(
        transaction(), [("fax.pdf", upload(tmp_path, pdf_document(2)))]
    )
    mailer = RecordingMailer(failures=[MailError("relay down", permanent=False)])
    deliverer = InboundDeliverer(store, mailer, from_address="fax@example.com")
    notifier = Notifier(store, {NOTIFICATION_KIND: deliverer}, backoff=DeliveryBackoff())
    assert await notifier.deliver_once() == 1
    fax = store.find_inbound_by_guid(GUID)
    assert fax is not None
    email, folder = store.inbound_deliveries(fax.id)
    assert (email.state, email.attempts, email.last_error) == ("failing", 1, "relay down")
    assert folder.state == "delivered"
    assert (folder.detail or "").endswith(".pdf")


async def test_a_document_gone_from_the_spool_is_given_up(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    await InboundReceiver(store, spool, routing(tmp_path, folder=""))(
        transaction(), [("fax.pdf", upload(tmp_path, pdf_document(2)))]
    )
    for path in spool.files():
        os.unlink(path)
    deliverer = InboundDeliverer(store, RecordingMailer(), from_address="fax@example.com")
    (row,) = store.pending_notifications(datetime.now(UTC), 10)
    with pytest.raises(PermanentFailure, match="missing from the spool"):
        await deliverer(row, None)
