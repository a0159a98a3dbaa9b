"""The mail that delivers an inbound fax, read back as a mail program reads it (the stdlib
parser): who, when and how many pages in words, page 1 reduced in the HTML part through a
`cid:` reference, a plain-text alternative, the PDF attached whole. Through the whole
daemon too, with faxes injected into the sandbox and hostile ones posted straight to the
callback: a page that cannot be drawn still gets its mail, with a note."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat

from faxgate.app import Daemon, started
from faxgate.domain.addressing import address_book_from_toml
from faxgate.domain.inbound import InboundFax, NewDelivery, NewInboundFax, ReceivedDocument
from faxgate.domain.numbers import NumberPolicy
from faxgate.hellofax.sandbox import inject_inbound
from faxgate.inbound import compose
from faxgate.inbound.compose import PAGE_IMAGE_PIXELS, PageImage
from faxgate.notify.confirmation import PageDrawer
from faxgate.notify.inbound_delivery import InboundDeliverer
from faxgate.notify.mailer import MaildirMailer
from faxgate.notify.thumbnail import first_page_png
from faxgate.settings import Settings
from faxgate.store import Store
from tests.daemon import fast_settings
from tests.inbound.test_daemon import (
    MAIN_LINE,
    STRANGER,
    all_delivered,
    callback_url,
    fax_in,
    inbound_settings,
    mails,
    post,
)
from tests.notify.reports import bomb_png, inked_pdf

T0 = datetime(2024, 5, 1, 10, 15, 30, tzinfo=UTC)
GUID = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"


def a_fax(tmp_path: Path, content: bytes, **changes: Any) -> InboundFax:
    path = tmp_path / "spooled.pdf"
    path.write_bytes(content)
    document = ReceivedDocument(
        path, len(content), hashlib.sha256(content).hexdigest(), "application/pdf"
    )
    values: dict[str, Any] = {
        "id": "1ngjb5f20d2s",
        "received_at": T0,
        "provider_guid": GUID,
        "to_number": "+14155550100",
        "from_number": "+12125550199",
        "pages": 3,
        "arrived_at": T0,
        "route": "sales",
        "document": document,
        "note": None,
    }
    values.update(changes)
    return InboundFax(**values)


def parsed(mail: EmailMessage) -> EmailMessage:
    """The mail as it travels, read back by the stdlib parser."""
    message = email.message_from_bytes(mail.as_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def shape(message: Message) -> list[str]:
    return [part.get_content_type() for part in message.walk()]


def inline_image(message: EmailMessage) -> Image.Image:
    """The image the HTML part shows: its `cid:` reference followed to its part."""
    html = message.get_body(("html",))
    assert html is not None
    found = re.search(r'src="cid:([^"]+)"', html.get_content())
    assert found is not None, "the HTML shows no cid: image"
    by_cid = {
        str(part["Content-ID"]).strip("<>"): part for part in message.walk() if part["Content-ID"]
    }
    part = by_cid[found.group(1)]
    assert part.get_content_type() == "image/png"
    assert part.get_content_disposition() == "inline"
    content = part.get_payload(decode=True)
    assert isinstance(content, bytes)
    image = Image.open(io.BytesIO(content))
    image.load()
    return image


def attached(message: EmailMessage) -> bytes:
    (attachment,) = list(message.iter_attachments())
    content = attachment.get_content()
    assert isinstance(content, bytes)
    return content


def attached_pdf(message: EmailMessage) -> bytes:
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    return attached(message)


def plain_text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    text = part.get_content()
    assert isinstance(text, str)
    return text


def html_text(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    text = part.get_content()
    assert isinstance(text, str)
    return text


# ---------------------------------------------------------------------------- composed


def test_the_mail_shows_page_one_inline_and_attaches_the_pdf(tmp_path: Path) -> None:
    document = inked_pdf(3)
    fax = a_fax(tmp_path, document)
    png = first_page_png(str(fax.document.path), "application/pdf", *PAGE_IMAGE_PIXELS)  # type: ignore[union-attr]
    mail = parsed(
        compose.compose_mail(
            fax, ["a@example.com"], document, name="Dr Ruth Mayer", page=PageImage(png)
        )
    )
    assert shape(mail) == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
        "application/pdf",
    ]
    assert mail["Subject"] == "Fax from Dr Ruth Mayer, +1 212-555-0199 (3 pages)"
    image = inline_image(mail)
    assert image.width <= PAGE_IMAGE_PIXELS[0]
    assert image.height <= PAGE_IMAGE_PIXELS[1]
    assert image.width > 300  # reduced, not a speck
    assert ImageStat.Stat(image.convert("L")).var[0] > 1000  # the black block is there
    assert attached_pdf(mail) == document
    for text in (plain_text(mail), html_text(mail)):
        # Who, when on the line's clock (San Francisco: PDT in May), how many pages.
        assert "A fax from Dr Ruth Mayer (+1 212-555-0199) came in" in " ".join(text.split())
        assert "Wed 1 May 2024, 03:15 PDT" in " ".join(text.split())
        assert "2024-05-01 10:15:30 UTC" in text
        assert "(3 pages)" in text
    assert "cid:" not in plain_text(mail)


def test_a_note_stands_in_for_a_page_that_cannot_be_drawn(tmp_path: Path) -> None:
    document = b"%PDF-1.4 truncated"
    fax = a_fax(tmp_path, document)
    note = (
        "No image of page 1: it could not be drawn (the PDF cannot be read). The fax is attached."
    )
    mail = parsed(
        compose.compose_mail(fax, ["a@example.com"], document, page=PageImage(None, note))
    )
    assert "image/png" not in shape(mail)
    assert "cid:" not in html_text(mail)
    assert note in " ".join(plain_text(mail).split())
    assert note in html_text(mail)
    assert attached_pdf(mail) == document


def test_with_the_image_left_out_the_mail_is_plain_text(tmp_path: Path) -> None:
    document = inked_pdf()
    mail = parsed(compose.compose_mail(a_fax(tmp_path, document), ["a@example.com"], document))
    assert shape(mail) == ["multipart/mixed", "text/plain", "application/pdf"]
    assert attached_pdf(mail) == document


def test_a_sent_again_mail_is_the_same_mail(tmp_path: Path) -> None:
    document = inked_pdf()
    fax = a_fax(tmp_path, document)
    page = PageImage(first_page_png(str(fax.document.path), "application/pdf", 200, 260))  # type: ignore[union-attr]

    def html_of() -> str:
        return html_text(parsed(compose.compose_mail(fax, ["a@example.com"], document, page=page)))

    assert html_of() == html_of()  # the cid comes from the fax, not from chance


def test_the_time_is_the_lines_and_utc_where_the_line_has_no_single_zone(tmp_path: Path) -> None:
    london = a_fax(tmp_path, b"%PDF-", to_number="+442079460000")
    assert compose.local_time(london) == "Wed 1 May 2024, 11:15 BST"
    toll_free = a_fax(tmp_path, b"%PDF-", to_number="+18005550100")  # every US zone
    assert compose.local_time(toll_free) == "Wed 1 May 2024, 10:15 UTC"
    assert "Received:     2024-05-01 10:15:30 UTC\n" in compose.body(toll_free)


def test_senders_are_named_from_the_contacts() -> None:
    book = address_book_from_toml(
        {
            "contacts": {
                "mayer": {"number": "+1 212 555 0199", "cover": "Dr Ruth Mayer"},
                "pharmacy": {"number": "+1 310 555 0111"},
                "mayer-again": {"number": "+1 212 555 0199", "cover": "Someone Else"},
                "odd": {"number": "+1 212 555 0100", "cover": "Two\nLines " + "x" * 80},
            }
        },
        NumberPolicy(default_region="US"),
        50,
    )
    assert compose.names_by_number(book) == {
        "+12125550199": "Dr Ruth Mayer",
        "+13105550111": "pharmacy",
        "+12125550100": "Two Lines " + "x" * 50,
    }


# ---------------------------------------------------------------------------- the daemon


def settings_for(tmp_path: Path, **inbound: Any) -> Settings:
    contacts = tmp_path / "contacts.toml"
    contacts.write_text(
        '[contacts.outside]\nnumber = "+1 310 555 0111"\ncover = "Outside Clinic"\n'
    )
    return fast_settings(
        tmp_path / "state",
        inbound={**inbound_settings(tmp_path), **inbound},
        addressing={"contacts_file": str(contacts)},
        http={"max_callback_size": 64 * 1024},
    )


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with started(settings_for(tmp_path)) as running:
        yield running


async def test_an_injected_fax_arrives_by_mail_with_page_one_shown(
    daemon: Daemon, tmp_path: Path
) -> None:
    document = tmp_path / "letter.pdf"
    document.write_bytes(inked_pdf(2))
    assert daemon.sandbox is not None
    transmission = await inject_inbound(daemon.sandbox.base_url, MAIN_LINE, STRANGER, document)
    fax, _ = (await all_delivered(daemon, 1))[str(transmission["Guid"])]
    (mail,) = mails(daemon.settings)
    assert mail["Subject"].startswith("Fax from Outside Clinic, +1 310-555-0111 (")
    image = inline_image(mail)
    assert ImageStat.Stat(image.convert("L")).var[0] > 1000
    assert fax.document is not None
    assert attached_pdf(mail) == fax.document.path.read_bytes()
    # On the clock of the line (+1 415: San Francisco), whatever the season.
    assert re.search(r" \d\d:\d\d P[SD]T \(", plain_text(mail))
    assert compose.local_time(fax) in " ".join(plain_text(mail).split())


def huge_page_count_pdf() -> bytes:
    """One real page in a page tree that claims two billion."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 2000000000 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length 35 >>\nstream\n0 0 0 rg 72 200 468 300 re f\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


