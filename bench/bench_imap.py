"""The IMAP intake: messages taken per second, and the time from a message's delivery into
the mailbox to its job queued; beside the same messages by SMTP, in the same run.

Run from the repository: `.venv/bin/python bench/bench_imap.py [--messages N] [--samples S]`.
Needs Dovecot (Debian's dovecot-imapd), started here as the tests start it (its own
configuration, TLS on a loopback port, maildir in a temporary folder).

- throughput: N messages (one 100 KB scanned PDF each, one fax number) are put into the
  mailbox first (APPEND), then the intake starts; the time until the last job is
  committed. The baseline: the same N messages sent to faxgate's SMTP listener over one
  connection, each answered 250 only once its job is committed.
- latency: with the intake waiting in IDLE, S messages are delivered one at a time; the
  time from the APPEND's answer to the job committed (p50, p99). The baseline: the time
  of one SMTP transaction (MAIL to the 250 after DATA), one message at a time.

Both intakes store the same way (the .eml and the PDF spooled and fsynced, the job
committed, synchronous=FULL); the dispatcher does not run: this measures intake alone.
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.intake.imap.dovecot

from _common import banner, ratio, table
from bench_smtp import message_with_pdf

from faxgate.domain.jobs import Job
from faxgate.intake.imap.session import ImapSession, tls_context
from faxgate.intake.imap.taking import MessageTaker
from faxgate.intake.imap.watcher import ImapIntake
from faxgate.intake.smtp.handler import HandlerConfig
from faxgate.intake.smtp.listener import start_smtp
from faxgate.settings import Settings
from faxgate.store import Store
from faxgate.store.spool import Spool
from tests.intake.imap.dovecot import PASSWORD, USER, Dovecot

SENDER = "bench@example.com"


def settings(state_dir: Path, server: Dovecot) -> Settings:
    return Settings(
        state_dir=state_dir,
        log_level="warning",
        smtp={"listen": "127.0.0.1:0", "allowed_senders": [SENDER], "reader_processes": 0},
        addressing={"subject_addresses": ["fax@fax.local"]},
        imap={
            "enabled": True,
            "host": "127.0.0.1",
            "port": server.imaps_port,
            "ca_file": str(server.ca_file),
            "username": USER,
            "password": PASSWORD,
        },
    )


def message(index: int, pdf_message: bytes) -> bytes:
    """The scanner's message, to a number of its own, with a Message-ID of its own."""
    head, _, body = pdf_message.partition(b"\r\n\r\n")
    number = f"1415555{1000 + index % 9000:04d}"
    head = head.replace(b"To: fax@fax.local", f"To: {number}@fax.local".encode())
    return head + f"\r\nMessage-ID: <bench-{index}@example.com>".encode() + b"\r\n\r\n" + body


class Watching:
    """An IMAP intake on a fresh store, telling when each job was committed."""

    def __init__(self, state_dir: Path, server: Dovecot) -> None:
        self.settings = settings(state_dir, server)
        self.store = Store.open(self.settings.database_path)
        taker = MessageTaker(
            HandlerConfig.of(self.settings),
            self.store,
            Spool(self.settings.spool_dir),
            max_size=self.settings.smtp.max_message_size,
        )
        self.intake = ImapIntake(self.settings, taker, on_accept=self._accepted)
        self.queued: dict[str, float] = {}  # Message-ID -> when its job was committed
        self.arrived = asyncio.Event()

    def _accepted(self, jobs: list[Job]) -> None:
        now = time.perf_counter()
        for job in jobs:
            self.queued[str(job.intake_ref.get("message_id"))] = now
        self.arrived.set()

    async def until(self, count: int) -> None:
        while len(self.queued) < count:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 120)

    async def close(self) -> None:
        await self.intake.stop()
        self.store.close()


async def imap_throughput(root: Path, server: Dovecot, messages: list[bytes]) -> float:
    await asyncio.to_thread(server.append_many, messages)
    watching = Watching(root / "imap-throughput", server)
    began = time.perf_counter()
    watching.intake.start()
    await watching.until(len(messages))
    seconds = time.perf_counter() - began
    await watching.close()
    return len(messages) / seconds


