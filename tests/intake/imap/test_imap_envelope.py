"""The headers of a delivered message read as its envelope, and the intake's own rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faxgate.domain.numbers import NumberPolicy
from faxgate.intake.imap.envelope import Addressed, address_message, read_envelope
from faxgate.intake.imap.session import LoginRefused, read_token, xoauth2
from faxgate.intake.imap.watcher import setup_problem
from faxgate.intake.smtp.policy import RecipientRules, Refusal
from faxgate.settings import Settings, load_settings, masked_dump

RULES = RecipientRules.of(
    ["fax.local"], NumberPolicy(default_region="US"), subject_addresses=["fax@company.example"]
)


def message(*headers: str) -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\nbody\r\n").encode()


def test_the_sender_is_the_from_address_in_lower_case() -> None:
    envelope = read_envelope(message("From: Alice <Alice@Example.com>", "To: x@y.example"))
    assert envelope.sender == "alice@example.com"


@pytest.mark.parametrize(
    "headers",
    [
        ("Return-Path: <>", "From: Alice <alice@example.com>"),  # a bounce
        ("From: alice@example.com, bob@example.com",),  # whose?
        ("To: 14155550100@fax.local",),  # no From at all
        ("From: =?utf-8?q?a?= <alice\x00@example.com>",),
    ],
)
def test_a_bounce_or_an_unclear_sender_is_the_null_sender(headers: tuple[str, ...]) -> None:
    assert read_envelope(message(*headers)).sender == ""


def test_envelope_headers_come_first_and_each_address_once() -> None:
    envelope = read_envelope(
        message(
            "From: alice@example.com",
            "To: Bob <bob@company.example>, 14155550100@FAX.local",
            "Cc: 14155550100@fax.local",
            "Delivered-To: fax@company.example",
            "X-Original-To: 14155550199@fax.local",
        )
    )
    assert envelope.recipients == (
        "fax@company.example",
        "14155550199@fax.local",
        "bob@company.example",
        "14155550100@FAX.local",
    )


def test_other_people_are_passed_over_and_fax_addresses_taken() -> None:
    envelope = read_envelope(
        message(
            "From: alice@example.com",
            "To: bob@company.example, 14155550100@fax.local, fax@company.example",
        )
    )
    addressed = address_message(envelope, RULES, max_recipients=5)
    assert isinstance(addressed, Addressed)
    assert [fax.number.e164 for fax in addressed.faxes] == ["+14155550100"]
    assert addressed.from_subject == ["fax@company.example"]
    assert addressed.problems == []


def test_a_fax_address_that_cannot_be_faxed_is_named_and_the_rest_go() -> None:
    envelope = read_envelope(
        message("From: alice@example.com", "To: 19005550100@fax.local, 14155550100@fax.local")
    )
    addressed = address_message(envelope, RULES, max_recipients=5)
    assert isinstance(addressed, Addressed)
    assert [fax.number.e164 for fax in addressed.faxes] == ["+14155550100"]
    assert len(addressed.problems) == 1
    assert "19005550100@fax.local" in addressed.problems[0]


def test_more_faxes_than_allowed_are_named_not_sent() -> None:
    to = ", ".join(f"1415555010{n}@fax.local" for n in range(4))
    envelope = read_envelope(message("From: alice@example.com", f"To: {to}"))
    addressed = address_message(envelope, RULES, max_recipients=2)
    assert isinstance(addressed, Addressed)
    assert len(addressed.faxes) == 2
    assert len(addressed.problems) == 2


def test_a_message_to_no_fax_address_is_refused_saying_how_to_address_one() -> None:
    envelope = read_envelope(message("From: alice@example.com", "To: bob@company.example"))
    refusal = address_message(envelope, RULES, max_recipients=5)
    assert isinstance(refusal, Refusal)
    assert "no fax address" in refusal.text


def test_the_token_is_read_afresh_at_each_login(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    assert read_token(str(token)) == "first-token"
    token.write_text("second-token")  # the outside tool refreshed it
    assert read_token(str(token)) == "second-token"
    assert xoauth2("fax@company.example", "second-token") == (
        b"user=fax@company.example\x01auth=Bearer second-token\x01\x01"
    )


@pytest.mark.parametrize("content", [None, "", "two tokens"])
def test_a_missing_or_odd_token_file_is_a_refused_login(
    tmp_path: Path, content: str | None
) -> None:
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    with pytest.raises(LoginRefused, match="oauth2_token_file"):
        read_token(str(token))


def imap(**values: object) -> Settings:
    base: dict[str, object] = {"enabled": True, "host": "imap.example", "username": "fax"}
    return Settings(imap={**base, "password": "secret", **values})


def test_the_intake_needs_an_allowlist_or_a_trusted_mailbox() -> None:
    assert "smtp.allowed_senders" in (setup_problem(imap()) or "")
    assert setup_problem(imap(trusted=True)) is None
    allowed = Settings(
        imap={"enabled": True, "host": "h", "username": "u", "password": "p"},
        smtp={"allowed_senders": ["@company.example"]},
    )
    assert setup_problem(allowed) is None


def test_the_intake_needs_a_way_to_log_in() -> None:
    assert "imap.password or imap.oauth2_token_file" in (
        setup_problem(imap(password="", trusted=True)) or ""
    )
    assert setup_problem(imap(password="", oauth2_token_file="/run/token", trusted=True)) is None
    assert "imap.host" in (setup_problem(imap(host="", trusted=True)) or "")


def test_folder_names_are_checked() -> None:
    with pytest.raises(ValueError, match="folder name"):
        imap(processed_folder='Fax "done"')


def test_the_password_may_come_as_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "imap.password").write_text("app-password\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("FAXGATE_")]:
        monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.imap.password.get_secret_value() == "app-password"
    assert masked_dump(settings)["imap"]["password"] == "********"