async def test_hostile_documents_are_still_delivered_with_a_note(daemon: Daemon) -> None:
    truncated = inked_pdf()[:300]
    huge = huge_page_count_pdf()
    bomb = bomb_png()
    assert await post(callback_url(daemon), "1" * 40, truncated) == (200, "ok")
    assert await post(callback_url(daemon), "2" * 40, huge) == (200, "ok")
    assert await post(callback_url(daemon), "3" * 40, bomb, name="fax.png") == (200, "ok")
    await all_delivered(daemon, 3)
    sent = {attached(mail): mail for mail in mails(daemon.settings)}
    assert set(sent) == {truncated, huge, bomb}  # each delivered, its document whole

    for document, why in (
        (truncated, "the PDF cannot be read"),
        (bomb, "the image is too large to draw safely"),
    ):
        mail = sent[document]
        assert "image/png" not in shape(mail)[:-1]  # only the attachment, if a PNG
        note = f"No image of page 1: it could not be drawn ({why}"
        assert note in " ".join(plain_text(mail).split())
        assert note in html_text(mail)
    # Two billion pages claimed: only the first is touched, and drawn.
    assert ImageStat.Stat(inline_image(sent[huge]).convert("L")).var[0] > 1000


async def test_page_image_off_leaves_the_image_out(tmp_path: Path) -> None:
    async with started(settings_for(tmp_path, page_image=False)) as daemon:
        guid = await fax_in(daemon, tmp_path, MAIN_LINE, STRANGER, pages=2)
        fax, _ = (await all_delivered(daemon, 1))[guid]
        (mail,) = mails(daemon.settings)
    assert shape(mail) == ["multipart/mixed", "text/plain", "application/pdf"]
    assert fax.document is not None
    assert attached_pdf(mail) == fax.document.path.read_bytes()
    assert "Outside Clinic (+1 310-555-0111)" in " ".join(plain_text(mail).split())


