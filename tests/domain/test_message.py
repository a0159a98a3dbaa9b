"""From an email to a fax: the corpus of real-world messages, the rules one by one, fuzzing."""

from __future__ import annotations

import base64
import email
import email.feedparser
import email.policy
import hashlib
import io
import random
import re
import struct
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from faxgate.domain.documents import MAX_FILES, accepted_list
from faxgate.domain.message import (
    MAIL_POLICY,
    MAX_COVER_MESSAGE_CHARS,
    CoverMode,
    FaxContent,
    MailDocument,
    MessageRefused,
    cut_signature,
    fax_content,
    html_to_text,
    image_size,
    tidy_text,
)
from tests.conftest import pdf_document

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "mail"
FAX = "14155550100@fax.local"
PDF = pdf_document(1)
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def from_corpus(name: str, cover: CoverMode = CoverMode.WHEN_BODY) -> FaxContent:
    return fax_content(corpus(name), recipient=FAX, cover=cover)


def refusal(raw: bytes, cover: CoverMode = CoverMode.WHEN_BODY) -> str:
    with pytest.raises(MessageRefused) as refused:
        fax_content(raw, recipient=FAX, cover=cover)
    assert str(refused.value) == refused.value.reason
    return refused.value.reason


def kinds(content: FaxContent) -> list[tuple[str, str]]:
    return [(document.name, document.content_type) for document in content.documents]


