"""Bad mail over a real SMTP socket: each message gets its documented answer (docs/email.md),
the daemon stays up, and good mail in the same session and in flight beside it goes through.

The small messages are the corpus in tests/corpus/bad/; the big ones (huge headers, 500
attachments, 200 levels of nesting, a zip bomb, 26 MB) and the PDFs made with pypdf (one
locked by a password) are made here at run time. What the
existing tests already prove is not repeated: refusals of zip attachments and undecodable
parts (tests/domain/test_message.py), the size limit on a small limit, long lines
(tests/intake/smtp/test_handler.py). The end of the file is a property test of the message reader
on generated MIME trees, where tests/domain/test_message.py mutates bytes.
"""

from __future__ import annotations

import asyncio
import base64
import io
import zipfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader, PdfWriter

from faxgate.app import Daemon
from faxgate.domain.documents import ACCEPTED_TYPES, MAX_FILES, MAX_TOTAL_BYTES
from faxgate.domain.jobs import Document, Job, JobState
from faxgate.domain.message import MAX_COVER_MESSAGE_CHARS, MessageRefused, fax_content
from tests.conftest import pdf_document
from tests.daemon import reports_delivered, settled
from tests.intake.smtp.testing import (
    FAX_DOMAIN,
    SENDER,
    RawSmtp,
    Reply,
    fax_mail,
    replies,
    smtp_client,
    smtp_daemon,
    smtp_port,
    spool_files,
    subject,
)

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "bad"
BAD_TO = f"14155550100@{FAX_DOMAIN}"
GOOD_TO = f"14155550111@{FAX_DOMAIN}"
IN_FLIGHT_TO = f"14155550122@{FAX_DOMAIN}"
DEFAULT_MAX_MESSAGE = 25 * 1024 * 1024
GOING = {JobState.QUEUED, JobState.SUBMITTING, JobState.SUBMITTED, JobState.TRANSMITTING}
GOING |= {JobState.SENT}
DOCX = ACCEPTED_TYPES[".docx"]


# ---------------------------------------------------------------------------- messages


def mime(
    *parts: bytes, headers: bytes = b"", boundary: bytes = b"XX", subject: bytes = b"Bad"
) -> bytes:
    """A multipart/mixed message from ready-made parts (headers, blank line, content)."""
    head = (
        b"From: Bad Input <bad@example.com>\r\nTo: 14155550100@fax.local\r\nSubject: "
        + subject
        + b"\r\n"
        + headers
        + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="'
        + boundary
        + b'"\r\n\r\n'
    )
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return head + body + b"--" + boundary + b"--\r\n"


