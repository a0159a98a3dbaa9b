"""Mail as real mail programs write it, each form read as its sender meant it.

Each test reproduces one form met in the wild (an old PHP mailer's "8bits", an Exchange
meeting request, an iPhone contact card, a Korean file name...) and states the decision.
"""

from __future__ import annotations

import base64
import io
from email.header import decode_header, make_header

import pytest
from pypdf import PdfReader

from faxgate.domain.documents import accepted_list
from faxgate.domain.message import (
    CoverMode,
    FaxContent,
    MessageRefused,
    as_utf8,
    enriched_to_text,
    fax_content,
)
from faxgate.intake.smtp.policy import Refusal
from tests.conftest import pdf_document

FAX = "14155550100@fax.local"
PDF = pdf_document(2)


def read(raw: bytes, cover: CoverMode = CoverMode.WHEN_BODY) -> FaxContent:
    return fax_content(raw, recipient=FAX, cover=cover)


def refusal(raw: bytes) -> str:
    with pytest.raises(MessageRefused) as refused:
        read(raw)
    return refused.value.reason


def b64(data: bytes) -> str:
    return base64.encodebytes(data).decode()


def message(content_type: str, body: str, headers: str = "") -> bytes:
    head = f"From: Ann <ann@example.com>\nTo: {FAX}\nSubject: Test\n{headers}MIME-Version: 1.0\n"
    return (head + f"Content-Type: {content_type}\n\n{body}").encode()


def mixed(*parts: str, boundary: str = "MIX") -> bytes:
    body = "".join(f"--{boundary}\n{part}\n" for part in parts) + f"--{boundary}--\n"
    return message(f'multipart/mixed; boundary="{boundary}"', body)


def alternative_part(*parts: str, boundary: str = "ALT") -> str:
    body = "".join(f"--{boundary}\n{part}\n" for part in parts) + f"--{boundary}--\n"
    return f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n{body}'


def pdf_part(name: str = "contract.pdf", content: bytes = PDF) -> str:
    return (
        f'Content-Type: application/pdf; name="{name}"\nContent-Transfer-Encoding: base64\n'
        f'Content-Disposition: attachment; filename="{name}"\n\n{b64(content)}'
    )


def body_text(content: FaxContent) -> str:
    (document,) = content.documents
    assert document.name == "message.txt"
    return document.content.decode()


# --- Transfer encodings ----------------------------------------------------------------


def test_a_misspelt_transfer_encoding_from_an_old_mailer_is_read_as_8bit() -> None:
    # Old Ruby and PHP mailers write "8bits"; some PHP scripts "plain".
    for encoding in ("8bits", "plain", "8-bit", "7-bit"):
        raw = message(
            "text/plain; charset=utf-8",
            "Bitte faxen: Lieferschein Nr. 42, Grüße\n",
            headers=f"Content-Transfer-Encoding: {encoding}\n",
        )
        assert body_text(read(raw)) == "Bitte faxen: Lieferschein Nr. 42, Grüße\n"


def test_an_attachment_under_a_misspelt_encoding_is_faxed_as_it_is() -> None:
    raw = mixed(
        "Content-Type: text/plain\n\nThe order.",
        'Content-Type: text/plain; name="order.txt"\nContent-Transfer-Encoding: 8bits\n'
        'Content-Disposition: attachment; filename="order.txt"\n\n12 boxes of paper\n',
    )
    content = read(raw)
    assert [(d.name, d.content) for d in content.documents] == [
        ("order.txt", b"12 boxes of paper\n")
    ]


