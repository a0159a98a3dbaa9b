"""Walking the MIME tree: each part a document, a body, a skip or a refusal; the
documents found, named, checked and limited."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import Message
from pathlib import PurePath
from typing import Final

from faxgate.domain.documents import (
    MAX_FILES,
    DocumentRefused,
    accepted_list,
    check_batch,
    check_document,
    check_readable,
)
from faxgate.domain.message.headers import _header_text, _mailboxes, _raw_header
from faxgate.domain.message.parts import (
    _charset,
    _content_type,
    _decode_text,
    _disposition,
    _filename,
    _image_to_skip,
    _part_bytes,
    _sniffed_extension,
    _Undecodable,
    as_utf8,
    enriched_to_text,
)
from faxgate.domain.message.text import html_to_text
from faxgate.domain.message.values import (
    _BODY_PIECE,
    _BODY_TYPES,
    _BROKEN_STRUCTURE,
    _CALENDAR_EXTENSIONS,
    _CALENDARS,
    _CERTIFICATE_EXTENSIONS,
    _CERTIFICATES,
    _CONTACT_CARDS,
    _CONTACT_EXTENSIONS,
    _DIGITAL_SIGNATURES,
    _ENCRYPTED,
    _ENRICHED,
    _EXTENSIONS,
    _FORWARDED,
    _HEAD_BYTES,
    _HTML,
    _KINDS,
    _MAX_DEPTH,
    _PKCS7_MIME,
    _REAL_EXTENSION,
    _REPORT_KINDS,
    _REPORT_PARTS,
    _TNEF,
    BODY_DOCUMENT_NAME,
    MailDocument,
    MessageRefused,
)


@dataclass(slots=True)
class _Candidate:
    """An attachment before its name is settled and it is checked."""

    name: str | None
    declared_type: str
    content: bytes
    charset: str | None = None
    _problem: str | None = None
    _checked: bool = False

    def problem(self) -> str | None:
        """Why it cannot be faxed (checked once: a PDF is opened to check it), or None."""
        if not self._checked:
            try:
                _checked(self, number=1)
            except DocumentRefused as refusal:
                self._problem = str(refusal)
            self._checked = True
        return self._problem


@dataclass(slots=True)
class _Walk:
    """What a walk over a part and its children finds, in order of appearance."""

    candidates: list[_Candidate] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    plain_text: bool = False  # some text came from text/plain, not HTML
    skipped: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    forwarded_texts: list[str] = field(default_factory=list)  # the text of forwarded messages

    def walk(self, part: Message, depth: int) -> None:
        if depth > _MAX_DEPTH:
            self.refusals.append("the message is nested too deeply to be read")
            return
        content_type = _content_type(part)
        if content_type in _ENCRYPTED:
            self.refusals.append(_ENCRYPTED_REASON)
        elif content_type in _PKCS7_MIME:
            self._pkcs7(part)
        elif depth == 0 and (report := _report_kind(part, content_type)):
            self.refusals.append(
                f"the message is {report} from a mail system, not a document to fax"
            )
        elif content_type == "message/partial":
            self.refusals.append(
                "the message is one piece of a message your mail program split in several, "
                "which faxgate cannot put together; send it again in one piece"
            )
        elif content_type == "message/external-body":
            name = _filename(part) or "a file"
            self.refusals.append(
                f"{name} is not in the message: the mail program only pointed to where it "
                "is kept; attach the file itself"
            )
        elif content_type in _FORWARDED:
            self._forwarded(part, depth)
        elif content_type == "multipart/alternative":
            self._alternative(part, depth)
        elif content_type.startswith("multipart/"):
            self._children(part, depth)
        else:
            self._leaf(part, content_type)

    def absorb_files(self, other: _Walk) -> None:
        """Take the other walk's attachments and notes, not its text."""
        self.candidates += other.candidates
        self.skipped += other.skipped
        self.refusals += other.refusals
        self.forwarded_texts += other.forwarded_texts

    def _children(self, part: Message, depth: int) -> None:
        children = _children(part)
        if children is None:
            self.refusals.append(_broken(part))
            return
        for child in children:
            self.walk(child, depth + 1)

    def _alternative(self, part: Message, depth: int) -> None:
        """One content in several forms (RFC 2046): text from the plain form, files from the
        richest (the last with any), among the forms faxgate can fax; the others are left
        out with a note. Refused only when no form can be faxed."""
        children = _children(part)
        if children is None:
            self.refusals.append(_broken(part))
            return
        versions: list[tuple[Message, _Walk]] = []
        for child in children:
            version = _Walk()
            version.walk(child, depth + 1)
            versions.append((child, version))
        usable = [v for _, v in versions if v.faxable()]
        if not any(v.candidates or _has_text(v) for v in usable):
            usable = [v for _, v in versions]  # no form can be faxed: say why
        with_text = [v for v in usable if _has_text(v)]
        text = next((v for v in with_text if v.plain_text), with_text[-1] if with_text else None)
        files = next((v for v in reversed(usable) if v.candidates or v.refusals), None)
        files = files or next((v for v in reversed(usable) if v.skipped), None)
        if text is not None:
            self.texts += text.texts
            self.plain_text |= text.plain_text
        if files is not None:
            self.absorb_files(files)
        chosen = {id(v) for v in usable}
        for child, version in versions:
            if id(version) not in chosen and not _content_type(child).startswith("text/"):
                self.skipped.append(f"{_form(child)} not faxed; the same message as text was")

    def faxable(self) -> bool:
        """Nothing here is refused: every attachment passes its checks."""
        return not self.refusals and all(c.problem() is None for c in self.candidates)

    def _pkcs7(self, part: Message) -> None:
        """S/MIME's one type for three things: certificates, signed and encrypted mail."""
        smime_type = _param(part, "smime-type")
        extension = PurePath(_filename(part) or "").suffix.lower()
        if smime_type == "certs-only" or extension in _CERTIFICATE_EXTENSIONS:
            return  # the sender's certificate, sent along by the mail program
        if smime_type == "signed-data" or extension == ".p7s":
            self.refusals.append(
                "the message is signed in a form faxgate cannot open (S/MIME, opaque "
                "signing); send it with a clear signature, or unsigned"
            )
            return
        self.refusals.append(_ENCRYPTED_REASON)

    def _forwarded(self, part: Message, depth: int) -> None:
        inner = _Walk()
        for child in _children(part) or []:
            inner.walk(child, depth + 1)
        self.absorb_files(inner)
        self.forwarded_texts += inner.texts

    def _leaf(self, part: Message, content_type: str) -> None:
        name = _filename(part)
        disposition = _disposition(part)
        extension = PurePath(name or "").suffix.lower()
        if content_type in _DIGITAL_SIGNATURES | _CERTIFICATES | _REPORT_PARTS:
            return  # added by the mail program, not by the sender
        if extension in _CERTIFICATE_EXTENSIONS and content_type == "application/octet-stream":
            return
        if content_type in _CONTACT_CARDS or extension in _CONTACT_EXTENSIONS:
            self.skipped.append(f"contact card {name or 'without a name'} not faxed")
            return
        if content_type in _CALENDARS or extension in _CALENDAR_EXTENSIONS:
            self.skipped.append(
                f"meeting invitation {name} not faxed"
                if name
                else "the meeting invitation (calendar entry) not faxed"
            )
            return
        if content_type in _TNEF or (name or "").lower() == "winmail.dat":
            self.refusals.append(_TNEF_REASON.format(name=name or "winmail.dat"))
            return
        if _is_body(content_type, name, disposition):
            self._text(part, content_type)
            return
        label = name or f"a part of the message without a name ({_kind(content_type)})"
        try:
            content = _part_bytes(part)
        except _Undecodable as error:
            self.refusals.append(f"{label}: {error}")
            return
        if not content or content.isspace():
            self.skipped.append(f"empty attachment {name or 'without a name'} not faxed")
            return
        image = _image_to_skip(content, disposition, _header_text(part, "content-id"))
        if image:
            self.skipped.append(f"{image} {name or 'without a name'} not faxed")
            return
        self.candidates.append(_Candidate(name, content_type, content, _charset(part)))

    def _text(self, part: Message, content_type: str) -> None:
        try:
            data = _part_bytes(part)
        except _Undecodable:
            data = b""  # a body that cannot be read is no body, not a refusal
        text = _decode_text(data, _charset(part))
        if _PGP_MESSAGE.match(text):
            self.refusals.append(_ENCRYPTED_REASON)
            return
        if content_type in _HTML:
            text = html_to_text(text)
        elif content_type in _ENRICHED:
            text = enriched_to_text(text)
        else:
            self.plain_text = True
        self.texts.append(text)