def pdf_text(document: MailDocument) -> str:
    """The PDF's text: only a PDF decoded byte for byte reads back."""
    reader = PdfReader(io.BytesIO(document.content), strict=True)
    return "".join(page.extract_text() for page in reader.pages)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def png(width: int, height: int, *, noise: bool) -> bytes:
    """A real grayscale PNG; noise does not compress, so it sets the size in bytes."""
    rng = random.Random(width * 7919 + height)
    rows = b"".join(
        b"\x00" + (rng.randbytes(width) if noise else bytes([200]) * width) for _ in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


_TYPES = {
    ".pdf": ("application", "pdf"),
    ".png": ("image", "png"),
    ".tif": ("image", "tiff"),
    ".txt": ("text", "plain"),
    ".zip": ("application", "zip"),
    ".exe": ("application", "x-msdownload"),
}


def mail(
    *,
    body: str | None = "Please fax the attached.",
    attachments: Sequence[tuple[str, bytes]] = (),
    headers: Mapping[str, str] | None = None,
    subject: str = "Contract",
    sender: str = "Alice Sender <alice@example.com>",
    to: str = f"Bob Receiver <{FAX}>",
) -> bytes:
    """A message as a mail client writes it: text first, then the attachments."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = "<test-1@example.com>"
    for name, value in (headers or {}).items():
        message[name] = value
    if body is not None:
        message.set_content(body)
    for name, data in attachments:
        maintype, subtype = _TYPES.get(Path(name).suffix, ("application", "octet-stream"))
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes()


def multipart(*parts: str, headers: str = "") -> bytes:
    """A multipart/mixed message from hand-written parts (headers, blank line, content)."""
    head = f"From: a@example.com\nTo: {FAX}\nSubject: Parts\n{headers}MIME-Version: 1.0\n"
    head += 'Content-Type: multipart/mixed; boundary="XX"\n\n'
    return (head + "".join(f"--XX\n{part}\n" for part in parts) + "--XX--\n").encode()


def b64(data: bytes) -> str:
    return base64.encodebytes(data).decode()


# --- The corpus ------------------------------------------------------------------------


def test_gmail_alternative_faxes_both_attachments_and_puts_the_text_on_the_cover() -> None:
    content = from_corpus("gmail-alternative.eml")
    assert kinds(content) == [
        ("Referral letter.pdf", "application/pdf"),
        ("consent-photo.png", "image/png"),
    ]
    assert "Referral letter" in pdf_text(content.documents[0])
    assert image_size(content.documents[1].content) == (200, 150)
    assert content.cover_to == "Dr. Robert Smith"
    assert content.cover_from == "Jane Doe"
    assert content.cover_message == (
        "Referral for Mrs. Alvarez\n\nDear Dr. Smith,\n\nPlease find attached the referral for "
        "Mrs. Alvarez and a photo of the signed consent form.\n\nBest regards,\nJane"
    )
    assert content.subject == "Referral for Mrs. Alvarez"
    assert content.message_id == "<CAHk9x2B7nQ4=referral@mail.gmail.com>"
    assert content.skipped == []


def test_apple_mail_faxes_the_inline_pdf_and_not_the_inline_images() -> None:
    content = from_corpus("apple-mail-inline.eml")
    assert kinds(content) == [("Lab results.pdf", "application/pdf")]
    assert "Lab results" in pdf_text(content.documents[0])
    assert content.skipped == [
        "inline image IMG_0412.jpeg not faxed",
        "inline image Signature.png not faxed",
    ]
    assert content.cover_to == "Dr Okafor"
    assert content.cover_from == "María García"
    assert content.cover_message == (
        "Lab results\n\nHi Dr. Okafor,\n\nHere are the lab results we talked about. The chart "
        "is in the PDF; I’ve put my X-ray snapshot inline for reference.\n\nThanks,\nMaría"
    )


def test_outlook_message_with_a_signature_logo_and_windows_1252_text() -> None:
    content = from_corpus("outlook-html-signature.eml")
    assert kinds(content) == [("Angebot 2024-117.pdf", "application/pdf")]
    assert "Angebot 2024-117" in pdf_text(content.documents[0])
    assert content.skipped == ["inline image image001.png not faxed"]
    # Outlook's display name is the address itself: no name to print
    assert content.cover_to is None
    assert content.cover_from == "Müller, Hans"
    # the subject is labelled ISO-8859-1 but written in Windows-1252 (the dash)
    assert content.subject == "AW: Anfrage Wartung – Angebot 2024-117"
    assert content.cover_message == f"AW: Anfrage Wartung – Angebot 2024-117\n\n{OUTLOOK_TEXT}"


OUTLOOK_TEXT = (
    "Sehr geehrte Damen und Herren,\n\n"
    "anbei unser Angebot „2024-117“ für die Wartung – gültig bis 30.06.\n\n"
    "Mit freundlichen Grüßen\nHans Müller\n\n"
    "Von: Einkauf <einkauf@kunde.example>\nGesendet: Montag, 20. Mai 2024 16:41\n"
    "An: Müller, Hans <hans.mueller@firma.example>\nBetreff: Anfrage Wartung\n\n"
    "Bitte senden Sie uns ein Angebot per Fax."
)


def test_outlook_html_reads_like_its_plain_text() -> None:
    parsed = email.message_from_bytes(
        corpus("outlook-html-signature.eml"), policy=email.policy.default
    )
    assert isinstance(parsed, EmailMessage)
    html = next(part for part in parsed.walk() if part.get_content_type() == "text/html")
    assert isinstance(html, EmailMessage)
    assert tidy_text(html_to_text(html.get_content())) == OUTLOOK_TEXT


def test_gmail_html_alone_gives_the_same_body() -> None:
    parsed = email.message_from_bytes(corpus("gmail-alternative.eml"), policy=email.policy.default)
    html = next(part for part in parsed.walk() if part.get_content_type() == "text/html")
    assert isinstance(html, EmailMessage)
    assert tidy_text(cut_signature(html_to_text(html.get_content()))) == (
        "Dear Dr. Smith,\n\nPlease find attached the referral for Mrs. Alvarez and a photo of "
        "the signed consent form.\n\nBest regards,\nJane"
    )


def test_an_empty_plain_alternative_gives_way_to_the_html() -> None:
    raw = (
        f"From: a@example.com\nTo: {FAX}\nSubject: Note\nMIME-Version: 1.0\n"
        'Content-Type: multipart/alternative; boundary="A"\n\n'
        "--A\nContent-Type: text/plain\n\n \n"
        "--A\nContent-Type: text/html\n\n<p>Call me <b>today</b>.</p>\n--A--\n"
    ).encode()
    assert fax_content(raw, recipient=FAX).documents[0].content == b"Call me today.\n"


def test_the_cover_mode_may_be_given_as_the_settings_string() -> None:
    raw = mail(attachments=[("a.pdf", PDF)])
    assert fax_content(raw, recipient=FAX, cover="never").cover_message is None  # type: ignore[arg-type]


def test_outlook_rich_text_winmail_dat_is_refused_with_advice() -> None:
    reason = refusal(corpus("outlook-winmail-dat.eml"))
    assert reason.startswith("winmail.dat: Outlook sent the attachments in its own format")
    assert "send the message as HTML or plain text" in reason


def test_scanner_bare_pdf_on_one_long_line_without_a_name_extension() -> None:
    content = from_corpus("scanner-bare-pdf.eml")
    assert kinds(content) == [("Scan_20240521_093012.pdf", "application/pdf")]
    assert sha256(content.documents[0].content) == "39064bd88653a4ed"
    assert "Scan" in pdf_text(content.documents[0])
    assert (content.cover_to, content.cover_from, content.cover_message) == (None, None, None)
    assert content.subject == "Scanned from MFP-3F"
    assert content.message_id is None
    assert content.skipped == []


def test_scanner_with_cover_always_names_the_scanner() -> None:
    content = from_corpus("scanner-bare-pdf.eml", CoverMode.ALWAYS)
    assert content.cover_to is None  # the To header gives no name
    assert content.cover_from == "MFP-3F Copy Room"
    assert content.cover_message == "Scanned from MFP-3F"


def test_scanner_tiff_pages_are_faxed_however_small() -> None:
    content = from_corpus("scanner-tiff-octet-stream.eml")
    assert kinds(content) == [("DOC001.TIF", "image/tiff"), ("DOC002.TIF", "image/tiff")]
    assert [sha256(document.content) for document in content.documents] == [
        "ed1ac6fb1468ff58",
        "292c216ea5c58cf0",
    ]
    assert content.cover_message is None  # the empty text part is no body
    assert content.skipped == []


def test_forwarded_message_gives_its_attachment_not_its_text() -> None:
    content = from_corpus("forwarded-rfc822.eml")
    assert kinds(content) == [("consent-form.pdf", "application/pdf")]
    assert "Consent form" in pdf_text(content.documents[0])
    # the To header writes the number with "+": still the fax recipient
    assert content.cover_to == "Records Office"
    assert content.cover_message == "Fwd: Signed consent\n\nPlease file the consent below."


def test_non_ascii_file_names_rfc2231_and_rfc2047() -> None:
    content = from_corpus("rfc2231-names.eml")
    assert kinds(content) == [
        ("Überweisung – März.pdf", "application/pdf"),
        ("Kündigung Mietvertrag Straße des 17. Juni.docx", DOCX_TYPE),
        ("Zählerstand.txt", "text/plain"),
    ]
    assert "Ueberweisung" in pdf_text(content.documents[0])
    with zipfile.ZipFile(io.BytesIO(content.documents[1].content)) as docx:
        assert b"Kuendigung" in docx.read("word/document.xml")
    assert content.documents[2].content == "Zählerstand: 4711\r\nAblesung: 21.05.2024\r\n".encode()
    assert content.subject == "Unterlagen für März"


def test_quoted_printable_latin1_body_with_windows_1252_characters() -> None:
    content = from_corpus("latin1-quoted-printable.eml")
    assert kinds(content) == [("facture-2024-0042.pdf", "application/pdf")]
    assert content.cover_to == "Service comptabilité"
    assert content.cover_from == "Céline Dupré"
    assert content.cover_message == (
        "Facture n° 2024-0042\n\nBonjour,\n\nVeuillez trouver ci-joint la facture n° 2024-0042 "
        "d’un montant de 1 250,00 €.\nMerci de la transmettre à la comptabilité.\n\n"
        "Cordialement,\nCéline Dupré"
    )


def test_html_only_message_is_faxed_as_its_text() -> None:
    content = from_corpus("html-only-windows-1252.eml")
    assert kinds(content) == [("message.txt", "text/plain")]
    assert content.documents[0].content.decode() == (
        "Dear tenant,\n\nThe water will be off on Friday – 9:00 to 12:00. We’re sorry for the "
        "trouble.\n- Fill a kettle\n- Don’t run the dishwasher\n\nBuilding management\n"
    )
    assert content.cover_message is None


def test_shift_jis_body_subject_names_and_file_name() -> None:
    content = from_corpus("shift-jis.eml")
    assert kinds(content) == [("見積書.pdf", "application/pdf")]
    assert content.subject == "お見積りの件"
    assert content.cover_to == "山田様"
    assert content.cover_from == "田中太郎"
    # the signature after "--" is cut
    assert (
        content.cover_message
        == "お見積りの件\n\n山田様\n\nお見積りをお送りいたします。\nご確認ください。"
    )


def test_zip_attachment_refuses_the_message_and_lists_what_is_accepted() -> None:
    reason = refusal(corpus("zip-attachment.eml"))
    assert reason == f"contracts.zip: .zip files cannot be faxed; accepted are {accepted_list()}"


def test_message_with_nothing_to_fax_is_refused_saying_so() -> None:
    reason = refusal(corpus("nothing-to-fax.eml"), CoverMode.ALWAYS)
    assert reason == (
        "there is nothing to fax: the message has no attachment and no text\n"
        "small image image001.png not faxed"
    )


def test_body_only_message_is_faxed_as_a_text_page() -> None:
    content = from_corpus("body-only.eml")
    assert kinds(content) == [("message.txt", "text/plain")]
    assert content.documents[0].content.decode("utf-8") == (
        "Hello,\n\nplease refill the prescription for Chris Park (DOB 1980-02-11):\n"
        "Lisinopril 10 mg, 90 tablets.\n\n> On Wed, Pharmacy wrote:\n"
        "> We need a written request.\n\nThank you\n"
    )
    assert (content.cover_to, content.cover_from, content.cover_message) == (None, None, None)


def test_body_only_message_with_cover_always_does_not_repeat_the_body() -> None:
    content = from_corpus("body-only.eml", CoverMode.ALWAYS)
    assert kinds(content) == [("message.txt", "text/plain")]
    assert content.cover_to == "Pharmacy"
    assert content.cover_from == "Chris Park"
    assert content.cover_message == "Prescription refill request"


@pytest.mark.parametrize("mode", list(CoverMode))
def test_x_fax_cover_no_turns_the_cover_page_off(mode: CoverMode) -> None:
    content = from_corpus("no-cover-header.eml", mode)
    assert kinds(content) == [("statement-april.pdf", "application/pdf")]
    assert (content.cover_to, content.cover_from, content.cover_message) == (None, None, None)
    assert content.skipped == ["the message text was not faxed (no cover page)"]


def test_missing_end_boundary_still_gives_the_attachment() -> None:
    content = from_corpus("broken-missing-end-boundary.eml")
    assert kinds(content) == [("order-form.pdf", "application/pdf")]
    assert "Order form" in pdf_text(content.documents[0])
    assert content.cover_message == "Order form\n\nOrder form attached."


REFUSED_IN_CORPUS = {"outlook-winmail-dat.eml", "zip-attachment.eml", "nothing-to-fax.eml"}


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.eml")), ids=lambda path: path.name)
@pytest.mark.parametrize("mode", list(CoverMode))
def test_every_corpus_message_is_faxed_or_refused_in_every_mode(
    path: Path, mode: CoverMode
) -> None:
    if path.name in REFUSED_IN_CORPUS:
        refusal(path.read_bytes(), mode)
        return
    content = fax_content(path.read_bytes(), recipient=FAX, cover=mode)
    assert content.documents
    if mode is CoverMode.NEVER:
        assert (content.cover_to, content.cover_from, content.cover_message) == (None, None, None)


# --- Cover modes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "body", "with_pdf", "cover_message", "documents"),
    [
        (CoverMode.ALWAYS, "Hi Bob", True, "Contract\n\nHi Bob", ["a.pdf"]),
        (CoverMode.WHEN_BODY, "Hi Bob", True, "Contract\n\nHi Bob", ["a.pdf"]),
        (CoverMode.NEVER, "Hi Bob", True, None, ["a.pdf"]),
        (CoverMode.ALWAYS, None, True, "Contract", ["a.pdf"]),
        (CoverMode.WHEN_BODY, None, True, None, ["a.pdf"]),
        (CoverMode.NEVER, None, True, None, ["a.pdf"]),
        (CoverMode.ALWAYS, "Hi Bob", False, "Contract", ["message.txt"]),
        (CoverMode.WHEN_BODY, "Hi Bob", False, None, ["message.txt"]),
        (CoverMode.NEVER, "Hi Bob", False, None, ["message.txt"]),
        # a body that is only a signature is no body
        (CoverMode.WHEN_BODY, "\n-- \nAlice\n", True, None, ["a.pdf"]),
    ],
)
def test_cover_modes(
    mode: CoverMode,
    body: str | None,
    with_pdf: bool,
    cover_message: str | None,
    documents: list[str],
) -> None:
    raw = mail(body=body, attachments=[("a.pdf", PDF)] if with_pdf else [])
    content = fax_content(raw, recipient=FAX, cover=mode)
    assert content.cover_message == cover_message
    assert [document.name for document in content.documents] == documents
    cover_on = cover_message is not None
    assert content.cover_to == ("Bob Receiver" if cover_on else None)
    assert content.cover_from == ("Alice Sender" if cover_on else None)
    text_dropped = body == "Hi Bob" and with_pdf and mode is CoverMode.NEVER
    notes = ["the message text was not faxed (no cover page)"] if text_dropped else []
    assert content.skipped == notes


@pytest.mark.parametrize(
    ("value", "cover_off"),
    [("no", True), ("No", True), ("off", True), ("false", True), ("yes", False), ("", False)],
)
def test_x_fax_cover_values(value: str, cover_off: bool) -> None:
    raw = mail(attachments=[("a.pdf", PDF)], headers={"X-Fax-Cover": value})
    content = fax_content(raw, recipient=FAX, cover=CoverMode.ALWAYS)
    assert (content.cover_message is None) is cover_off


def test_the_body_is_faxed_once_with_the_text_page() -> None:
    content = fax_content(mail(body="Only text"), recipient=FAX, cover=CoverMode.ALWAYS)
    assert content.documents == [MailDocument("message.txt", b"Only text\n", "text/plain")]
    assert content.cover_message == "Contract"


def test_the_cover_message_is_capped_at_a_word() -> None:
    body = "word " * 1000
    content = fax_content(mail(body=body, attachments=[("a.pdf", PDF)]), recipient=FAX)
    assert content.cover_message is not None
    assert len(content.cover_message) <= MAX_COVER_MESSAGE_CHARS
    assert content.cover_message.endswith("word…")
    # the text page is not capped
    page = fax_content(mail(body=body), recipient=FAX).documents[0]
    assert page.content == ("word " * 999 + "word\n").encode()


@pytest.mark.parametrize(
    ("to", "cc", "recipient", "cover_to"),
    [
        (f"Bob <{FAX}>", None, FAX, "Bob"),
        ("Someone <a@example.com>", f"Fax Desk <{FAX.upper()}>", FAX, "Fax Desk"),
        (f"Bob <{FAX}>, Carol <15105550111@fax.local>", None, "15105550111@fax.local", "Carol"),
        (f"Bob <+{FAX}>", None, FAX, "Bob"),  # the same number written with "+"
        (f"Bob <{FAX}>", None, "15105550111@fax.local", None),
        (f"Bob <{FAX}>", None, "14155550100@other.local", None),
        (f'"{FAX}" <{FAX}>', None, FAX, None),  # Outlook repeats the address
        (f"14155550100 <{FAX}>", None, FAX, None),
        (FAX, None, FAX, None),
    ],
)
def test_cover_to_is_the_name_the_message_gives_the_fax_address(
    to: str, cc: str | None, recipient: str, cover_to: str | None
) -> None:
    raw = mail(attachments=[("a.pdf", PDF)], to=to, headers={"Cc": cc} if cc else None)
    assert fax_content(raw, recipient=recipient, cover=CoverMode.ALWAYS).cover_to == cover_to


@pytest.mark.parametrize(
    ("sender", "cover_from"),
    [
        ("Alice Sender <alice@example.com>", "Alice Sender"),
        ("alice@example.com", "alice@example.com"),
        ("\"'alice@example.com'\" <alice@example.com>", "alice@example.com"),  # Outlook
        ("=?utf-8?q?Ren=C3=A9e?= <r@example.com>", "Renée"),
    ],
)
def test_cover_from_is_the_senders_name_else_address(sender: str, cover_from: str) -> None:
    raw = mail(attachments=[("a.pdf", PDF)], sender=sender)
    assert fax_content(raw, recipient=FAX, cover=CoverMode.ALWAYS).cover_from == cover_from


# --- Attachments, one rule at a time ---------------------------------------------------


def test_attachments_keep_their_order_and_get_unique_names() -> None:
    raw = mail(
        attachments=[("scan.pdf", PDF), ("notes.txt", b"hello"), ("scan.pdf", PDF)],
    )
    content = fax_content(raw, recipient=FAX)
    assert [document.name for document in content.documents] == [
        "scan.pdf",
        "notes.txt",
        "scan (2).pdf",
    ]
    assert content.documents[0].content == PDF


@pytest.mark.parametrize(
    ("attachments", "reasons"),
    [
        ([("setup.exe", b"MZ\x90\x00")], [".exe files cannot be faxed; accepted are PDF"]),
        ([("fake.pdf", b"<html>")], ["fake.pdf: the file does not look like a PDF"]),
        (
            [("a.zip", b"PK\x03\x04"), ("ok.pdf", PDF), ("b.exe", b"MZ")],
            ["a.zip: .zip files", "b.exe: .exe files"],
        ),
    ],
)
def test_attachments_that_cannot_be_faxed_refuse_the_message(
    attachments: list[tuple[str, bytes]], reasons: list[str]
) -> None:
    reason = refusal(mail(attachments=attachments))
    assert len(reason.splitlines()) == len(reasons)
    for line, expected in zip(reason.splitlines(), reasons, strict=True):
        assert expected in line


def test_unnamed_attachments_are_named_from_their_type_or_content() -> None:
    pdf_by_type = f"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n{b64(PDF)}"
    pdf_by_content = (
        f"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n{b64(PDF)}"
    )
    name_without_extension = (
        'Content-Type: image/tiff; name="page 2.33"\nContent-Transfer-Encoding: base64\n\n'
        + b64(b"II*\x00" + bytes(100))
    )
    raw = multipart(pdf_by_type, pdf_by_content, name_without_extension)
    content = fax_content(raw, recipient=FAX)
    assert kinds(content) == [
        ("attachment-1.pdf", "application/pdf"),
        ("attachment-2.pdf", "application/pdf"),
        ("page 2.33.tif", "image/tiff"),
    ]
    unknown = multipart(pdf_by_type, "Content-Type: application/octet-stream\n\nnot a document")
    assert refusal(unknown) == (
        "a part of the message without a name (a file of an unknown kind) cannot be faxed; "
        f"accepted are {accepted_list()}"
    )


def test_names_lose_their_folders_and_control_characters() -> None:
    raw = multipart(
        'Content-Type: application/pdf; name="C:\\\\Users\\\\bob\\\\Desktop\\\\scan.pdf"\n'
        f"Content-Transfer-Encoding: base64\n\n{b64(PDF)}",
        'Content-Type: application/pdf\nContent-Disposition: attachment; filename="../a\tb.pdf."\n'
        f"Content-Transfer-Encoding: base64\n\n{b64(PDF)}",
    )
    content = fax_content(raw, recipient=FAX)
    assert [document.name for document in content.documents] == ["scan.pdf", "a b.pdf"]


def test_a_part_that_cannot_be_decoded_is_a_refusal_with_a_reason() -> None:
    damaged = multipart(
        "Content-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: base64\n\n"
        "JVBERi0xL"  # one character too many for base64 to mean anything
    )
    assert refusal(damaged) == "a.pdf: its base64 encoding is damaged and it could not be decoded"
    unknown = multipart(
        "Content-Type: application/pdf; name=b.pdf\nContent-Transfer-Encoding: x-binhex\n\n"
        "(This file must be converted with BinHex 4.0)"
    )
    assert refusal(unknown) == (
        "b.pdf: it is packed as BinHex, which faxgate cannot unpack; attach the file again as it is"
    )


def test_encrypted_messages_are_refused() -> None:
    raw = (
        f"From: a@example.com\nTo: {FAX}\nMIME-Version: 1.0\n"
        'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary=E\n\n'
        "--E\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n"
        "--E\nContent-Type: application/octet-stream\n\n-----BEGIN PGP MESSAGE-----\n--E--\n"
    ).encode()
    assert refusal(raw) == (
        "the message is encrypted (S/MIME or PGP) and faxgate cannot read it; send it unencrypted"
    )


def test_digital_signatures_and_body_trailers_are_dropped_and_contact_cards_noted() -> None:
    raw = multipart(
        "Content-Type: text/plain\n\nSigned and sealed.",
        f"Content-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: base64\n\n"
        f"{b64(PDF)}",
        "Content-Type: application/pkcs7-signature; name=smime.p7s\n"
        "Content-Transfer-Encoding: base64\n\nMIAGCSqGSIb3DQEHAqCAMIACAQEx",
        "Content-Type: text/x-vcard; name=alice.vcf\n\nBEGIN:VCARD\nEND:VCARD",
        "Content-Type: text/plain; name=ATT00001.txt\nContent-Disposition: attachment\n\n",
    )
    content = fax_content(raw, recipient=FAX)
    assert [document.name for document in content.documents] == ["a.pdf"]
    assert content.skipped == [
        "contact card alice.vcf not faxed",
    ]


@pytest.mark.parametrize(
    ("image", "disposition", "content_id", "skipped"),
    [
        (png(200, 150, noise=True), "inline", "<logo@x>", "inline image"),
        (png(200, 150, noise=True), None, "<logo@x>", "inline image"),
        (png(200, 150, noise=True), "attachment", "<photo@x>", None),  # Outlook adds CIDs
        (png(200, 150, noise=True), "attachment", None, None),
        (png(200, 150, noise=True), "inline", None, None),
        (png(400, 300, noise=False), "attachment", None, "small image"),  # under 10 KB
        (png(2000, 40, noise=True), "attachment", None, "small image"),  # a banner
    ],
)
def test_logos_and_signature_images_are_not_faxed(
    image: bytes, disposition: str | None, content_id: str | None, skipped: str | None
) -> None:
    headers = "Content-Type: image/png; name=picture.png\nContent-Transfer-Encoding: base64\n"
    headers += f"Content-Disposition: {disposition}\n" if disposition else ""
    headers += f"Content-ID: {content_id}\n" if content_id else ""
    raw = multipart(
        f"Content-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: base64\n\n"
        f"{b64(PDF)}",
        headers + "\n" + b64(image),
    )
    content = fax_content(raw, recipient=FAX)
    names = [document.name for document in content.documents]
    if skipped:
        assert names == ["a.pdf"]
        assert content.skipped == [f"{skipped} picture.png not faxed"]
    else:
        assert names == ["a.pdf", "picture.png"]
        assert content.documents[1].content == image


def test_image_sizes_are_read_from_headers() -> None:
    assert image_size(png(321, 123, noise=False)) == (321, 123)
    gif = b"GIF89a" + struct.pack("<HH", 640, 48) + b"\x80\x00\x00"
    assert image_size(gif) == (640, 48)
    jpeg = (
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        + b"\xff\xfe\x00\x05abc"
        + b"\xff\xc2\x00\x11\x08"
        + struct.pack(">HH", 480, 640)
        + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    )
    assert image_size(jpeg) == (640, 480)
    assert image_size(b"\xff\xd8\xff\xe0\x00\x01") is None
    assert image_size(PDF) is None


def test_the_number_of_documents_is_limited() -> None:
    most = mail(attachments=[(f"p{n}.pdf", PDF) for n in range(MAX_FILES)])
    assert len(fax_content(most, recipient=FAX).documents) == MAX_FILES
    too_many = mail(attachments=[(f"p{n}.pdf", PDF) for n in range(MAX_FILES + 1)])
    assert refusal(too_many) == (
        f"{MAX_FILES + 1} documents are too many for one fax; the limit is {MAX_FILES}"
    )


def test_the_total_size_is_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    # the rule itself lives in documents.check_batch; a small limit keeps the test fast
    monkeypatch.setattr("faxgate.domain.documents.MAX_TOTAL_BYTES", 2 * len(PDF))
    fax_content(mail(attachments=[("a.pdf", PDF), ("b.pdf", PDF)]), recipient=FAX)
    reason = refusal(mail(attachments=[("a.pdf", PDF), ("b.pdf", PDF), ("c.txt", b"x")]))
    assert reason.startswith("the documents add up to")
    # a body faxed as a page counts too
    monkeypatch.setattr("faxgate.domain.documents.MAX_TOTAL_BYTES", 10)
    assert refusal(mail(body="more than ten bytes")).startswith("the documents add up to")


def test_body_charsets_fall_back_rather_than_fail() -> None:
    raw = (
        f"From: a@example.com\nTo: {FAX}\nSubject: x\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=x-no-such-charset\n"
        "Content-Transfer-Encoding: 8bit\n\n"
    ).encode() + "Caf\u00e9 \u2013 ok\n".encode("cp1252")
    content = fax_content(raw, recipient=FAX)
    assert content.documents[0].content == "Café – ok\n".encode()


@pytest.mark.parametrize("raw", [b"", b"\r\n", b"Subject: hello\r\n\r\n", b"Subject: x\n\n \n\t\n"])
def test_a_message_without_content_is_refused(raw: bytes) -> None:
    assert refusal(raw).startswith("there is nothing to fax")


def test_nesting_is_bounded() -> None:
    raw = "Content-Type: application/pdf; name=deep.pdf\nContent-Transfer-Encoding: base64\n\n"
    raw += b64(PDF)
    for depth in range(30):
        boundary = f"b{depth}"
        raw = f"Content-Type: multipart/mixed; boundary={boundary}\n\n--{boundary}\n{raw}\n"
        raw += f"--{boundary}--\n"
    reason = refusal(f"From: a@example.com\nTo: {FAX}\n{raw}".encode())
    assert reason in {
        "the message is nested too deeply to be read",
        "the message could not be read as an email",
    }


def test_a_multipart_without_a_boundary_is_refused() -> None:
    raw = f"From: a@example.com\nTo: {FAX}\nContent-Type: multipart/mixed\n\nstuff\n".encode()
    assert refusal(raw) == (
        "the message's structure is broken: one of its parts should hold several pieces, but "
        "the line that divides them (the MIME boundary) is missing; send it again, or from "
        "another mail program"
    )


# --- Text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi\n-- \nAlice", "Hi"),
        ("Hi\r\n--\r\nAlice", "Hi"),
        ("-- \nonly a signature", ""),
        ("Hi\n> -- \n> quoted sig stays", "Hi\n> -- \n> quoted sig stays"),
        ("a -- b", "a -- b"),
        ("---\nkept", "---\nkept"),
    ],
)
def test_cut_signature(text: str, expected: str) -> None:
    assert cut_signature(text) == expected


def test_tidy_text() -> None:
    text = "\n\n  Hello\t\tthere \u00a0 you  \n\n\n\nBye\x07 \u200bnow \n\n"
    assert tidy_text(text) == "Hello there you\n\nBye now"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>One</p><p>Two</p>", "One\nTwo"),
        ("<p>One</p><p>&nbsp;</p><p>Two</p>", "One\n\nTwo"),
        ("<div>One</div><div><br></div><div>Two</div>", "One\n\nTwo"),
        ("One<br>Two<br/><br>Three", "One\nTwo\n\nThree"),
        ("<ul><li>a</li><li>b &amp; c</li></ul>", "- a\n- b & c"),
        ("<head><title>T</title><style>p{}</style></head><body>Body</body>", "Body"),
        ("<head><style>x</style><body>Unclosed head</body>", "Unclosed head"),
        ("<script>alert(1)</script>Shown", "Shown"),
        ("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"),
        ("<!--[if mso]>hidden<![endif]-->Seen", "Seen"),
        ("Before<![bogus section", "Before"),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert tidy_text(html_to_text(html)) == text


# --- Nothing but MessageRefused, whatever arrives --------------------------------------


def fax_or_refuse(raw: bytes, cover: CoverMode) -> None:
    reason: str | None
    try:
        content = fax_content(raw, recipient=FAX, cover=cover)
    except MessageRefused as refused:
        reason = refused.reason
    else:
        reason = None
        assert content.documents
        for document in content.documents:
            assert document.name
            assert document.content
            assert document.content_type
        if content.cover_message is not None:
            assert len(content.cover_message) <= MAX_COVER_MESSAGE_CHARS
    assert reason is None or reason.strip()


FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SEEDS = sorted(path.name for path in CORPUS.glob("*.eml"))
SPLICES = [
    b"\n",
    b"\r\n",
    b"--",
    b"\n\n",
    b":",
    b";",
    b'"',
    b"=?utf-8?q?",
    b"?=",
    b"*0*=",
    b"\xff\xfe",
    b"\x00",
    b"Content-Type: multipart/mixed; boundary=",
    b"Content-Type: message/rfc822\n\n",
    b"Content-Transfer-Encoding: base64\n",
    b"charset=",
    b"<",
    b">",
    b"@",
]


@st.composite
def mutated_corpus_message(draw: st.DrawFn) -> bytes:
    raw = bytearray(corpus(draw(st.sampled_from(SEEDS))))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(raw)))
        action = draw(st.sampled_from(["splice", "delete", "byte", "truncate", "repeat"]))
        if action == "splice":
            raw[at:at] = draw(st.sampled_from(SPLICES))
        elif action == "delete":
            del raw[at : at + draw(st.integers(1, 64))]
        elif action == "byte":
            raw[at:at] = bytes([draw(st.integers(0, 255))])
        elif action == "truncate":
            del raw[at:]
        else:
            raw[at:at] = raw[at : at + draw(st.integers(1, 200))]
    return bytes(raw)


@FUZZ
@given(raw=st.binary(max_size=4000), cover=st.sampled_from(CoverMode))
def test_arbitrary_bytes_give_content_or_a_refusal(raw: bytes, cover: CoverMode) -> None:
    fax_or_refuse(raw, cover)


@FUZZ
@given(raw=mutated_corpus_message(), cover=st.sampled_from(CoverMode))
def test_mutated_corpus_messages_give_content_or_a_refusal(raw: bytes, cover: CoverMode) -> None:
    fax_or_refuse(raw, cover)


@FUZZ
@given(html=st.text(alphabet=st.sampled_from("<>/!-[]&;#x0 apbrdivscript=\"'\n"), max_size=300))
def test_html_to_text_never_fails(html: str) -> None:
    assert isinstance(html_to_text(html), str)


def test_a_header_is_parsed_once_and_a_huge_one_is_not_kept() -> None:
    headers = MAIL_POLICY.header_factory
    pdf = headers("Content-Type", 'application/pdf; name="a.pdf"')
    assert pdf is headers("Content-Type", 'application/pdf; name="a.pdf"')
    assert pdf.params["name"] == "a.pdf"
    huge = "word " * 1000  # parsed anew each time: a cache of such values would hold megabytes
    assert headers("Subject", huge) is not headers("Subject", huge)
    assert headers("Subject", huge) == huge


@pytest.mark.parametrize(
    "text", ["", "a", "\n", "\r", "\r\n", "a\r\n", "a\n\r", "a\n\n", "a\r\r\n", "\n\r\n"]
)
def test_the_parsers_line_end_at_the_end_is_found_as_the_standard_library_finds_it(
    text: str,
) -> None:
    # faxgate looks only at the end of a payload for it (the library scans all of it).
    line_end = email.feedparser.NLCRE_eol  # type: ignore[attr-defined]
    standard = re.compile(r"(\r\n|\r|\n)\Z").search(text)
    found = line_end.search(text)
    assert (found and found.group(0)) == (standard and standard.group(0))
    assert type(line_end).__name__ == "_LineEndAtTheEnd"