# --- Contact cards, calendars, certificates ---------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/vcard", "application/x-vcard", "text/vcard", "application/octet-stream"],
)
def test_a_contact_card_in_any_registered_spelling_is_skipped(content_type: str) -> None:
    # iPhone and Android share a contact as application/vcard (RFC 6350's registered type).
    raw = mixed(
        "Content-Type: text/plain\n\nHere is the number of the pharmacy.",
        f'Content-Type: {content_type}; name="Pharmacy.vcf"\n'
        'Content-Disposition: attachment; filename="Pharmacy.vcf"\n\n'
        "BEGIN:VCARD\nVERSION:3.0\nFN:Pharmacy\nTEL:+14155550100\nEND:VCARD\n",
    )
    content = read(raw)
    assert body_text(content).startswith("Here is the number of the pharmacy.")
    assert content.skipped == ["contact card Pharmacy.vcf not faxed"]


def test_a_certificate_sent_along_is_not_called_encryption() -> None:
    # Outlook sends the sender's certificate as smime.p7c, S/MIME "certs-only".
    raw = mixed(
        "Content-Type: text/plain\n\nMy new certificate is attached.",
        pdf_part(),
        'Content-Type: application/pkcs7-mime; smime-type=certs-only; name="smime.p7c"\n'
        "Content-Transfer-Encoding: base64\n"
        'Content-Disposition: attachment; filename="smime.p7c"\n\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\n',
    )
    content = read(raw)
    assert [d.name for d in content.documents] == ["contract.pdf"]
    assert content.skipped == []


def test_opaque_signed_and_encrypted_smime_are_told_apart() -> None:
    signed = message(
        'application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"',
        "MIAGCSqGSIb3DQEHAqCAMIACAQEx\n",
        headers="Content-Transfer-Encoding: base64\n",
    )
    assert "signed in a form faxgate cannot open" in refusal(signed)
    sealed = message(
        'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"',
        "MIAGCSqGSIb3DQEHA6CAMIACAQAx\n",
        headers="Content-Transfer-Encoding: base64\n",
    )
    assert refusal(sealed).startswith("the message is encrypted")
    inline_pgp = message(
        "text/plain", "-----BEGIN PGP MESSAGE-----\n\nhQEMA5...\n-----END PGP MESSAGE-----\n"
    )
    assert refusal(inline_pgp).startswith("the message is encrypted")


# --- Broken structure -------------------------------------------------------------------


def test_an_alternative_whose_boundary_never_appears_is_refused_not_emptied() -> None:
    # A mailer that names one boundary and writes another: the text would be lost.
    inner = (
        'Content-Type: multipart/alternative; boundary="inner-declared"\n\n'
        "--inner-written\nContent-Type: text/plain\n\nThe text that would be lost.\n"
        "--inner-written--\n"
    )
    raw = mixed(inner, pdf_part())
    reason = refusal(raw)
    assert reason.startswith("the message's structure is broken:")
    assert "never appears" in reason


def test_broken_alternative_and_broken_mixed_are_worded_alike() -> None:
    def top(kind: str) -> bytes:
        return message(f'multipart/{kind}; boundary="declared"', "--other\n\nText\n--other--\n")

    assert refusal(top("alternative")) == refusal(top("mixed"))
    assert refusal(top("alternative")).startswith("the message's structure is broken:")


# --- Alternatives: the best form faxgate can fax ----------------------------------------