_TNEF_REASON: Final = (
    "{name}: Outlook sent the attachments in its own format (TNEF, winmail.dat), which "
    "cannot be faxed; send the message as HTML or plain text, not Rich Text"
)
_ENCRYPTED_REASON: Final = (
    "the message is encrypted (S/MIME or PGP) and faxgate cannot read it; send it unencrypted"
)
_PGP_MESSAGE: Final = re.compile(r"\s*-----BEGIN PGP MESSAGE-----")


def _report_kind(message: Message, content_type: str) -> str | None:
    """What kind of report from a mail system the message is, or None: a multipart/report
    (RFC 6522) or a bare report part, or a bounce in plain text from a mailer daemon."""
    if content_type == "multipart/report":
        return _REPORT_KINDS.get(_param(message, "report-type"), "an automatic report")
    if content_type in _REPORT_PARTS:
        return _REPORT_KINDS.get(content_type.partition("/")[2], "an automatic report")
    senders = _mailboxes(message, "from")
    daemon = bool(senders) and senders[0][1].partition("@")[0].lower() == "mailer-daemon"
    if daemon or _raw_header(message, "x-failed-recipients") is not None:
        return _REPORT_KINDS["delivery-status"]
    return None


def _is_body(content_type: str, name: str | None, disposition: str | None) -> bool:
    """A piece of the message's own text, not a text file the sender attached."""
    if content_type not in _BODY_TYPES:
        return False
    if name and _BODY_PIECE.fullmatch(name):
        return True
    return not name and disposition != "attachment"