async def test_an_edited_contacts_file_names_the_next_sender(
    daemon: Daemon, tmp_path: Path
) -> None:
    first = await fax_in(daemon, tmp_path, MAIN_LINE, STRANGER)
    await all_delivered(daemon, 1)
    (tmp_path / "contacts.toml").write_text(
        '[contacts.clinic]\nnumber = "+1 310 555 0111"\ncover = "Renamed Clinic"\n'
    )
    second = await fax_in(daemon, tmp_path, MAIN_LINE, STRANGER, pages=2)
    faxes = await all_delivered(daemon, 2)
    subjects = {mail["X-Faxgate-Inbound"]: mail["Subject"] for mail in mails(daemon.settings)}
    assert subjects[faxes[first][0].id] == "Fax from Outside Clinic, +1 310-555-0111 (1 page)"
    assert subjects[faxes[second][0].id] == "Fax from Renamed Clinic, +1 310-555-0111 (2 pages)"


# ---------------------------------------------------------------------------- the handler


async def test_a_drawing_process_that_fails_leaves_a_note_and_the_mail_goes(
    tmp_path: Path,
) -> None:
    """A worker held to too little memory to even start drawing: the real capped path,
    failing as a hostile page would make it fail."""
    content = inked_pdf()
    spooled = tmp_path / "spooled.pdf"
    spooled.write_bytes(content)
    document = ReceivedDocument(
        spooled, len(content), hashlib.sha256(content).hexdigest(), "application/pdf"
    )
    maildir = tmp_path / "maildir"
    with Store.open(tmp_path / "faxgate.sqlite3") as store:
        fax, _ = store.record_inbound(
            NewInboundFax(
                provider_guid=GUID,
                to_number="+14155550100",
                from_number="+13105550111",
                pages=1,
                arrived_at=T0,
                route="sales",
                document=document,
            ),
            [
                NewDelivery(
                    "email",
                    "desk@example.com",
                    {"kind": "email", "recipients": ["desk@example.com"]},
                )
            ],
        )
        (notification,) = store.pending_notifications(datetime.now(UTC), 10)
        deliver = InboundDeliverer(
            store,
            MaildirMailer(maildir),
            from_address="faxgate@example.com",
            drawer=PageDrawer(seconds=5, memory=16 * 1024 * 1024),
        )
        async with asyncio.timeout(30):
            await deliver(notification, None)
        (delivery,) = store.inbound_deliveries(fax.id)
        assert delivery.delivered_at is not None
    (path,) = (maildir / "new").iterdir()
    mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(mail, EmailMessage)
    assert "image/png" not in shape(mail)
    assert "No image of page 1: it could not be drawn (" in " ".join(plain_text(mail).split())
    assert attached_pdf(mail) == content