async def imap_latency(root: Path, server: Dovecot, messages: list[bytes]) -> list[float]:
    watching = Watching(root / "imap-latency", server)
    watching.intake.start()
    await asyncio.to_thread(watching.intake.connected.wait, 30)
    delays = []
    with server.client() as imap:
        for index, raw in enumerate(messages):
            await asyncio.sleep(0.05)  # let the intake settle back into IDLE
            status, _ = await asyncio.to_thread(imap.append, "INBOX", None, None, raw)
            assert status == "OK"
            delivered = time.perf_counter()
            await watching.until(index + 1)
            delays.append(watching.queued[f"<bench-{index + 10**6}@example.com>"] - delivered)
    await watching.close()
    return delays


def bare_idle(server: Dovecot, samples: int) -> list[float]:
    """The server's own part: from an APPEND's answer to the EXISTS seen by a client that
    only waits in IDLE (Dovecot gathers changes for half a second before it tells)."""
    config = settings(Path("/nonexistent"), server).imap
    session = ImapSession(config, tls_context(config))
    session.connect()
    session.open("INBOX", [])
    delays = []
    delivered: list[float] = []
    with server.client() as imap:

        def deliver() -> None:
            time.sleep(0.1)  # the other side is in IDLE by then
            imap.append("INBOX", None, None, b"From: a@b.example\r\n\r\nx\r\n")
            delivered.append(time.perf_counter())

        for _ in range(samples):
            thread = threading.Thread(target=deliver)
            thread.start()
            session.idle(30, threading.Event())
            seen = time.perf_counter()
            thread.join()
            delays.append(max(0.0, seen - delivered[-1]))
    session.close()
    return delays


async def smtp_runs(
    root: Path, server: Dovecot, messages: list[bytes]
) -> tuple[float, list[float]]:
    config = settings(root / "smtp", server)
    store = Store.open(config.database_path)
    listener = await start_smtp(config, store, Spool(config.spool_dir))

    def send() -> list[float]:
        times = []
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=60) as smtp:
            for index, raw in enumerate(messages):
                began = time.perf_counter()
                smtp.sendmail(SENDER, [f"1415555{1000 + index % 9000:04d}@fax.local"], raw)
                times.append(time.perf_counter() - began)
        return times

    began = time.perf_counter()
    times = await asyncio.to_thread(send)
    rate = len(messages) / (time.perf_counter() - began)
    await listener.stop()
    store.close()
    return rate, times


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def bench(count: int, samples: int) -> None:
    pdf_message = message_with_pdf()
    burst = [message(n, pdf_message) for n in range(count)]
    one_by_one = [message(n + 10**6, pdf_message) for n in range(samples)]
    with tempfile.TemporaryDirectory(prefix="faxgate-bench-imap-") as folder:
        root = Path(folder)
        server = Dovecot(root / "dovecot")
        server.start()
        try:
            imap_rate = await imap_throughput(root, server, burst)
            delays = await imap_latency(root, server, one_by_one)
            smtp_rate, smtp_times = await smtp_runs(root, server, burst)
            bare = await asyncio.to_thread(bare_idle, server, min(samples, 20))
        finally:
            server.stop()
            server.remove()
    ms = 1000.0
    print(
        table(
            ["intake", "msg/s", "p50 ms", "p99 ms"],
            [
                [
                    "IMAP (APPEND to job queued)",
                    f"{imap_rate:.1f}",
                    f"{percentile(delays, 0.5) * ms:.1f}",
                    f"{percentile(delays, 0.99) * ms:.1f}",
                ],
                [
                    "bare IDLE client (APPEND to EXISTS)",
                    "-",
                    f"{percentile(bare, 0.5) * ms:.1f}",
                    f"{percentile(bare, 0.99) * ms:.1f}",
                ],
                [
                    "SMTP, one connection (MAIL to 250)",
                    f"{smtp_rate:.1f}",
                    f"{percentile(smtp_times, 0.5) * ms:.1f}",
                    f"{percentile(smtp_times, 0.99) * ms:.1f}",
                ],
            ],
        )
    )
    print()
    print(
        f"IMAP / SMTP throughput: {ratio(imap_rate, smtp_rate)}; mean IMAP delay "
        f"{statistics.mean(delays) * ms:.1f} ms over {len(delays)} messages"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    banner("IMAP intake: messages taken per second, delivery to job queued")
    asyncio.run(bench(args.messages, args.samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