def _has_text(walk: _Walk) -> bool:
    return any(text.strip() for text in walk.texts)


def _broken(part: Message) -> str:
    """The reason for a multipart whose pieces cannot be found, the same for every kind."""
    boundary = _param(part, "boundary")
    problem = "is missing" if not boundary else "never appears"
    return _BROKEN_STRUCTURE.format(problem=problem)


def _form(part: Message) -> str:
    """A form of an alternative, in words: "the PostScript form of the message"."""
    content_type = _content_type(part)
    if content_type in _CALENDARS:
        return "the meeting invitation (calendar entry)"
    if content_type == "application/postscript":
        return "the PostScript form of the message"
    return "another form of the message"


def _kind(content_type: str) -> str:
    """What a part is, for a person: "a meeting invitation", "a file of an unknown kind"."""
    if content_type in _KINDS:
        return _KINDS[content_type]
    extension = _EXTENSIONS.get(content_type)
    if extension:
        return f"a {extension[1:].upper()} file"
    if content_type.startswith("image/"):
        return "a picture"
    if content_type.startswith("text/"):
        return "a text"
    if content_type.startswith(("audio/", "video/")):
        return "a sound or video"
    return "a file of an unknown kind"


def _param(part: Message, name: str) -> str:
    try:
        value = part.get_param(name, header="content-type")
    except Exception:
        return ""
    return str(value).strip().lower() if isinstance(value, str) else ""


def _children(part: Message) -> list[Message] | None:
    try:
        payload = part.get_payload()
    except Exception:
        return None
    if not isinstance(payload, list):
        # A multipart with nothing in it is empty, not broken: nothing is lost.
        return [] if isinstance(payload, str) and not payload.strip() else None
    return [child for child in payload if isinstance(child, Message)]


def _documents(found: _Walk) -> list[MailDocument]:
    """The checked documents, named uniquely; MessageRefused listing every refusal."""
    refusals = list(found.refusals)
    if len(found.candidates) > MAX_FILES:  # before opening any of them
        _check_limits([MailDocument("", c.content, "") for c in found.candidates])
    documents: list[MailDocument] = []
    taken: set[str] = set()
    for number, candidate in enumerate(found.candidates, start=1):
        try:
            document = _checked(candidate, number)
        except DocumentRefused as refusal:
            refusals.append(str(refusal))
            continue
        name = _unique(document.name, taken)
        documents.append(MailDocument(name, document.content, document.content_type))
    if refusals:
        raise MessageRefused("\n".join(dict.fromkeys(refusals)))
    return documents


def _checked(candidate: _Candidate, number: int) -> MailDocument:
    """The attachment as faxgate hands it on, or DocumentRefused with the reason."""
    name = _document_name(candidate, number)
    if name is None:
        kind = _kind(candidate.declared_type)
        raise DocumentRefused(
            f"a part of the message without a name ({kind}) cannot be faxed; "
            f"accepted are {accepted_list()}"
        )
    check = check_document(name, len(candidate.content), candidate.content[:_HEAD_BYTES])
    if candidate._checked:
        if candidate._problem is not None:
            raise DocumentRefused(candidate._problem)
    else:
        check_readable(name, check.content_type, candidate.content)
    content = candidate.content
    if check.content_type in ("text/plain", "text/html"):
        content = as_utf8(content, candidate.charset, html=check.content_type == "text/html")
    return MailDocument(check.name, content, check.content_type)


def _document_name(candidate: _Candidate, number: int) -> str | None:
    """The name to check: the given one, with an extension from the type when it has none."""
    name = candidate.name or f"attachment-{number}"
    if _REAL_EXTENSION.fullmatch(PurePath(name).suffix):
        return name
    extension = _EXTENSIONS.get(candidate.declared_type) or _sniffed_extension(candidate.content)
    if extension is None:
        return candidate.name  # checked as it is, refused with the name in the reason
    return name + extension


def _unique(name: str, taken: set[str]) -> str:
    path = PurePath(name)
    unique, copy = name, 1
    while unique.lower() in taken:
        copy += 1
        unique = f"{path.stem} ({copy}){path.suffix}"
    taken.add(unique.lower())
    return unique


def _body_document(body: str, skipped: list[str]) -> MailDocument:
    if not body:
        raise MessageRefused(_nothing_to_fax(skipped))
    content = (body + "\n").encode()
    check = check_document(BODY_DOCUMENT_NAME, len(content), content[:_HEAD_BYTES])
    return MailDocument(check.name, content, check.content_type)


def _nothing_to_fax(skipped: list[str]) -> str:
    """The reason, and on lines of their own what the message held that is not faxed."""
    reason = "there is nothing to fax: the message has no attachment and no text"
    return "\n".join([reason, *skipped])


def _check_limits(documents: list[MailDocument]) -> None:
    try:
        check_batch([len(document.content) for document in documents])
    except DocumentRefused as refusal:
        raise MessageRefused(str(refusal)) from refusal
