"""STARTTLS and SMTP AUTH: hashed passwords, AUTH only over TLS, TLS when required."""

from __future__ import annotations

import io
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest

from faxgate.app import Daemon, StartupError, started
from faxgate.cli import main
from faxgate.domain.passwords import BadPasswordHash, hash_password, parse_hash
from faxgate.intake.smtp.auth import Authenticator
from faxgate.settings import ConfigError, Settings, load_settings
from tests.daemon import fast_settings
from tests.intake.smtp.testing import (
    CHEAP,
    FAX_DOMAIN,
    PASSWORD,
    SENDER,
    Tls,
    alice_over_tls,
    fax_mail,
    smtp_client,
    smtp_daemon,
    smtp_port,
    tls,
)

__all__ = ["tls"]  # the fixture


# ---------------------------------------------------------------------------- hashes


def test_a_hash_checks_its_password_only() -> None:
    stored = hash_password(PASSWORD, **CHEAP)
    assert stored.startswith("scrypt$1024$8$1$")
    assert PASSWORD not in stored
    users = Authenticator({"alice": stored})
    assert users.check(b"alice", PASSWORD.encode()) == "alice"
    assert users.check(b"alice", b"wrong") is None
    assert users.check(b"bob", PASSWORD.encode()) is None
    assert users.check(b"\xff", PASSWORD.encode()) is None
    # A fresh salt each time.
    assert hash_password(PASSWORD, **CHEAP) != stored


@pytest.mark.parametrize(
    "text",
    [
        "hunter2",
        "pbkdf2$1$2$3$4$5",
        "scrypt$1000$8$1$c2FsdHNhbHQ=$a2V5a2V5a2V5a2V5a2V5a2V5",  # n not a power of two
        "scrypt$1024$8$1$not-base64!$a2V5a2V5a2V5a2V5a2V5a2V5",
        "scrypt$1024$8$1$c2FsdA==$a2V5",  # salt and key too short
        "scrypt$1024$99$1$c2FsdHNhbHQ=$a2V5a2V5a2V5a2V5a2V5a2V5",
    ],
)
def test_damaged_hashes_are_refused_without_quoting_them(text: str) -> None:
    with pytest.raises(BadPasswordHash) as refused:
        parse_hash(text)
    assert text not in str(refused.value)


def test_settings_refuse_bad_hashes_and_auth_without_tls(tmp_path: Path) -> None:
    config = tmp_path / "faxgate.toml"
    config.write_text('[smtp]\ntls_cert = "c"\ntls_key = "k"\n[smtp.users]\nalice = "hunter2"\n')
    with pytest.raises(ConfigError, match=r"smtp\.users: user 'alice'") as refused:
        load_settings(config)
    assert "hunter2" not in str(refused.value)
    with pytest.raises(ValueError, match="only after STARTTLS"):
        Settings(smtp={"users": {"alice": hash_password(PASSWORD, **CHEAP)}})
    with pytest.raises(ValueError, match="require_tls needs"):
        Settings(smtp={"require_tls": True})


def test_the_cli_prints_a_hash_that_checks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["smtp", "hash-password", "alice"]) == 0
    line = capsys.readouterr().out.strip()
    name, _, quoted = line.partition(" = ")
    assert name == "alice"
    assert PASSWORD not in line
    users = Authenticator({"alice": quoted.strip('"')})
    assert users.check(b"alice", PASSWORD.encode()) == "alice"

    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    assert main(["smtp", "hash-password"]) == 2


# ---------------------------------------------------------------------------- over the wire


@pytest.fixture
async def daemon(tmp_path: Path, tls: Tls) -> AsyncIterator[Daemon]:
    async with smtp_daemon(
        tmp_path / "state",
        **alice_over_tls(tls),
        allowed_senders=["scanner@office.example.com"],
    ) as running:
        yield running


async def test_auth_is_offered_only_after_starttls(daemon: Daemon, tls: Tls) -> None:
    async with smtp_client(smtp_port(daemon)) as client:
        hello = await client.ehlo()
        assert "STARTTLS" in hello.lines
        assert not any(line.startswith("AUTH") for line in hello.lines)
        reply = await client.auth_plain("alice", PASSWORD)
        assert (reply.code, reply.status) == (538, "5.7.11")
        # Without a login only the allowlist may send.
        reply = await client.command("MAIL FROM:<someone@elsewhere.example>")
        assert (reply.code, reply.status) == (530, "5.7.0")
        assert (await client.command("MAIL FROM:<scanner@office.example.com>")).code == 250

    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        assert (await client.starttls(tls.client)).code == 220
        hello = await client.ehlo()
        assert "AUTH LOGIN PLAIN" in hello.lines
        assert "STARTTLS" not in hello.lines
        reply = await client.auth_plain("alice", "not the password")
        assert (reply.code, reply.status) == (535, "5.7.8")
        assert (await client.auth_plain("alice", PASSWORD)).code == 235
        # A logged-in user may send from any address.
        reply = await client.send(
            "someone@elsewhere.example", [f"14155550300@{FAX_DOMAIN}"], fax_mail("x")
        )
        assert reply.code == 250, reply
    (job,) = daemon.store.recent_jobs(10)
    assert job.intake_ref["login"] == "alice"
    assert job.intake_ref["sender"] == "someone@elsewhere.example"


async def test_auth_login_with_aiosmtplib(daemon: Daemon, tls: Tls) -> None:
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=smtp_port(daemon), tls_context=tls.client, start_tls=True
    )
    async with client:
        await client.ehlo()  # auth_login does not say EHLO again after STARTTLS by itself
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await client.auth_login("alice", "nope")
        await client.auth_login("alice", PASSWORD)
        errors, _ = await client.sendmail(
            "anyone@example.org", [f"14155550301@{FAX_DOMAIN}"], fax_mail("x")
        )
    assert errors == {}
    (job,) = daemon.store.recent_jobs(10)
    assert job.intake_ref["login"] == "alice"


async def test_auth_tries_are_limited_per_connection(daemon: Daemon, tls: Tls) -> None:
    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        await client.starttls(tls.client)
        await client.ehlo()
        codes = [(await client.auth_plain("alice", f"guess {n}")).code for n in range(6)]
    assert codes == [535] * 5 + [421]


async def test_tls_can_be_required(tmp_path: Path, tls: Tls) -> None:
    async with (
        smtp_daemon(
            tmp_path / "state", tls_cert=str(tls.cert), tls_key=str(tls.key), require_tls=True
        ) as daemon,
        smtp_client(smtp_port(daemon)) as client,
    ):
        await client.ehlo()
        reply = await client.command(f"MAIL FROM:<{SENDER}>")
        assert (reply.code, reply.status) == (530, "5.7.0")
        assert (await client.starttls(tls.client)).code == 220
        await client.ehlo()
        reply = await client.send(SENDER, [f"14155550310@{FAX_DOMAIN}"], fax_mail("x"))
        assert reply.code == 250


async def test_unreadable_tls_files_stop_the_start(tmp_path: Path, tls: Tls) -> None:
    settings = fast_settings(
        tmp_path / "state",
        smtp={"listen": "127.0.0.1:0", "tls_cert": str(tmp_path / "none.pem"), "tls_key": "x"},
    )
    with pytest.raises(StartupError, match=r"cannot load smtp\.tls_cert"):
        async with started(settings):
            pass
