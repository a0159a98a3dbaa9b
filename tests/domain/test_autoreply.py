"""RFC 3834: which messages get an automatic reply, and the reply's headers."""

from __future__ import annotations

import email
import email.policy

import pytest

from faxgate.domain.autoreply import may_reply, reply_headers, reply_subject

ALICE = "alice@example.com"


@pytest.mark.parametrize(
    ("sender", "headers", "reason"),
    [
        # ordinary mail from a person, or from a scanner with a normal address
        (ALICE, {}, None),
        (f"<{ALICE}>", {"Subject": "Contract"}, None),
        ("scanner@office.example", {"X-Mailer": "SHARP MX-3071"}, None),
        (ALICE, {"Auto-Submitted": "no"}, None),
        (ALICE, {"auto-submitted": "No; owner-email=x"}, None),
        (ALICE, {"Precedence": "first-class"}, None),
        (ALICE, {"X-Auto-Response-Suppress": "OOF, DR"}, None),
        ("reply@example.com", {}, None),
        ("postmaster-office@example.com", {}, None),
        # null senders: bounces and notifications
        ("", {}, "the sender is empty"),
        ("<>", {}, "the sender is empty"),
        (" < > ", {}, "the sender is empty"),
        # mail systems and addresses that take no replies
        ("MAILER-DAEMON@mx.example.com", {}, "is a mail system or takes no replies"),
        ("MAILER-DAEMON", {}, "is a mail system"),
        ("mailerdaemon@example.com", {}, "is a mail system"),
        ("Postmaster@example.com", {}, "is a mail system"),
        ("owner-faxlist@lists.example.com", {}, "is a mail system"),
        ("faxlist-request@lists.example.com", {}, "is a mail system"),
        ("faxlist-bounces+alice=example.com@lists.example.com", {}, "is a mail system"),
        ("bounce-12345@mailer.example.com", {}, "is a mail system"),
        ("noreply@example.com", {}, "takes no replies"),
        ("no-reply@example.com", {}, "takes no replies"),
        ("do-not-reply@example.com", {}, "takes no replies"),
        ("DoNotReply@example.com", {}, "takes no replies"),
        # sent automatically
        (ALICE, {"Auto-Submitted": "auto-generated"}, "sent automatically"),
        (ALICE, {"Auto-Submitted": "auto-replied"}, "sent automatically"),
        (ALICE, {"AUTO-SUBMITTED": "auto-notified; owner=x"}, "sent automatically"),
        (ALICE, {"Precedence": "bulk"}, "bulk mail"),
        (ALICE, {"Precedence": "List"}, "bulk mail"),
        (ALICE, {"Precedence": "junk"}, "bulk mail"),
        (ALICE, {"Precedence": "auto_reply"}, "bulk mail"),
        (ALICE, {"X-Autoreply": "yes"}, "automatic reply"),
        (ALICE, {"X-Autorespond": "vacation"}, "automatic reply"),
        (
            ALICE,
            {"Content-Type": "multipart/report; report-type=delivery-status; boundary=x"},
            "delivery report",
        ),
        # mailing lists
        (ALICE, {"List-Id": "Fax users <fax.lists.example.com>"}, "mailing list"),
        (ALICE, {"List-Unsubscribe": "<mailto:leave@lists.example.com>"}, "mailing list"),
        (ALICE, {"List-Post": "<mailto:fax@lists.example.com>"}, "mailing list"),
        # the sender asked for no automatic replies
        (ALICE, {"X-Auto-Response-Suppress": "All"}, "asked for no automatic replies"),
        (ALICE, {"X-Auto-Response-Suppress": "DR, AutoReply"}, "asked for no automatic"),
    ],
)
def test_may_reply(sender: str, headers: dict[str, str], reason: str | None) -> None:
    allowed, why = may_reply(sender, headers)
    if reason is None:
        assert (allowed, why) == (True, "")
    else:
        assert not allowed
        assert reason in why


def test_may_reply_reads_a_parsed_message() -> None:
    raw = (
        b"From: Vacation <alice@example.com>\r\n"
        b"To: 14155550100@fax.local\r\n"
        b"Auto-Submitted: auto-replied\r\n"
        b"Subject: Out of office\r\n\r\nAway.\r\n"
    )
    message = email.message_from_bytes(raw, policy=email.policy.default)
    allowed, why = may_reply(ALICE, message)
    assert not allowed
    assert why == "the message was sent automatically (Auto-Submitted: auto-replied)"
    person = email.message_from_bytes(raw.replace(b"Auto-Submitted", b"X-Note"))
    assert may_reply(ALICE, person) == (True, "")


def test_may_reply_survives_malformed_headers() -> None:
    raw = b'From: "\xff" <<@>>\r\nList-Id: =?utf-8?q?\xff?= <\r\nSubject: =?x?q?\r\n\r\n'
    message = email.message_from_bytes(raw, policy=email.policy.default)
    allowed, why = may_reply(ALICE, message)
    assert not allowed
    assert why == "the message came from a mailing list"


def test_reply_headers_thread_the_reply_and_mark_it_automatic() -> None:
    assert reply_headers("<abc@example.com>", "Contract") == {
        "Subject": "Re: Contract",
        "Auto-Submitted": "auto-replied",
        "In-Reply-To": "<abc@example.com>",
        "References": "<abc@example.com>",
    }


@pytest.mark.parametrize(
    ("message_id", "threaded"),
    [
        (" <abc@example.com> ", "<abc@example.com>"),
        ("abc@example.com", "<abc@example.com>"),
        (None, None),
        ("", None),
        ("<abc@example.com>\r\nBcc: victim@example.com", None),  # no header injection
        ("<a b@example.com>", None),
    ],
)
def test_reply_headers_take_only_a_plausible_message_id(
    message_id: str | None, threaded: str | None
) -> None:
    headers = reply_headers(message_id, None)
    assert headers.get("In-Reply-To") == threaded
    assert headers.get("References") == threaded
    assert headers["Auto-Submitted"] == "auto-replied"


@pytest.mark.parametrize(
    ("subject", "reply"),
    [
        ("Contract", "Re: Contract"),
        ("Re: Contract", "Re: Contract"),
        ("RE: re: Contract", "Re: Contract"),
        ("Re[2]: Contract", "Re: Contract"),
        ("AW: Re: Angebot", "Re: Angebot"),
        ("SV: Faktura", "Re: Faktura"),
        ("Fwd: Contract", "Re: Fwd: Contract"),
        ("Regarding the contract", "Re: Regarding the contract"),
        ("Report: May", "Re: Report: May"),
        ("  Contract \r\n  signed ", "Re: Contract signed"),  # folded, and no header injection
        ("", "Re: your message"),
        (None, "Re: your message"),
        ("Re:", "Re: your message"),
    ],
)
def test_reply_subject_does_not_stack(subject: str | None, reply: str) -> None:
    assert reply_subject(subject) == reply
    assert reply_headers(None, subject)["Subject"] == reply