def test_an_exchange_meeting_request_faxes_its_text() -> None:
    raw = message(
        'multipart/alternative; boundary="_000_meeting"',
        "--_000_meeting\nContent-Type: text/plain; charset=us-ascii\n\n"
        "When: Monday 10:00. Where: Room 4. Please fax the agenda to the clinic.\n"
        "--_000_meeting\nContent-Type: text/html; charset=us-ascii\n\n"
        "<html><body><p>When: Monday 10:00.</p></body></html>\n"
        "--_000_meeting\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\n"
        "Content-Transfer-Encoding: base64\n\n"
        + b64(b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n")
        + "--_000_meeting--\n",
    )
    content = read(raw)
    assert body_text(content).startswith("When: Monday 10:00. Where: Room 4.")
    assert content.skipped == [
        "the meeting invitation (calendar entry) not faxed",
    ]


def test_an_invite_ics_beside_the_meeting_is_noted_not_refused() -> None:
    raw = mixed(
        alternative_part("Content-Type: text/plain\n\nTeam meeting on Monday."),
        'Content-Type: application/ics; name="invite.ics"\n'
        'Content-Disposition: attachment; filename="invite.ics"\n\n'
        "BEGIN:VCALENDAR\nEND:VCALENDAR\n",
    )
    content = read(raw)
    assert body_text(content).startswith("Team meeting on Monday.")
    assert content.skipped == ["meeting invitation invite.ics not faxed"]


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("text/enriched", "<bold>Please</bold> fax the <italic>form</italic>.\n"),
        ("text/richtext", "<bold>Please</bold> fax the form.<nl>\n"),
        ("application/postscript", "%!PS-Adobe-3.0\n/Times-Roman findfont\nshowpage\n"),
    ],
)
def test_a_rich_alternative_beside_plain_text_faxes_the_plain_text(
    content_type: str, content: str
) -> None:
    # Eudora and NeXTMail sent text/enriched or richtext beside the plain text; some
    # Unix mailers PostScript.
    raw = message(
        'multipart/alternative; boundary="A"',
        f"--A\nContent-Type: text/plain\n\nPlease fax the form.\n"
        f"--A\nContent-Type: {content_type}\n\n{content}--A--\n",
    )
    content_read = read(raw)
    assert body_text(content_read) == "Please fax the form.\n"
    if content_type == "application/postscript":
        assert content_read.skipped == [
            "the PostScript form of the message not faxed; the same message as text was"
        ]


def test_enriched_text_alone_is_read_as_text() -> None:
    raw = message("text/enriched", "<bold>Hello</bold>\n\nthe <<price> list\nfollows\n")
    assert body_text(read(raw)) == "Hello\nthe <price> list follows\n"
    assert enriched_to_text("a<param>x</param>b") == "ab"


def test_an_alternative_no_form_of_which_can_be_faxed_is_refused_with_the_reason() -> None:
    raw = message(
        'multipart/alternative; boundary="A"',
        "--A\nContent-Type: application/postscript\n\n%!PS-Adobe-3.0\nshowpage\n"
        "--A\nContent-Type: application/x-dvi\n\n\xf7\x02\n--A--\n",
    )
    reason = refusal(raw)
    assert reason == (
        "a part of the message without a name (a file of an unknown kind) cannot be faxed; "
        f"accepted are {accepted_list()}"
    )
    assert "application/" not in reason


# --- Text attachments in other charsets -------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "encoded"),
    [
        ("iso-8859-1", "Grüße aus Köln, 12 °C".encode("latin-1")),
        ("windows-1252", "Price: 12 € – “final”".encode("cp1252")),
        ("utf-16", "Zählerstand 4711 ✓".encode("utf-16")),
        ("utf-16le", "Zählerstand 4711 ✓".encode("utf-16-le")),
    ],
)
def test_a_text_attachment_in_another_charset_is_handed_on_in_utf8(
    charset: str, encoded: bytes
) -> None:
    raw = mixed(
        "Content-Type: text/plain\n\nThe reading.",
        f'Content-Type: text/plain; charset="{charset}"; name="reading.txt"\n'
        "Content-Transfer-Encoding: base64\n"
        f'Content-Disposition: attachment; filename="reading.txt"\n\n{b64(encoded)}',
    )
    (document,) = read(raw).documents
    assert document.name == "reading.txt"
    assert document.content.startswith(b"\xef\xbb\xbf")  # declared: UTF-8
    assert document.content[3:].decode("utf-8") == encoded.decode(
        "cp1252" if charset == "iso-8859-1" else charset
    )


def test_an_html_attachment_in_windows_1252_is_handed_on_in_utf8_saying_so() -> None:
    page = (
        b'<html><head><meta http-equiv="Content-Type" content="text/html; '
        b'charset=windows-1252"><title>Invoice</title></head>'
        b"<body><p>Total: 80 \x80</p></body></html>"
    )
    raw = mixed(
        "Content-Type: text/plain\n\nThe invoice.",
        'Content-Type: text/html; name="invoice.htm"\nContent-Transfer-Encoding: base64\n'
        f'Content-Disposition: attachment; filename="invoice.htm"\n\n{b64(page)}',
    )
    (document,) = read(raw).documents
    assert document.content.decode("utf-8") == (
        '<html><head><meta charset="utf-8"><title>Invoice</title></head>'
        "<body><p>Total: 80 €</p></body></html>"
    )