def attachment(name: str, content: bytes, content_type: str = "application/pdf") -> bytes:
    return (
        f'Content-Type: {content_type}; name="{name}"\r\n'
        f'Content-Disposition: attachment; filename="{name}"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + base64.encodebytes(content)


def nested(depth: int) -> bytes:
    """A PDF at the bottom of `depth` multiparts, each inside the next."""
    part = attachment("deep.pdf", pdf_document(1))
    for level in range(depth):
        boundary = f"level{level}".encode()
        part = (
            b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n--" + boundary
            + b"\r\n" + part + b"\r\n--" + boundary + b"--\r\n"
        )  # fmt: skip
    return b"From: bad@example.com\r\nTo: 14155550100@fax.local\r\nMIME-Version: 1.0\r\n" + part


def deflated_zip(member: str, size: int) -> bytes:
    """A zip whose one member inflates to `size` zero bytes: a zip bomb, some 50 KB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, b"\0" * size)
    return buffer.getvalue()


def encrypted_pdf(user_password: str) -> bytes:
    """A PDF encrypted with pypdf; an empty user password opens it without asking."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_document(1))))
    writer.encrypt(user_password=user_password, owner_password="owner-secret")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def corpus(name: str) -> Callable[[], bytes]:
    return lambda: (CORPUS / name).read_bytes()


# ---------------------------------------------------------------------------- answers


def names(*expected: str) -> Callable[[Job, list[Document]], None]:
    def check(job: Job, documents: list[Document]) -> None:
        assert [document.name for document in documents] == list(expected)
        for document in documents:
            assert document.path.read_bytes().startswith(b"%PDF-") or document.name.endswith(".txt")

    return check


def skipped(note: str) -> Callable[[Job, list[Document]], None]:
    def check(job: Job, documents: list[Document]) -> None:
        assert [document.name for document in documents] == ["message.txt"]
        assert note in job.intake_ref["skipped"]

    return check


def cover(*, sender: str | None, subject_text: str) -> Callable[[Job, list[Document]], None]:
    def check(job: Job, documents: list[Document]) -> None:
        assert job.intake_ref["subject"] == subject_text
        assert job.cover_from == sender
        assert len(documents) == 1

    return check


def subject_at_most(length: int) -> Callable[[Job, list[Document]], None]:
    def check(job: Job, documents: list[Document]) -> None:
        assert 0 < len(job.intake_ref["subject"]) <= length
        assert [document.name for document in documents] == ["a.pdf"]

    return check


@dataclass(frozen=True)
class Bad:
    """A bad message and the answer it must get; `check` looks at the fax of a 250."""

    id: str
    message: Callable[[], bytes]
    code: int
    status: str
    words: str
    check: Callable[[Job, list[Document]], None] | None = None


NOT_READABLE = "the message's structure is broken: one of its parts should hold several pieces"
ZIP_REFUSED = ".zip files cannot be faxed; accepted are PDF"
LONG_NAME = "n" * 116 + ".pdf"  # 120 characters, the extension kept

CASES = [
    # broken MIME
    Bad("missing-boundary-parameter", corpus("missing-boundary-parameter.eml"), 554, "5.6.0",
        NOT_READABLE),
    Bad("boundary-never-appears", corpus("boundary-never-appears.eml"), 554, "5.6.0", NOT_READABLE),
    Bad("nested-200-levels", lambda: nested(200), 554, "5.6.0",
        "the message is nested too deeply to be read"),
    Bad("nested-11-levels", lambda: nested(11), 250, "2.0.0", "queued as", names("deep.pdf")),
    # headers
    Bad("header-500k-one-word",
        lambda: mime(attachment("a.pdf", pdf_document(1)), headers=b"X-Junk: " + b"y" * 500_000
                     + b"\r\n"), 250, "2.0.0", "queued as", names("a.pdf")),
    Bad("subject-1-mb-of-words",
        lambda: mime(attachment("a.pdf", pdf_document(1)), headers=b"X-Fax-Cover: no\r\n",
                     subject=b"word " * 200_000),
        250, "2.0.0", "queued as", subject_at_most(998)),
    Bad("headers-50000",
        lambda: mime(attachment("a.pdf", pdf_document(1)),
                     headers=b"".join(b"X-Header-%d: value\r\n" % n for n in range(50_000))),
        250, "2.0.0", "queued as", names("a.pdf")),
    Bad("headers-8bit-utf8", corpus("headers-8bit-utf8.eml"), 250, "2.0.0", "queued as",
        cover(sender="Jürgen Müller", subject_text="Grüße aus Köln – Rechnung")),
    Bad("headers-8bit-latin1", corpus("headers-8bit-latin1.eml"), 250, "2.0.0", "queued as",
        cover(sender="J\ufffdrgen M\ufffdller", subject_text="Gr\ufffd\ufffde \ufffd\ufffd")),
    # attachments
    Bad("attachment-empty-beside-text", corpus("attachment-empty-beside-text.eml"), 250, "2.0.0",
        "queued as", skipped("empty attachment scan.pdf not faxed")),
    Bad("attachment-empty-only", corpus("attachment-empty-only.eml"), 554, "5.6.0",
        "there is nothing to fax: the message has no attachment and no text\n"
        "5.6.0 empty attachment scan.pdf not faxed"),
    Bad("attachments-500-tiny",
        lambda: mime(*(attachment(f"p{n}.pdf", b"%PDF-1.4\n%%EOF\n") for n in range(500))),
        554, "5.6.0", "500 documents are too many for one fax; the limit is 10"),
    Bad("attachment-enormous",
        lambda: mime(attachment("big.pdf", b"%PDF-1.4\n" + b"0" * (DEFAULT_MAX_MESSAGE * 3 // 4))),
        552, "5.3.4", f"message too big: at most {DEFAULT_MAX_MESSAGE} bytes"),
    Bad("zip-bomb", lambda: mime(attachment("bomb.zip", deflated_zip("bomb.pdf", 16 << 20),
                                            "application/zip")),
        554, "5.6.0", f"bomb.zip: {ZIP_REFUSED}"),
    Bad("not-a-pdf", corpus("not-a-pdf.eml"), 554, "5.6.0",
        "invoice.pdf: the file does not look like a PDF"),
    Bad("pdf-with-a-password",
        lambda: mime(attachment("locked.pdf", encrypted_pdf("open-sesame"))), 554, "5.6.0",
        "locked.pdf: the PDF is protected by a password; send it without one"),
    # names
    Bad("name-dot-dot", corpus("name-dot-dot.eml"), 250, "2.0.0", "queued as",
        names("evil.pdf", "attachment-2.pdf")),
    Bad("name-nul-byte", corpus("name-nul-byte.eml"), 250, "2.0.0", "queued as",
        names("evil .exe.pdf")),
    Bad("name-rfc2231-escapes", corpus("name-rfc2231-escapes.eml"), 250, "2.0.0", "queued as",
        names("a b [31m.pdf")),
    Bad("name-300-characters", corpus("name-300-characters.eml"), 250, "2.0.0", "queued as",
        names(LONG_NAME)),
]  # fmt: skip


# ---------------------------------------------------------------------------- helpers


class InFlight:
    """A good message half sent on a connection of its own, finished on demand."""

    def __init__(self, client: RawSmtp, rest: bytes) -> None:
        self.client = client
        self.rest = rest

    @classmethod
    async def start(cls, port: int) -> InFlight:
        client = await RawSmtp.connect(port)
        await client.ehlo()
        assert (await client.command(f"MAIL FROM:<{SENDER}>")).code == 250
        assert (await client.command(f"RCPT TO:<{IN_FLIGHT_TO}>")).code == 250
        assert (await client.command("DATA")).code == 354
        wire = fax_mail("x", message_id="<in-flight@example.com>").replace(b"\n", b"\r\n")
        wire = wire.replace(b"\r\r\n", b"\r\n")
        half = len(wire) // 2
        client.writer.write(wire[:half])
        await client.writer.drain()
        return cls(client, wire[half:])

    async def finish(self) -> Reply:
        self.client.writer.write(self.rest + b"\r\n.\r\n")
        await self.client.writer.drain()
        reply = await self.client.read_reply()
        await self.client.close()
        return reply


@asynccontextmanager
async def daemon_with_mail_in_flight(
    state_dir: Path, **smtp: Any
) -> AsyncIterator[tuple[Daemon, InFlight]]:
    async with smtp_daemon(state_dir, **smtp) as daemon:
        in_flight = await InFlight.start(smtp_port(daemon))
        try:
            yield daemon, in_flight
        finally:
            await in_flight.client.close()


async def healthz(daemon: Daemon) -> int:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"http://127.0.0.1:{daemon.http.port}/healthz")
    return answer.status_code


def job_to(daemon: Daemon, address: str) -> Job:
    number = "+" + address.partition("@")[0]
    (job,) = [job for job in daemon.store.recent_jobs(100) if job.to_number == number]
    return job


async def assert_undisturbed(daemon: Daemon, client: RawSmtp, in_flight: InFlight) -> None:
    """A good message after the bad one, and the one in flight, are both taken."""
    good = await client.send(SENDER, [GOOD_TO], fax_mail("x", message_id="<good@example.com>"))
    assert good.code == 250, good
    finished = await in_flight.finish()
    assert finished.code == 250, finished
    for address in (GOOD_TO, IN_FLIGHT_TO):
        assert job_to(daemon, address).state in GOING
    assert await healthz(daemon) == 200


# ---------------------------------------------------------------------------- the corpus


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_each_bad_message_gets_its_answer(tmp_path: Path, case: Bad) -> None:
    raw = case.message()
    async with daemon_with_mail_in_flight(tmp_path / "state") as (daemon, in_flight):
        files_before = spool_files(daemon)
        async with smtp_client(smtp_port(daemon)) as client:
            await client.ehlo()
            reply = await client.send(SENDER, [BAD_TO], raw)
            assert (reply.code, reply.status) == (case.code, case.status), reply
            assert case.words in reply.text, reply
            if case.code == 250:
                job = job_to(daemon, BAD_TO)
                assert reply.text.endswith(job.id)
                assert case.check is not None
                case.check(job, daemon.store.documents(job.id))
            else:
                assert daemon.store.recent_jobs(100) == []
                assert spool_files(daemon) == files_before  # nothing of it was kept
            await assert_undisturbed(daemon, client, in_flight)


def test_the_corpus_files_are_all_used() -> None:
    used = {case.id for case in CASES}
    assert {path.stem for path in CORPUS.glob("*.eml")} <= used


# ---------------------------------------------------------------------------- to the end


@dataclass(frozen=True)
class Sent:
    to: str
    attachment: tuple[str, bytes, str]


async def test_what_is_taken_is_faxed(tmp_path: Path) -> None:
    """Accepted oddities go all the way: a zip bomb dressed as .docx (passed on as it came,
    never inflated by faxgate) and a name with a path in it are sent."""
    faxes = [
        Sent("14155550203", ("bomb.docx", deflated_zip("word/document.xml", 16 << 20), DOCX)),
        Sent("14155550204", ("../../evil.pdf", pdf_document(1), "application/pdf")),
    ]
    async with smtp_daemon(tmp_path / "state") as daemon:
        async with smtp_client(smtp_port(daemon)) as client:
            await client.ehlo()
            for fax in faxes:
                message = fax_mail("x", subject=f"To {fax.to}", attachment=fax.attachment)
                reply = await client.send(SENDER, [f"{fax.to}@{FAX_DOMAIN}"], message)
                assert reply.code == 250, (fax.to, reply)
        jobs = list(reversed(daemon.store.recent_jobs(10)))
        ended = await settled(daemon, jobs)
        assert [job.state for job in ended] == [JobState.SENT] * 2
        documents = [daemon.store.documents(job.id)[0] for job in jobs]
        assert [d.name for d in documents] == ["bomb.docx", "evil.pdf"]
        assert documents[0].path.read_bytes() == faxes[0].attachment[1]
        await reports_delivered(daemon, jobs)
        assert await healthz(daemon) == 200
    assert all("delivered" in subject(mail) for mail in replies(daemon))


async def test_heavy_messages_are_read_in_worker_processes_too(tmp_path: Path) -> None:
    """In production messages are read in worker processes: the answers are the same, and
    the HTTP server answers while a worker chews on them."""
    heavy = [case for case in CASES if case.id in {"nested-200-levels", "headers-50000"}]
    state = tmp_path / "state"
    async with daemon_with_mail_in_flight(state, reader_processes=1) as (daemon, in_flight):
        client = await RawSmtp.connect(smtp_port(daemon))
        try:
            await client.ehlo()
            for case in heavy:
                sending = asyncio.create_task(client.send(SENDER, [BAD_TO], case.message()))
                assert await healthz(daemon) == 200
                reply = await sending
                assert (reply.code, reply.status) == (case.code, case.status), reply
            await assert_undisturbed(daemon, client, in_flight)
        finally:
            await client.close()


# ---------------------------------------------------------------------------- headers, locks


async def test_a_pdf_locked_only_against_editing_is_faxed(tmp_path: Path) -> None:
    no_edit = ("no-edit.pdf", encrypted_pdf(""), "application/pdf")
    async with smtp_daemon(tmp_path / "state") as daemon:
        async with smtp_client(smtp_port(daemon)) as client:
            await client.ehlo()
            reply = await client.send(SENDER, [BAD_TO], fax_mail("x", attachment=no_edit))
        assert reply.code == 250, reply
        (ended,) = await settled(daemon, daemon.store.recent_jobs(10))
        assert ended.state is JobState.SENT


def test_a_huge_header_is_not_parsed_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's header parser takes time quadratic in a header's words (a 1 MB Subject: 16 s,
    and as long again for the reply quoting it, in the event loop): a huge header is cut
    before it is parsed, and what is kept fits a reply's Subject."""
    import email.headerregistry

    longest = 0
    real = email.headerregistry.UnstructuredHeader.value_parser

    def measured(value: str) -> object:
        nonlocal longest
        longest = max(longest, len(value))
        return real(value)

    monkeypatch.setattr(
        email.headerregistry.UnstructuredHeader, "value_parser", staticmethod(measured)
    )
    words = ("word " * 20_000).encode()  # 100 KB: read in 0.3 s; 1 MB takes 16 s
    raw = (
        b"From: a@example.com\r\nTo: 14155550100@fax.local\r\nSubject: " + words + b"\r\n"
        b"Content-Type: text/plain\r\n\r\nHello\r\n"
    )
    content = fax_content(raw, recipient=BAD_TO)
    assert longest <= 64 * 1024, f"a header of {longest} characters went to the parser"
    assert content.subject is not None
    assert len(content.subject) <= 998  # RFC 5322's line limit: what a reply can carry


# ---------------------------------------------------------------------------- properties

FUZZ = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PDF = pdf_document(1)
TIFF = b"II*\x00" + bytes(200)
LEAF_TYPES = [
    "text/plain",
    "text/html",
    "text/plain; charset=x-bogus",
    "text/plain; charset=utf-16",
    "application/pdf",
    "image/png",
    "image/tiff",
    "application/zip",
    "application/octet-stream",
    "application/ms-tnef",
    "application/pkcs7-signature",
    "application/pkcs7-mime",
    "text/x-vcard",
    "multipart/mixed",  # a multipart with no parts at all
    "message/rfc822",  # a forward with nothing inside
    "x-unknown/thing",
    "",
    "garbage;;;=",
]
ENCODINGS = ["", "7bit", "8bit", "binary", "base64", "BASE64", "quoted-printable", "x-uuencode"]
ENCODINGS += ["x-binhex", "base64 broken"]
NAMES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            *("a.pdf", "../a.pdf", "a\x00b.pdf", "x" * 300 + ".pdf", "C:\\x\\y.tif", ".", ".."),
            *("", "=?utf-8?q?a=2Fb?=.pdf", "=?bogus?x?zz?=", "winmail.dat", "\u202etxt.exe"),
        ]
    ),
    st.text(max_size=30),
)
CONTENTS = st.one_of(
    st.just(PDF),
    st.just(b""),
    st.binary(max_size=300),
    st.sampled_from([b"%PDF-1.4\n", b"II*\x00" + b"\0" * 20, b"\x89PNG\r\n\x1a\n", b" \r\n"]),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
)


