"""Abuse: nobody sends faxes who may not, and guessing passwords is slowed down.

Already proven elsewhere, not repeated here:
- relaying: other domains, an IP literal, a source route to another domain, the percent
  hack, a bang path, a quoted "a@b" (tests/intake/smtp/test_handler.py test_no_open_relay and
  tests/intake/smtp/test_policy.py); no listener beyond loopback without users or an
  allowlist (test_faxgate_will_not_listen_beyond_loopback_as_an_open_relay);
- senders outside the allowlist, the null sender, a subdomain (test_smtp.py
  test_senders_outside_the_allowlist_are_refused); AUTH PLAIN before STARTTLS (538) and
  login required when users are set up (530) (test_smtp_auth.py);
- five AUTH commands per connection, then 421 (test_smtp_auth.py);
- the daily limit per envelope sender, at RCPT and at DATA across two sessions
  (test_smtp.py test_the_daily_limit_per_sender);
- a premium-rate and a foreign number at RCPT (test_smtp.py), every policy rule
  (tests/domain/test_numbers.py, and the properties in test_numbers_property.py);
- a wrong callback token: 404, never logged (tests/web/test_server.py).

Here: the relaying tricks left (multi-hop source routes, a second @, quoted and multi-bang
local parts), a sender with control characters, AUTH LOGIN before STARTTLS, the AUTH
throttle (faxgate.intake.smtp.auth.AuthLimiter) as rules and over the wire, the daily
limit for a logged-in user whatever sender they give, premium-rate and shared-cost numbers
however written, in mail and in the hot folder, and callback tokens that are almost right.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from faxgate import metrics
from faxgate.app import Daemon, started
from faxgate.domain.jobs import JobState
from faxgate.hellofax.sandbox import FaultSettings
from faxgate.intake.smtp.auth import FREE_FAILURES, MAX_DELAY, AuthLimiter
from faxgate.settings import FolderSettings
from tests.conftest import pdf_document, wait_for
from tests.daemon import CALLBACK_TOKEN, fast_settings, queue, settled
from tests.intake.smtp.testing import (
    FAX_DOMAIN,
    PASSWORD,
    SENDER,
    RawSmtp,
    Reply,
    Tls,
    alice_over_tls,
    fax_mail,
    smtp_client,
    smtp_daemon,
    smtp_port,
    tls,
)

__all__ = ["tls"]  # the fixture


def refused(reason: str) -> float:
    labels = {"reason": reason}
    return metrics.REGISTRY.get_sample_value("faxgate_smtp_refused_total", labels) or 0.0


def throttled(action: str) -> float:
    labels = {"action": action}
    return metrics.REGISTRY.get_sample_value("faxgate_smtp_auth_throttled_total", labels) or 0.0


# ---------------------------------------------------------------------------- relaying


RELAY_TRICKS = [
    ("<@relay-a.example,@relay-b.example:victim@example.net>", 550, "5.1.1"),
    ("<@a,@b:x@y>", 550, "5.1.1"),
    (f"<@{FAX_DOMAIN},@evil.example:victim@example.net>", 550, "5.1.1"),
    (f"<victim@example.net@{FAX_DOMAIN}>", 553, "5.1.3"),  # x@y@fax.local
    (f"<14155550123@{FAX_DOMAIN}@example.net>", 553, "5.1.3"),
    (f'<"victim%example.net"@{FAX_DOMAIN}>', 550, "5.1.1"),
    (f'<"example.net!victim"@{FAX_DOMAIN}>', 550, "5.1.1"),
    (f'<"14155550123\\@example.net"@{FAX_DOMAIN}>', 550, "5.1.1"),
    (f"<a!b!victim@{FAX_DOMAIN}>", 550, "5.1.1"),
    (f"<14155550123%victim@example.net@{FAX_DOMAIN}>", 553, "5.1.3"),
    ("<postmaster>", 550, "5.1.1"),
    ("<14155550123@fax.local.example.net>", 550, "5.1.1"),
]


async def test_relaying_tricks_are_refused(tmp_path: Path) -> None:
    async with smtp_daemon(tmp_path / "state") as daemon, smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        assert (await client.command(f"MAIL FROM:<{SENDER}>")).code == 250
        for address, code, status in RELAY_TRICKS:
            before = refused("relay") + refused("malformed")
            reply = await client.command(f"RCPT TO:{address}")
            assert (reply.code, reply.status) == (code, status), (address, reply)
            assert refused("relay") + refused("malformed") == before + 1, address
        assert (await client.command("DATA")).code == 503  # nothing was taken
        assert daemon.store.recent_jobs(10) == []
        assert not list((daemon.settings.maildir / "new").glob("*"))  # nothing went out


async def test_a_source_route_through_the_fax_domain_is_only_a_fax(tmp_path: Path) -> None:
    """RFC 5321 lets a server ignore a source route: <@fax.local:NUMBER@fax.local> is the
    fax address itself, never a way to send on elsewhere."""
    async with smtp_daemon(tmp_path / "state") as daemon, smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        route = f"@{FAX_DOMAIN}:14155550123@{FAX_DOMAIN}"
        assert (await client.send(SENDER, [route], fax_mail("14155550123"))).code == 250
        (job,) = daemon.store.recent_jobs(10)
        assert job.to_number == "+14155550123"


async def test_a_sender_with_control_characters_is_refused(tmp_path: Path) -> None:
    async with smtp_daemon(tmp_path / "state") as daemon, smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        before = refused("malformed")
        for sender in (b"a\x00b@example.com", b"a\x7f@example.com", b"a\x1bb@example.com"):
            client.writer.write(b"MAIL FROM:<" + sender + b">\r\n")
            reply = await client.read_reply()
            assert (reply.code, reply.status) == (553, "5.1.7"), (sender, reply)
        assert refused("malformed") == before + 3
        assert (await client.send(SENDER, [f"14155550123@{FAX_DOMAIN}"], fax_mail("x"))).code == 250


async def test_an_endless_command_line_is_drained_not_kept(tmp_path: Path) -> None:
    """25 MB without a line break before any command: refused as it goes, in pieces of
    the command limit; the session carries on and a real message still goes through."""
    async with smtp_daemon(tmp_path / "state") as daemon, smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        chunk = b"A" * 2**20
        tracemalloc.start()
        try:
            for _ in range(25):
                client.writer.write(chunk)
                await client.writer.drain()
            client.writer.write(b"\r\n")
            reply = await client.read_reply()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MiB held for one command line"
        assert reply.code == 500, reply
        assert "too long" in reply.text
        assert (await client.send(SENDER, [f"14155550123@{FAX_DOMAIN}"], fax_mail("x"))).code == 250


async def test_too_many_connections_are_turned_away_before_any_command(tmp_path: Path) -> None:
    limits = smtp_daemon(tmp_path / "state", max_connections=3, max_connections_per_client=2)
    async with limits as daemon:
        port = smtp_port(daemon)
        before = refused("connections")
        first, second = await RawSmtp.connect(port), await RawSmtp.connect(port)
        third = await RawSmtp.connect(port)  # a third from the same address
        assert third.greeting is not None
        assert (third.greeting.code, third.greeting.status) == (421, "4.7.0")
        assert await third.reader.read() == b""  # closed
        # Another address still gets in, up to the total.
        other = await RawSmtp.connect(port, source="127.0.0.2")
        assert other.greeting is not None
        assert other.greeting.code == 220
        fourth = await RawSmtp.connect(port, source="127.0.0.3")
        assert fourth.greeting is not None
        assert fourth.greeting.code == 421
        assert refused("connections") == before + 2
        # Those let in work as ever; once one leaves, its place is free again.
        await first.ehlo()
        reply = await first.send(SENDER, [f"14155550123@{FAX_DOMAIN}"], fax_mail("x"))
        assert reply.code == 250
        await first.close()

        async def admitted() -> bool:
            again = await RawSmtp.connect(port)
            assert again.greeting is not None
            await again.close()
            return again.greeting.code == 220

        await wait_for(admitted, what="a place freed")
        for client in (second, third, other, fourth):
            await client.close()


# ---------------------------------------------------------------------------- AUTH


@dataclass
class Pauses:
    """Stands in for asyncio.sleep in the listener: the delays asked for, none waited."""

    asked: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def auth_daemon(tmp_path: Path, tls: Tls) -> AsyncIterator[Daemon]:
    async with smtp_daemon(
        tmp_path / "state",
        **alice_over_tls(tls),
        auth_failure_delay=0.5,
        auth_max_failures=8,
        auth_failure_window="15m",
    ) as running:
        yield running


async def tls_client(port: int, tls: Tls, source: str = "127.0.0.1") -> RawSmtp:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, limit=2**20, local_addr=(source, 0)
    )
    client = RawSmtp(reader, writer)
    client.greeting = await client.read_reply()
    await client.ehlo()
    assert (await client.starttls(tls.client)).code == 220
    assert "AUTH LOGIN PLAIN" in (await client.ehlo()).lines  # and no other mechanism
    return client


async def closed(client: RawSmtp) -> bool:
    """The server hung up on the client (the client's side is closed too)."""
    try:
        return await asyncio.wait_for(client.reader.read(1), 10) == b""
    except (ConnectionError, ssl.SSLError):
        return True
    finally:
        await client.close()


async def test_auth_login_before_starttls_is_refused_unchecked(auth_daemon: Daemon) -> None:
    async with smtp_client(smtp_port(auth_daemon)) as client:
        await client.ehlo()
        reply = await client.command("AUTH LOGIN")
        assert (reply.code, reply.status) == (538, "5.7.11")
        reply = await client.auth_plain("alice", PASSWORD)  # right, but in clear
        assert (reply.code, reply.status) == (538, "5.7.11")
    limiter = auth_daemon.smtp.handler.login_limiter if auth_daemon.smtp else None
    assert limiter is not None
    assert limiter.tracked() == 0  # not even counted as failures


async def test_guessing_is_slowed_then_refused_per_address(auth_daemon: Daemon, tls: Tls) -> None:
    assert auth_daemon.smtp is not None
    handler = auth_daemon.smtp.handler
    pauses, clock = Pauses(), Clock()
    handler.pause = pauses
    assert handler.login_limiter is not None
    handler.login_limiter.clock = clock
    port = smtp_port(auth_daemon)
    delayed, locked = throttled("delayed"), throttled("refused")

    # A person mistyping: five tries on one connection, answered at once.
    first = await tls_client(port, tls)
    codes = [(await first.auth_plain("alice", f"guess {n}")).code for n in range(FREE_FAILURES)]
    assert codes == [535] * FREE_FAILURES
    assert pauses.asked == []
    await first.close()

    # A program reconnecting to guess on: each try waits, twice as long each time ...
    second = await tls_client(port, tls)
    assert (await second.auth_plain("alice", "guess 5")).code == 535
    assert (await second.auth_plain("alice", "guess 6")).code == 535
    assert pauses.asked == [0.5, 1.0]
    # ... and the 8th failure within the window closes the connection with 421.
    reply = await second.auth_plain("alice", "guess 7")
    assert reply == Reply(421, "4.7.0 Too many failed authentication attempts")
    assert await closed(second)

    # Locked out: even the right password is refused, unchecked, at once.
    third = await tls_client(port, tls)
    reply = await third.auth_plain("alice", PASSWORD)
    assert (reply.code, reply.status) == (421, "4.7.0")
    assert await closed(third)
    assert pauses.asked == [0.5, 1.0, 2.0]  # only the third try on `second` waited more
    assert throttled("delayed") == delayed + 3
    assert throttled("refused") == locked + 2

    # Another address is not held up by this one's failures (127.0.0.0/8 is all loopback).
    other = await tls_client(port, tls, source="127.0.0.2")
    assert (await other.auth_plain("alice", PASSWORD)).code == 235
    await other.close()

    # Once the window has passed, the right password works and forgets the failures.
    clock.now += 15 * 60 + 1
    fourth = await tls_client(port, tls)
    assert (await fourth.auth_plain("alice", PASSWORD)).code == 235
    reply = await fourth.send("anyone@example.org", [f"14155550300@{FAX_DOMAIN}"], fax_mail("x"))
    assert reply.code == 250
    await fourth.close()
    assert handler.login_limiter.tracked() == 0


def test_the_limiter_waits_doubles_caps_and_locks() -> None:
    clock = Clock()
    limiter = AuthLimiter(first_delay=1.0, max_failures=12, window=600.0, clock=clock)
    delays = []
    for _ in range(11):
        throttle = limiter.next_attempt("192.0.2.1")
        assert not throttle.refused
        delays.append(throttle.delay)
        limiter.failed("192.0.2.1")
    assert delays == [0.0] * 5 + [1.0, 2.0, 4.0, 8.0, 16.0, MAX_DELAY]
    assert limiter.failed("192.0.2.1").refused  # the 12th
    assert limiter.next_attempt("192.0.2.1").refused
    assert limiter.next_attempt("192.0.2.2").delay == 0.0  # addresses are apart

    # The window slides: when the oldest failures age out, one more try is let through.
    clock.now += 600.0
    assert limiter.next_attempt("192.0.2.1").delay == 0.0
    limiter.succeeded("192.0.2.1")
    assert limiter.tracked() == 0


def test_the_limiter_can_be_switched_off_and_stays_small() -> None:
    clock = Clock()
    never = AuthLimiter(first_delay=0.0, max_failures=0, window=60.0, clock=clock)
    for _ in range(100):
        never.failed("192.0.2.1")
    assert never.next_attempt("192.0.2.1") == never.next_attempt("192.0.2.9")
    assert not never.next_attempt("192.0.2.1").refused
    assert never.next_attempt("192.0.2.1").delay == 0.0

    small = AuthLimiter(first_delay=1.0, max_failures=3, window=60.0, max_tracked=50, clock=clock)
    for n in range(10_000):  # a botnet, one try each
        small.failed(f"10.0.{n // 256}.{n % 256}")
        clock.now += 0.001
    assert small.tracked() <= 50
    with pytest.raises(ValueError, match="negative"):
        AuthLimiter(first_delay=-1.0, max_failures=3, window=60.0)


async def test_a_logged_in_user_has_one_daily_limit_whatever_sender_they_give(
    tmp_path: Path, tls: Tls
) -> None:
    async with smtp_daemon(
        tmp_path / "state",
        **alice_over_tls(tls),
        daily_limit=2,
    ) as daemon:
        client = await tls_client(smtp_port(daemon), tls)
        try:
            assert (await client.auth_plain("alice", PASSWORD)).code == 235
            for n, sender in enumerate(("a@example.com", "b@example.org")):
                reply = await client.send(sender, [f"1415555031{n}@{FAX_DOMAIN}"], fax_mail("x"))
                assert reply.code == 250, reply
            reply = await client.send("c@example.net", [f"14155550319@{FAX_DOMAIN}"], b"x")
            assert (reply.code, reply.status) == (452, "4.7.1"), reply
        finally:
            await client.close()


async def test_the_daily_limit_ignores_the_case_of_the_sender(tmp_path: Path) -> None:
    async with (
        smtp_daemon(tmp_path / "state", daily_limit=1) as daemon,
        smtp_client(smtp_port(daemon)) as client,
    ):
        await client.ehlo()
        to = [f"14155550320@{FAX_DOMAIN}"]
        assert (await client.send("alice@example.com", to, fax_mail("x"))).code == 250
        reply = await client.send("ALICE@Example.COM", to, fax_mail("x"))
        assert (reply.code, reply.status) == (452, "4.7.1")


# ---------------------------------------------------------------------------- costly numbers


COSTLY = [
    ("+449012345678", "premium-rate"),  # United Kingdom 09
    ("00449012345678", "premium-rate"),
    ('"+44 901 234 5678"', "premium-rate"),
    ("+49-900-1-234567", "premium-rate"),  # Germany 0900
    ("+33.891.12.34.56", "premium-rate"),  # France 08 9
    ("1-900-234-5678", "premium-rate"),  # the US, nationally
    ('"(900) 234-5678"', "premium-rate"),
    ("+611900123456", "premium-rate"),  # Australia 1900
    ("+4918012345", "shared-cost"),  # Germany 0180
    ("0033884012345", "shared-cost"),  # France 08 84
    ("+611300123456", "shared-cost"),  # Australia 1300
]


async def test_costly_numbers_however_written_are_refused_by_mail(tmp_path: Path) -> None:
    async with smtp_daemon(tmp_path / "state") as daemon, smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        await client.command(f"MAIL FROM:<{SENDER}>")
        for number, kind in COSTLY:
            reply = await client.command(f"RCPT TO:<{number}@{FAX_DOMAIN}>")
            assert (reply.code, reply.status) == (550, "5.7.1"), (number, reply)
            assert f"a {kind} number" in reply.text, (number, reply)


async def test_costly_numbers_are_refused_in_the_hot_folder(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    (outbox / "+449012345678").mkdir(parents=True)
    settings = fast_settings(tmp_path / "state").model_copy(
        update={"folders": [FolderSettings(path=outbox, stable_for=0.2, sidecar_wait=0.5)]}
    )
    async with started(settings) as daemon:
        (outbox / "+449012345678" / "letter.pdf").write_bytes(pdf_document(1))
        (outbox / "19002345678_invoice.pdf").write_bytes(pdf_document(1))
        (outbox / "batch.json").write_text('{"to": ["+4918012345"], "files": ["a.pdf"]}')
        (outbox / "a.pdf").write_bytes(pdf_document(1))
        for name, kind in (
            ("letter.pdf", "premium-rate"),
            ("19002345678_invoice.pdf", "premium-rate"),
            ("a.pdf", "shared-cost"),  # a batch is refused under its first file
        ):
            reason_file = outbox / "failed" / f"{name}.reason.txt"
            await wait_for(reason_file.exists, what=f"failed/{name}.reason.txt")
            assert f"a {kind} number" in reason_file.read_text()
        assert daemon.store.recent_jobs(10) == []


# ---------------------------------------------------------------------------- callbacks


def guid_of(daemon: Daemon, job_id: str) -> str | None:
    job = daemon.store.get_job(job_id)
    return job.provider_guid if job else None


def almost_right_tokens() -> list[str]:
    token = CALLBACK_TOKEN
    return [
        "",
        token[:-1],
        token + "x",
        token.upper(),
        token[:8],
        token + "/",
        f"{token}%2Foutbound",
        "*",
        "..",
    ]


async def test_forged_callbacks_change_nothing(tmp_path: Path) -> None:
    """Only the exact token works; anything else is 404, counted, and the fax goes on."""
    async with started(fast_settings(tmp_path / "state")) as daemon:
        assert daemon.sandbox is not None
        daemon.sandbox.faults = FaultSettings(stall_faxes=True)
        job = await queue(daemon, "+14155550123")
        guid = await wait_for(lambda: guid_of(daemon, job.id), what="the fax submitted")
        forged = json.dumps(
            {
                "Transaction": {
                    "Guid": guid,
                    "To": "14155550123",
                    "StatusCode": "E",
                    "ErrorCode": "B",
                }
            }
        )
        labels = {"direction": "outbound", "result": "bad_token"}
        before = metrics.REGISTRY.get_sample_value("faxgate_callbacks_total", labels) or 0.0
        posted = 0
        base = f"http://127.0.0.1:{daemon.http.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for token in almost_right_tokens():
                for direction in ("outbound", "inbound"):
                    answer = await http.post(
                        f"/callbacks/{token}/{direction}", files={"json": (None, forged)}
                    )
                    assert answer.status_code == 404, (token, direction, answer.status_code)
                    posted += 1
            answer = await http.post(
                f"/callbacks/x/outbound?token={CALLBACK_TOKEN}", files={"json": (None, forged)}
            )
            assert answer.status_code == 404
        counted = metrics.REGISTRY.get_sample_value("faxgate_callbacks_total", labels) or 0.0
        assert before < counted <= before + posted + 1  # those that reached the handler
        current = daemon.store.get_job(job.id)
        assert current is not None
        assert current.state is JobState.SUBMITTED
        daemon.sandbox.faults = FaultSettings()
        (ended,) = await settled(daemon, [job])
        assert ended.state is JobState.SENT