def test_utf8_text_is_handed_on_byte_for_byte() -> None:
    assert as_utf8("naïve".encode(), "utf-8", html=False) == "naïve".encode()
    assert as_utf8(b"plain ascii", None, html=False) == b"plain ascii"
    assert as_utf8(b"\xff\xfeh\x00i\x00", None, html=False) == b"\xef\xbb\xbfhi"


# --- PDFs -------------------------------------------------------------------------------


def test_a_truncated_pdf_is_refused_before_it_is_taken() -> None:
    cut = PDF[: len(PDF) * 2 // 3]  # a send cut short, a download not finished
    reason = refusal(mixed("Content-Type: text/plain\n\nThe contract.", pdf_part("cut.pdf", cut)))
    assert reason == (
        "cut.pdf: the PDF is incomplete (it was cut off when saved or sent); send the whole file"
    )


def test_a_damaged_pdf_is_refused_with_the_reason() -> None:
    damaged = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< >>\n%%EOF\n"
    reason = refusal(mixed(pdf_part("scan.pdf", damaged)))
    assert reason == (
        "scan.pdf: the PDF is damaged and cannot be opened; save it again and send it"
    )


def test_a_pdf_with_bytes_after_its_end_is_still_faxed() -> None:
    # Some scanners pad the file; readers (and the provider) read it all the same.
    padded = PDF + b"\0" * 4096 + b"% scanner padding " * 100
    (document,) = read(mixed(pdf_part("scan.pdf", padded))).documents
    assert document.content == padded
    assert len(PdfReader(io.BytesIO(document.content)).pages) == 2


# --- Bounces and report parts -----------------------------------------------------------


def bounce(report_type: str, report_part: str) -> bytes:
    return message(
        f'multipart/report; report-type={report_type}; boundary="R"',
        "--R\nContent-Type: text/plain\n\nThis is the mail system at host mx.example.com.\n"
        f"--R\nContent-Type: {report_part}\n\nReporting-MTA: dns; mx.example.com\n\n"
        "Final-Recipient: rfc822; bob@example.org\nAction: failed\nStatus: 5.1.1\n"
        "--R\nContent-Type: message/rfc822\n\nFrom: a@example.com\nSubject: x\n\nhello\n"
        "--R--\n",
    )


@pytest.mark.parametrize(
    ("report_type", "part", "words"),
    [
        ("delivery-status", "message/delivery-status", "a delivery report (a bounce)"),
        ("disposition-notification", "message/disposition-notification", "a read receipt"),
        ("feedback-report", "message/feedback-report", "a spam or abuse report"),
    ],
)
def test_a_bounce_or_report_is_refused_as_what_it_is(
    report_type: str, part: str, words: str
) -> None:
    assert refusal(bounce(report_type, part)) == (
        f"the message is {words} from a mail system, not a document to fax"
    )


def test_a_forwarded_bounce_keeps_its_report_parts_out_of_the_fax() -> None:
    forwarded = bounce("delivery-status", "message/delivery-status").decode()
    raw = mixed(
        "Content-Type: text/plain\n\nThis bounced, please fax it to the office instead.",
        f"Content-Type: message/rfc822\n\n{forwarded}",
    )
    content = read(raw)
    assert body_text(content).startswith("This bounced")


def test_a_split_message_and_an_external_body_say_what_to_do() -> None:
    partial = message('message/partial; id="abc@host"; number=1; total=3', "From: a@b\n\npart\n")
    assert refusal(partial) == (
        "the message is one piece of a message your mail program split in several, which "
        "faxgate cannot put together; send it again in one piece"
    )
    external = mixed(
        "Content-Type: text/plain\n\nSee the file.",
        'Content-Type: message/external-body; access-type=URL; URL="ftp://x/y.pdf"; '
        'name="y.pdf"\n\nContent-Type: application/pdf\n\n',
    )
    assert refusal(external) == (
        "y.pdf is not in the message: the mail program only pointed to where it is kept; "
        "attach the file itself"
    )


# --- Refusals a person can act on -------------------------------------------------------


def test_several_reasons_one_a_line() -> None:
    raw = mixed(
        'Content-Type: application/zip; name="a.zip"\n\nPK\x03\x04',
        'Content-Type: application/x-msdownload; name="setup.exe"\n\nMZ',
    )
    reply = str(Refusal(554, "5.6.0", refusal(raw), "unfaxable"))
    assert reply.split("\r\n") == [
        f"554-5.6.0 a.zip: .zip files cannot be faxed; accepted are {accepted_list()}",
        f"554 5.6.0 setup.exe: .exe files cannot be faxed; accepted are {accepted_list()}",
    ]


def test_a_non_latin_file_name_is_kept_whole_in_the_reply() -> None:
    raw = mixed(
        "Content-Type: application/zip; name*=UTF-8''%EC%82%AC%EC%A7%84.zip\n\nPK\x03\x04",
        'Content-Type: application/zip; name="=?UTF-8?B?0YHRh9C10YIuemlw?="\n\nPK\x03\x04',
        'Content-Type: application/zip; name="Müller.zip"\n\nPK\x03\x04',
    )
    reason = refusal(raw)
    assert reason.splitlines()[0].startswith("사진.zip: ")
    assert reason.splitlines()[1].startswith("счет.zip: ")
    reply = str(Refusal(554, "5.6.0", reason, "unfaxable"))
    assert reply.isascii()
    first, second, third = reply.split("\r\n")
    assert first.startswith("554-5.6.0 =?UTF-8?B?")
    assert decoded(first.split(" ")[1]) == "사진.zip:"
    assert decoded(second.split(" ")[1]) == "счет.zip:"
    assert third.startswith("554 5.6.0 Muller.zip: ")


def decoded(word: str) -> str:
    return str(make_header(decode_header(word)))


# --- Noise pages ------------------------------------------------------------------------


def test_exchange_body_pieces_are_the_body_not_documents() -> None:
    # Exchange appends its disclaimer after an attachment as ATT00001.htm / ATT00002.txt.
    raw = mixed(
        "Content-Type: text/plain\n\nPlease see the attached letter.",
        pdf_part("letter.pdf"),
        'Content-Type: text/html; charset="us-ascii"; name="ATT00001.htm"\n'
        'Content-Disposition: attachment; filename="ATT00001.htm"\n\n'
        "<html><body><p>This e-mail is confidential.</p></body></html>\n",
        'Content-Type: text/plain; charset="us-ascii"; name="ATT00002.txt"\n'
        'Content-Disposition: attachment; filename="ATT00002.txt"\n\n',
    )
    content = read(raw)
    assert [d.name for d in content.documents] == ["letter.pdf"]
    assert content.skipped == []
    assert content.cover_message == (
        "Test\n\nPlease see the attached letter.\n\nThis e-mail is confidential."
    )


def test_mdaemon_html_pieces_are_the_body_not_documents() -> None:
    raw = mixed(
        'Content-Type: text/html; name="att1.htm"\nContent-Disposition: inline; filename="att1.htm"'
        "\n\n<p>Fax to the lab, please.</p>",
        pdf_part("results.pdf"),
    )
    content = read(raw)
    assert [d.name for d in content.documents] == ["results.pdf"]
    assert content.cover_message == "Test\n\nFax to the lab, please."


def test_a_text_file_named_like_a_body_piece_but_not_att_is_a_document() -> None:
    raw = mixed(
        "Content-Type: text/plain\n\nThe notes.",
        'Content-Type: text/plain; name="attention.txt"\n'
        'Content-Disposition: attachment; filename="attention.txt"\n\nMind the gap.\n',
    )
    assert [d.name for d in read(raw).documents] == ["attention.txt"]


# --- Faults of real mail, mended as mail readers mend them ------------------------------


def test_an_outlook_express_boundary_left_unquoted_is_read_whole() -> None:
    raw = message(
        "multipart/alternative;\n\tboundary=----=_NextPart_000_0023_01C81419.EB75E850",
        "------=_NextPart_000_0023_01C81419.EB75E850\nContent-Type: text/plain\n\nHello\n"
        "------=_NextPart_000_0023_01C81419.EB75E850--\n",
    )
    assert body_text(read(raw)) == "Hello\n"


def test_unquoted_boundaries_deep_in_a_message_are_each_read_whole() -> None:
    # Outlook Express nests them: the outer boundary on the Content-Type line itself, an
    # inner one on a folded line after an attachment, the body after both.
    outer, inner = "----=_NextPart_000_0001_01C8.AAAA", "----=_NextPart_001_0002_01C8.BBBB"
    raw = message(
        f"multipart/mixed; boundary={outer}",
        f"--{outer}\n{pdf_part('first.pdf')}\n"
        f"--{outer}\nContent-Type: multipart/alternative;\n\tboundary={inner}\n\n"
        f"--{inner}\nContent-Type: text/plain\n\nHello\n--{inner}--\n"
        f"--{outer}\n{pdf_part('second.pdf')}\n--{outer}--\n",
    )
    content = read(raw)
    assert [d.name for d in content.documents] == ["first.pdf", "second.pdf"]
    assert content.cover_message == "Test\n\nHello"


def test_a_header_line_that_lost_its_fold_does_not_end_the_headers() -> None:
    raw = (
        f"From: ann@example.com\nTo: {FAX}\nX-Diagnostics: 1;AM4PR01\n"
        "P8FxVksOO2tmFWl+LxT0Acgv7RaCFBKF\nSubject: Order\nMIME-Version: 1.0\n"
        'Content-Type: multipart/alternative; boundary="A"\n\n'
        "--A\nContent-Type: text/plain\n\nThe order.\n--A--\n"
    ).encode()
    assert body_text(read(raw)) == "The order.\n"
    # A body without its blank line is still a body, not a header.
    no_blank = f"From: ann@example.com\nTo: {FAX}\nSubject: x\nHello there\nsecond line\n"
    assert "Hello there" in body_text(read(no_blank.encode()))


def test_a_message_saved_with_a_byte_order_mark_is_read() -> None:
    raw = b"\xef\xbb\xbf" + message("text/plain", "Fax me.\n")
    assert body_text(read(raw)) == "Fax me.\n"


def test_a_message_that_only_forwards_another_faxes_its_text() -> None:
    raw = mixed(
        "Content-Type: message/rfc822\n\nFrom: bob@example.com\nSubject: Results\n\n"
        "The results are attached to this note.\n"
    )
    assert body_text(read(raw)) == "The results are attached to this note.\n"


def test_a_plain_text_bounce_is_refused_as_one() -> None:
    raw = (
        "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n"
        f"To: {FAX}\nSubject: Delivery Status Notification (Failure)\n\n"
        "Delivery to the following recipient failed permanently.\n"
    ).encode()
    assert refusal(raw) == (
        "the message is a delivery report (a bounce) from a mail system, not a document to fax"
    )


def test_a_name_the_parser_drops_is_read_from_the_header() -> None:
    raw = mixed(
        "Content-Type: application/zip; name==?utf-8?B?VGhpcyBpcyBhIHRlc3QuemlwCg==?=\n"
        "Content-Disposition: attachment; filename==?utf-8?B?VGhpcyBpcyBhIHRlc3QuemlwCg==?=\n\n"
        "PK\x03\x04"
    )
    assert refusal(raw).startswith("This is a test.zip: .zip files cannot be faxed")
