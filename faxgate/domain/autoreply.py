"""Whether a message may be answered automatically (RFC 3834), and the answer's headers.

Pure rules, no IO. A reply about a fax goes to the envelope sender unless that would feed
a mail loop or send backscatter. No reply when:
- the envelope sender is null ("" or "<>": a bounce or a notification);
- the sender is a mail system or takes no replies (MAILER-DAEMON, postmaster, owner-*,
  *-request, *-bounces, no-reply, ...);
- the message says it was sent automatically: Auto-Submitted other than "no", Precedence
  bulk, list, junk or auto_reply, X-Autoreply or X-Autorespond, a delivery report
  (multipart/report);
- it came from a mailing list (List-Id, List-Unsubscribe, List-Post);
- the sender asked for no automatic replies (X-Auto-Response-Suppress: All or AutoReply).
Every reply carries Auto-Submitted: auto-replied, so that other responders stay quiet.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from email.message import Message
from typing import Final, TypeAlias

__all__ = ["AUTO_GENERATED", "AUTO_REPLIED", "may_reply", "reply_headers", "reply_subject"]

# Auto-Submitted values (RFC 3834) of the mail faxgate sends.
AUTO_REPLIED: Final = "auto-replied"  # a response to a message someone sent
AUTO_GENERATED: Final = "auto-generated"  # anything else faxgate sends by itself

_SYSTEM_SENDERS: Final = re.compile(
    r"""(
        mailer-?daemon | postmaster | listserv | majordomo | mailman
      | owner-.* | .*-owner | .*-request | .*-bounces? | bounces?([-+.].*)?
      | no-?reply([-+.].*)? | do-?not-?reply([-+.].*)?
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_BULK_PRECEDENCE: Final = frozenset({"bulk", "list", "junk", "auto_reply"})
_LIST_HEADERS: Final = ("list-id", "list-unsubscribe", "list-post")
_AUTOREPLY_MARKERS: Final = ("x-autoreply", "x-autorespond")
_SUPPRESSING: Final = frozenset({"all", "autoreply"})
_REPLY_PREFIX: Final = re.compile(
    r"^\s*(?:re|aw|sv|antw|res|r)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*", re.IGNORECASE
)


def may_reply(envelope_sender: str, headers: Mapping[str, str] | Message) -> tuple[bool, str]:
    """(True, "") when an automatic reply may go out; else (False, the reason)."""
    sender = envelope_sender.strip().removeprefix("<").removesuffix(">").strip()
    if not sender:
        return False, "the sender is empty (a bounce or a notification)"
    local_part = (sender.rpartition("@")[0] or sender).split("+", 1)[0]  # without a +tag
    if _SYSTEM_SENDERS.fullmatch(local_part):
        return False, f"the sender {sender} is a mail system or takes no replies"
    read = _reader(headers)
    for check in (_automatic, _from_list, _suppressed):
        reason = check(read)
        if reason:
            return False, reason
    return True, ""


def reply_headers(original_message_id: str | None, original_subject: str | None) -> dict[str, str]:
    """Headers that thread a reply under the original and mark it as automatic."""
    headers = {"Subject": reply_subject(original_subject), "Auto-Submitted": AUTO_REPLIED}
    message_id = _message_id(original_message_id)
    if message_id:
        headers["In-Reply-To"] = message_id
        headers["References"] = message_id
    return headers


def reply_subject(original_subject: str | None) -> str:
    """ "Re: " and the original subject, without stacking "Re: Re: " or "Re: AW: "."""
    subject = " ".join((original_subject or "").split())
    while True:
        stripped = _REPLY_PREFIX.sub("", subject, count=1)
        if stripped == subject:
            break
        subject = stripped
    return f"Re: {subject}" if subject else "Re: your message"


def _message_id(value: str | None) -> str | None:
    """The id in angle brackets, or None for one that could not be a message id."""
    text = (value or "").strip()
    if not text or any(ch.isspace() or not ch.isprintable() for ch in text):
        return None
    return text if text.startswith("<") and text.endswith(">") else f"<{text.strip('<>')}>"


_Reader: TypeAlias = Callable[[str], str | None]


def _reader(headers: Mapping[str, str] | Message) -> _Reader:
    if isinstance(headers, Message):
        return lambda name: _message_header(headers, name)
    lowered = {key.lower(): value for key, value in headers.items()}
    return lambda name: _text(lowered.get(name))


def _message_header(message: Message, name: str) -> str | None:
    try:
        return _text(message.get(name))
    except Exception:  # a malformed value the header parser chokes on: read it raw
        raw = next((v for k, v in message.raw_items() if k.lower() == name), None)
        return _text(raw)


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _automatic(read: _Reader) -> str | None:
    auto_submitted = read("auto-submitted")
    if auto_submitted and auto_submitted.split(";")[0].strip().lower() != "no":
        return f"the message was sent automatically (Auto-Submitted: {auto_submitted})"
    precedence = (read("precedence") or "").lower()
    if precedence in _BULK_PRECEDENCE:
        return f"the message is bulk mail (Precedence: {precedence})"
    marker = next((name for name in _AUTOREPLY_MARKERS if read(name)), None)
    if marker:
        return "the message is an automatic reply"
    if (read("content-type") or "").lower().startswith("multipart/report"):
        return "the message is a delivery report"
    return None


def _from_list(read: _Reader) -> str | None:
    if any(read(name) for name in _LIST_HEADERS):
        return "the message came from a mailing list"
    return None


def _suppressed(read: _Reader) -> str | None:
    values = (read("x-auto-response-suppress") or "").lower()
    if _SUPPRESSING & {value.strip() for value in values.split(",")}:
        return "the sender asked for no automatic replies (X-Auto-Response-Suppress)"
    return None
