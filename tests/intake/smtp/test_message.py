"""From message and envelope to what is stored: cover pages per number, the reply's address,
and whether a reply may go at all. Pure, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from faxgate.domain.message import CoverMode, FaxContent, MessageRefused, fax_content
from faxgate.domain.message.parsing import LONGEST_HEADER_READ, POLICY
from faxgate.domain.numbers import parse_fax_number
from faxgate.intake.smtp.accept import Fax, MailToFax
from faxgate.intake.smtp.message import read_mail
from tests.intake.smtp.testing import fax_mail


def faxes(*numbers: str) -> list[Fax]:
    return [Fax(parse_fax_number(n), recipient=f"{n}@fax.local") for n in numbers]


def read_plain(raw: bytes, sender: str = "alice@example.com") -> MailToFax:
    """`raw` read as a mail from `sender` to 14155550101, no login, a cover page when it
    has a body, no from line."""
    return read_mail(
        raw,
        sender=sender,
        login=None,
        faxes=faxes("14155550101"),
        cover=CoverMode.WHEN_BODY,
        from_line=None,
    )


def test_each_number_gets_the_name_the_message_gives_it() -> None:
    raw = fax_mail("Bob <14155550101@fax.local>", "Carol <14155550102@fax.local>", "14155550103")
    mail = read_mail(
        raw,
        sender="alice@example.com",
        login=None,
        faxes=faxes("14155550101", "14155550102", "14155550103"),
        cover=CoverMode.WHEN_BODY,
        from_line="14155550199",
    )
    assert [fax.cover_to for fax in mail.faxes] == ["Bob", "Carol", None]
    assert mail.cover_from == "Alice Example"
    assert mail.cover_message == "Contract\n\nPlease sign and send back."
    assert [document.name for document in mail.documents] == ["contract.pdf"]
    assert mail.from_line == "14155550199"
    assert mail.reply_to == "alice@example.com"
    assert mail.intake_ref == {
        "sender": "alice@example.com",
        "message_id": "<contract-1@example.com>",
        "subject": "Contract",
    }


def test_the_message_is_read_again_only_when_it_names_its_recipients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0

    def counted(raw: bytes, **kwargs: Any) -> FaxContent:
        nonlocal calls
        calls += 1
        return fax_content(raw, **kwargs)

    monkeypatch.setattr("faxgate.intake.smtp.message.fax_content", counted)
    numbers = ("14155550101", "14155550102", "14155550103")
    for to, reads in ((numbers, 1), (("Bob <14155550101@fax.local>", *numbers[1:]), 3)):
        calls = 0
        read_mail(
            fax_mail(*to),
            sender="alice@example.com",
            login=None,
            faxes=faxes(*numbers),
            cover=CoverMode.WHEN_BODY,
            from_line=None,
        )
        assert calls == reads, to


def test_without_a_cover_page_no_name_is_looked_for() -> None:
    raw = fax_mail("Bob <14155550101@fax.local>", "Carol <14155550102@fax.local>")
    mail = read_mail(
        raw,
        sender="alice@example.com",
        login="alice",
        faxes=faxes("14155550101", "14155550102"),
        cover=CoverMode.NEVER,
        from_line=None,
    )
    assert [fax.cover_to for fax in mail.faxes] == [None, None]
    assert mail.cover_message is None
    assert mail.intake_ref["login"] == "alice"
    assert "the message text was not faxed (no cover page)" in mail.intake_ref["skipped"]


def test_the_reply_goes_to_reply_to_else_the_envelope_sender() -> None:
    def reply_to(headers: dict[str, str], sender: str = "alice@example.com") -> str | None:
        return read_plain(fax_mail("14155550101", headers=headers), sender).reply_to

    assert reply_to({}) == "alice@example.com"
    assert reply_to({"Reply-To": "Office <office@example.com>"}) == "office@example.com"
    # Two addresses, or none that can be read: the envelope is the safer bet.
    assert reply_to({"Reply-To": "a@example.com, b@example.com"}) == "alice@example.com"
    assert reply_to({"Reply-To": "not an address"}) == "alice@example.com"


@pytest.mark.parametrize(
    ("sender", "headers", "why"),
    [
        ("", {}, "the sender is empty"),
        ("mailer-daemon@example.com", {}, "mail system"),
        ("alice@example.com", {"Auto-Submitted": "auto-generated"}, "sent automatically"),
        ("alice@example.com", {"List-Id": "<scans.example.com>"}, "mailing list"),
    ],
)
def test_no_reply_address_when_no_reply_may_go(
    sender: str, headers: dict[str, str], why: str
) -> None:
    mail = read_plain(
        fax_mail("14155550101", headers={**headers, "Reply-To": "x@example.com"}), sender
    )
    assert mail.reply_to is None
    assert why in mail.intake_ref["no_reply"]


def test_nothing_to_fax_is_refused() -> None:
    raw = fax_mail("14155550101", body="", attachment=("a.zip", b"PK\x03\x04", "application/zip"))
    with pytest.raises(MessageRefused, match=r"a\.zip"):
        read_plain(raw)


@pytest.mark.parametrize(
    ("subject", "headers", "priority"),
    [
        ("Contract", {}, 0),
        ("[urgent] Contract", {}, 1),
        ("Newsletter [BULK]", {"X-Priority": "1 (Highest)"}, -1),  # the tag comes first
        ("Contract", {"X-Priority": "1 (Highest)"}, 1),
        ("Contract", {"X-Priority": "5 (Lowest)"}, -1),
        ("Contract", {"Priority": "urgent"}, 1),
        ("Contract", {"Priority": "non-urgent"}, -1),
        ("Contract", {"Importance": "high"}, 1),
        ("Contract", {"X-Priority": "whatever"}, 0),
    ],
)
def test_a_mail_asks_for_its_priority_by_a_subject_tag_or_a_header(
    subject: str, headers: dict[str, str], priority: int
) -> None:
    raw = fax_mail("14155550101", subject=subject, headers=headers)
    mail = read_plain(raw)
    assert mail.priority == priority


def test_a_header_longer_than_any_real_one_is_read_only_so_far() -> None:
    """A megabyte header costs the parser seconds to minutes (it is quadratic in a value):
    a text is read to LONGEST_HEADER_READ, addresses and parameters past it not at all."""
    longest = LONGEST_HEADER_READ
    words = "word " * (longest // 2)
    addresses = ", ".join(f"office{n}@example.com" for n in range(longest // 10))
    assert str(POLICY.header_factory("Subject", words)) == words[:longest]
    assert POLICY.header_factory("Reply-To", addresses).addresses == ()
    kept = addresses[: longest - 30].rpartition(",")[0]
    assert len(POLICY.header_factory("Reply-To", kept).addresses) > 100  # shorter: read

    head = f"Reply-To: Office <office@example.com> {words}\nImportance: {words}\nX-Priority: 1\n"
    mail = read_mail(
        head.encode() + fax_mail("14155550101", subject=f"Contract {words}"),
        sender="alice@example.com",
        login=None,
        faxes=faxes("14155550101"),
        cover=CoverMode.WHEN_BODY,
        from_line=None,
    )
    assert mail.reply_to == "alice@example.com"  # not a cut Reply-To
    assert mail.priority == 1  # the headers beside the long ones are read
    assert mail.intake_ref["subject"].startswith("Contract word word")
