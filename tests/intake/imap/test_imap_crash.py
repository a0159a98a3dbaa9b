"""`faxgate run` killed with SIGKILL while it takes a mailbox's messages, then started
again: every message is taken exactly once (one job each, or one refusal with its reply),
and every message leaves the mailbox. The daemon runs as a real process."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import sqlite3
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from faxgate.hellofax.sandbox import Sandbox
from faxgate.store import Store
from tests.conftest import wait_for
from tests.daemon import DaemonProcess
from tests.intake.imap.dovecot import PASSWORD, USER, Dovecot
from tests.intake.smtp.testing import SENDER, fax_mail

FAXES = 120
REFUSALS = 20


def taken_count(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database) as conn:
            return int(conn.execute("SELECT count(*) FROM imap_taken").fetchone()[0])
    except sqlite3.OperationalError:  # not made yet
        return 0


async def test_killed_while_taking_every_message_is_taken_once(
    sandbox: Sandbox,
    tmp_path: Path,
    dovecot: Dovecot,
    unused_tcp_port_factory: Callable[[], int],
) -> None:
    messages = [
        fax_mail(f"1415555{100 + n % 100:04d}", message_id=f"<fax-{n}@example.com>", pages=1)
        for n in range(FAXES)
    ]
    refused = [
        fax_mail(
            "14155550100",
            message_id=f"<zip-{n}@example.com>",
            body=None,
            attachment=("archive.zip", b"PK\x03\x04", "application/zip"),
        )
        for n in range(REFUSALS)
    ]
    mixed = [*messages]
    for n, message in enumerate(refused):
        mixed.insert(n * 6, message)
    dovecot.append_many(mixed)
    state_dir = tmp_path / "state"
    process = DaemonProcess(
        state_dir,
        sandbox,
        unused_tcp_port_factory(),
        extra_env={
            "FAXGATE_SMTP__ALLOWED_SENDERS": json.dumps([SENDER]),
            "FAXGATE_IMAP__ENABLED": "true",
            "FAXGATE_IMAP__HOST": "127.0.0.1",
            "FAXGATE_IMAP__PORT": str(dovecot.imaps_port),
            "FAXGATE_IMAP__CA_FILE": str(dovecot.ca_file),
            "FAXGATE_IMAP__USERNAME": USER,
            "FAXGATE_IMAP__PASSWORD": PASSWORD,
        },
    )
    database = state_dir / "faxgate.sqlite3"
    try:
        await process.start()
        await wait_for(
            lambda: taken_count(database) > 0, timeout=30, interval=0.002, what="a first take"
        )
        await process.kill()
        assert taken_count(database) < FAXES + REFUSALS  # killed mid-way
        await process.start()
        total = FAXES + REFUSALS

        async def all_moved() -> bool:
            processed = await asyncio.to_thread(dovecot.count, "faxgate.processed")
            refused_now = await asyncio.to_thread(dovecot.count, "faxgate.refused")
            inbox = await asyncio.to_thread(dovecot.count, "INBOX")
            return (processed, refused_now, inbox) == (FAXES, REFUSALS, 0)

        await wait_for(all_moved, timeout=60, interval=0.2, what="every message moved")
        with Store.open(database) as store:
            jobs = store.recent_jobs(1000)
        assert sorted(job.intake_ref["message_id"] for job in jobs) == sorted(
            f"<fax-{n}@example.com>" for n in range(FAXES)
        )
        assert taken_count(database) == total

        def refusal_replies() -> dict[str, str]:
            found = {
                str(mail["Message-ID"]): str(mail["In-Reply-To"])
                for mail in replies_of(state_dir)
                if str(mail["Subject"]).startswith("Fax not sent")
            }
            return found if len(found) >= REFUSALS else {}

        found = await wait_for(refusal_replies, timeout=30, what="the replies to refusals")
        # One reply per refused message: a repeat after the kill would carry the same
        # Message-ID (the outbox row's), so the sender sees one.
        assert sorted(found.values()) == sorted(f"<zip-{n}@example.com>" for n in range(REFUSALS))
    finally:
        if process.process is not None:
            await process.stop()


def replies_of(state_dir: Path) -> list[EmailMessage]:
    folder = state_dir / "maildir" / "new"
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(parsed)
    return found