def header_text(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


@st.composite
def good_leaf(draw: st.DrawFn) -> bytes:
    """An attachment that can be faxed, so that trees also hold several documents."""
    name, content = draw(st.sampled_from([("a.pdf", PDF), ("scan.tif", TIFF), ("x", PDF)]))
    return (
        f"Content-Type: {ACCEPTED_TYPES.get(PurePath(name).suffix, 'application/pdf')}; "
        f'name="{name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    ).encode() + base64.encodebytes(content)


@st.composite
def leaf(draw: st.DrawFn) -> bytes:
    content_type = draw(st.sampled_from(LEAF_TYPES))
    name = draw(NAMES)
    encoding = draw(st.sampled_from(ENCODINGS))
    content = draw(CONTENTS)
    lines = []
    if content_type:
        type_line = content_type + (f'; name="{name}"' if name is not None else "")
        lines.append(b"Content-Type: " + header_text(type_line))
    disposition = draw(st.sampled_from(["attachment", "inline", "", "form-data; x"]))
    if disposition:
        file = f'; filename="{name}"' if name is not None and draw(st.booleans()) else ""
        lines.append(b"Content-Disposition: " + header_text(disposition + file))
    if draw(st.booleans()):
        lines.append(b"Content-ID: <" + header_text(draw(st.text(max_size=10))) + b">")
    if encoding:
        lines.append(b"Content-Transfer-Encoding: " + encoding.split()[0].encode())
    if encoding.lower().startswith("base64"):
        content = base64.encodebytes(content)
        if encoding.endswith("broken"):
            content = content[: max(0, len(content) - 3)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + content


@st.composite
def multipart_of(draw: st.DrawFn, children: st.SearchStrategy[bytes]) -> bytes:
    subtype = draw(st.sampled_from(["mixed", "alternative", "related", "signed", "digest"]))
    boundary = draw(st.sampled_from(["b", "XX", "=_Part_0", "b", "XX", "a b", ""]))
    parts = draw(st.lists(children, min_size=int(draw(st.integers(0, 9)) > 0), max_size=5))
    head = f"Content-Type: multipart/{subtype}"
    if draw(st.integers(0, 9)):  # sometimes no boundary parameter at all
        head += f'; boundary="{boundary}"'
    marker = b"--" + boundary.encode()
    body = b"".join(marker + b"\r\n" + part + b"\r\n" for part in parts)
    if draw(st.booleans()):  # the closing line may be missing
        body += marker + b"--\r\n"
    return head.encode() + b"\r\n\r\n" + draw(st.sampled_from([b"", b"preamble\r\n"])) + body


@st.composite
def forwarded(draw: st.DrawFn, children: st.SearchStrategy[bytes]) -> bytes:
    inner = draw(children)
    return b"Content-Type: message/rfc822\r\n\r\nFrom: x@example.com\r\nSubject: Fw\r\n" + inner


MIME_TREES = st.recursive(
    st.one_of(leaf(), good_leaf()),
    lambda children: st.one_of(multipart_of(children), forwarded(children)),
    max_leaves=12,
)


@st.composite
def whole_message(draw: st.DrawFn) -> bytes:
    head = draw(
        st.sampled_from(
            [
                b"From: Alice <a@example.com>\r\nTo: Fax <14155550100@fax.local>\r\n",
                b"From: =?utf-8?b?SsO8cmdlbg==?= <a@example.com>\r\nSubject: =?x?q?a?=\r\n",
                b"From: \xff\xfe <a@example.com>\r\nTo: <<<>>>\r\nX-Fax-Cover: no\r\n",
                b"",
            ]
        )
    )
    return head + b"MIME-Version: 1.0\r\n" + draw(MIME_TREES)


@FUZZ
@given(raw=whole_message())
def test_generated_mime_trees_give_a_sane_fax_or_a_refusal(raw: bytes) -> None:
    reason: str | None = None
    try:
        content = fax_content(raw, recipient=BAD_TO)
    except MessageRefused as refused:
        reason = refused.reason
    if reason is not None:
        assert reason.strip()
        return
    assert 1 <= len(content.documents) <= MAX_FILES
    assert sum(len(d.content) for d in content.documents) <= MAX_TOTAL_BYTES
    seen: set[str] = set()
    for document in content.documents:
        name = document.name
        assert 0 < len(name) <= 120, name
        assert not {"/", "\\", "\0"} & set(name), name
        assert name not in {".", ".."}, name
        assert all(ch.isprintable() for ch in name), name
        assert name.lower() not in seen
        seen.add(name.lower())
        assert document.content
        assert document.content_type in ACCEPTED_TYPES.values()
        assert ACCEPTED_TYPES.get(PurePath(name).suffix.lower()) == document.content_type
        if document.content_type == "application/pdf":
            assert document.content.startswith(b"%PDF-")
    if content.cover_message is not None:
        assert len(content.cover_message) <= MAX_COVER_MESSAGE_CHARS


@st.composite
def pdf_tree(draw: st.DrawFn, depth: int = 0) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A well-formed tree of PDF attachments, and the documents it holds, in order."""
    kind = draw(st.sampled_from(["leaf", "mixed", "forward"] if depth < 10 else ["leaf"]))
    if kind == "leaf":
        number = draw(st.integers(0, 10**9))
        content = b"%PDF-1.4\n%" + str(number).encode() + b"\n" + PDF[9:]
        name = f"doc-{number}.pdf"
        encoding = draw(st.sampled_from(["base64", "binary", "8bit"]))
        body = base64.encodebytes(content) if encoding == "base64" else content
        head = (
            f'Content-Type: application/pdf; name="{name}"\r\n'
            f"Content-Disposition: attachment\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n"
        )
        return head.encode() + body, [(name, content)]
    if kind == "forward":
        inner, documents = draw(pdf_tree(depth + 1))
        wrapped = b"Content-Type: message/rfc822\r\n\r\nSubject: Fw\r\nMIME-Version: 1.0\r\n"
        return wrapped + inner, documents
    boundary = f"level-{depth}-{draw(st.integers(0, 99))}"
    children = draw(st.lists(pdf_tree(depth + 1), min_size=1, max_size=3))
    body = b"".join(f"--{boundary}\r\n".encode() + part + b"\r\n" for part, _ in children)
    start = f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'.encode()
    return start + body + f"--{boundary}--\r\n".encode(), [d for _, docs in children for d in docs]


@FUZZ
@given(tree=pdf_tree())
def test_every_pdf_in_any_tree_is_faxed_in_order_byte_for_byte(
    tree: tuple[bytes, list[tuple[str, bytes]]],
) -> None:
    part, expected = tree
    names_seen = [name for name, _ in expected]
    raw = b"From: a@example.com\r\nTo: 14155550100@fax.local\r\nMIME-Version: 1.0\r\n" + part
    if len(expected) > MAX_FILES or len(set(names_seen)) != len(names_seen):
        return  # refused for their number, or renamed: other tests cover both
    content = fax_content(raw, recipient=BAD_TO)
    assert [(d.name, d.content) for d in content.documents] == expected
