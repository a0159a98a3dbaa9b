"""Messages accepted per second by faxgate's SMTP listener, beside a bare aiosmtpd server.

Run from the repository: `.venv/bin/python bench/bench_smtp.py [--messages N] [--clients C]`.

Both servers run in this process, on loopback:
- faxgate: the real listener (faxgate.intake.smtp.listener.start_smtp) with a real store and spool
  under a temporary directory. Each message is read, checked, spooled (the .eml and its
  PDF, each fsynced) and its job committed (synchronous=FULL) before the 250. The
  dispatcher does not run: this measures intake alone.
- bare: aiosmtpd with a handler that only counts messages, the same size limit.

The client is a separate process (this file with --client): C threads, each with its own
smtplib connection, send N messages in all, each with a 100 KB PDF attached and one fax
recipient. Each round runs both servers back to back, in alternating order, with the same
client; the ratio is taken within each round (the machine may be busy with other work,
which shifts both rates of a round alike), and the median round's ratio is the result.
"""

from __future__ import annotations

import argparse
import asyncio
import email.policy
import io
import json
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from _common import banner, fax_number, ratio, table
from aiosmtpd.smtp import SMTP, Envelope, Session
from pypdf import PdfWriter
from pypdf.generic import DictionaryObject, NameObject, NumberObject, StreamObject

from faxgate.domain.documents import check_readable
from faxgate.domain.message import CoverMode, fax_content
from faxgate.domain.numbers import parse_fax_number
from faxgate.intake.smtp.accept import Fax
from faxgate.intake.smtp.listener import SmtpListener, start_smtp
from faxgate.intake.smtp.message import read_mail
from faxgate.settings import Settings
from faxgate.store import Store
from faxgate.store.spool import Spool

GOAL = 0.6  # faxgate's rate over the bare server's
PDF_BYTES = 100 * 1024
SENDER = "bench@example.com"


# ---------------------------------------------------------------------------- the client


def scan_pdf() -> bytes:
    """A one-page PDF of about 100 KB as a scanner writes it: the page one gray image whose
    samples are random (incompressible, like a scan), the file well formed to its end."""
    side = int((PDF_BYTES - 1024) ** 0.5)
    writer = PdfWriter()
    page = writer.add_blank_page(width=612, height=792)
    image = StreamObject()
    image._data = os.urandom(side * side)
    image.update(
        {
            NameObject("/Type"): NameObject("/XObject"),
            NameObject("/Subtype"): NameObject("/Image"),
            NameObject("/Width"): NumberObject(side),
            NameObject("/Height"): NumberObject(side),
            NameObject("/ColorSpace"): NameObject("/DeviceGray"),
            NameObject("/BitsPerComponent"): NumberObject(8),
        }
    )
    draw = StreamObject()
    draw._data = b"q 612 0 0 792 0 0 cm /Scan Do Q"
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/XObject"): DictionaryObject({NameObject("/Scan"): writer._add_object(image)})}
    )
    page[NameObject("/Contents")] = writer._add_object(draw)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def message_with_pdf() -> bytes:
    """A message as a scanner sends it: a line of text and a 100 KB PDF."""
    pdf = scan_pdf()
    message = EmailMessage()
    message["From"] = f"Scanner <{SENDER}>"
    message["To"] = "fax@fax.local"
    message["Subject"] = "Scan"
    message.set_content("Scanned document attached.\n")
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename="scan.pdf")
    return message.as_bytes(policy=email.policy.SMTP)  # CRLF: smtplib sends bytes as they are


def run_client(port: int, messages: int, clients: int) -> dict[str, Any]:
    """Send `messages` over `clients` connections at once; the seconds it took."""
    data = message_with_pdf()
    shares = [messages // clients + (1 if n < messages % clients else 0) for n in range(clients)]
    start = threading.Barrier(clients + 1)
    refused: list[str] = []

    def send(share: int, first: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="bench-client", timeout=60) as smtp:
            start.wait()
            for n in range(first, first + share):
                recipient = fax_number(n).lstrip("+") + "@fax.local"
                try:
                    smtp.sendmail(SENDER, [recipient], data)
                except smtplib.SMTPException as exc:
                    refused.append(repr(exc))

    firsts = [sum(shares[:n]) for n in range(clients)]
    threads = [
        threading.Thread(target=send, args=(share, first))
        for share, first in zip(shares, firsts, strict=True)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "sent": messages - len(refused), "refused": refused[:3]}


def server_cpu() -> dict[int, float]:
    """CPU seconds used so far by this process and those it started (the message readers
    and their forkserver), by process id: read before the client starts, so the client
    is not among them."""
    tick = os.sysconf("SC_CLK_TCK")
    used, parents = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        used[pid] = (int(fields[11]) + int(fields[12])) / tick

    def ours(pid: int) -> bool:
        while pid > 1:
            if pid == os.getpid():
                return True
            pid = parents.get(pid, 0)
        return False

    return {pid: seconds for pid, seconds in used.items() if ours(pid)}


async def client_round(port: int, messages: int, clients: int) -> dict[str, Any]:
    before = server_cpu()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--client",
        str(port),
        "--messages",
        str(messages),
        "--clients",
        str(clients),
        stdout=subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the client failed with exit code {process.returncode}")
    result: dict[str, Any] = json.loads(out)
    after = server_cpu()
    # A reader renewed during the round is left out of both: a slight undercount.
    result["server_cpu"] = sum(after[pid] - before[pid] for pid in before.keys() & after.keys())
    if result["refused"]:
        raise RuntimeError(f"messages were refused: {result['refused']}")
    return result


# ---------------------------------------------------------------------------- the servers


class CountingHandler:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        return "250 OK"


async def bare_server(size_limit: int) -> tuple[asyncio.Server, CountingHandler]:
    handler = CountingHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench", data_size_limit=size_limit),
        "127.0.0.1",
        0,
    )
    return server, handler


async def faxgate_server(state_dir: Path) -> tuple[SmtpListener, Store]:
    settings = Settings(state_dir=state_dir, smtp={"listen": "127.0.0.1:0"})
    store = Store.open(settings.database_path)
    listener = await start_smtp(settings, store, Spool(settings.spool_dir))
    return listener, store


def reading_cost(runs: int = 200) -> tuple[float, float]:
    """CPU milliseconds to read one bench message (fax_content), and of that the PDF's
    structure check (check_readable): each the median of `runs`."""
    data = message_with_pdf()
    pdf = fax_content(data, recipient="14155550100@fax.local").documents[0].content

    def median_ms(call: Any) -> float:
        times = []
        for _ in range(runs):
            start = time.process_time()
            call()
            times.append(time.process_time() - start)
        return statistics.median(times) * 1000

    whole = median_ms(lambda: fax_content(data, recipient="14155550100@fax.local"))
    check = median_ms(lambda: check_readable("scan.pdf", "application/pdf", pdf))
    return whole, check


def hostile_reading_cost(runs: int = 3) -> tuple[float, float]:
    """CPU milliseconds to read the bench message as the listener does (read_mail: the
    content, the reply's address, the priority), and the same message with a megabyte
    Subject and a 250 KB Reply-To of words: the header parser is quadratic in a value."""
    data = message_with_pdf()
    words = b"word " * 50_000
    hostile = b"Reply-To: " + words + b"\r\nX-Junk: " + words * 4 + b"\r\n" + data
    hostile = hostile.replace(b"Subject: Scan", b"Subject: " + words * 4, 1)
    faxes = [Fax(parse_fax_number("14155550100"), recipient="fax@fax.local")]

    def median_ms(raw: bytes) -> float:
        times = []
        for _ in range(runs):
            start = time.process_time()
            read_mail(
                raw, sender=SENDER, login=None, faxes=faxes, cover=CoverMode.NEVER, from_line=None
            )
            times.append(time.process_time() - start)
        return statistics.median(times) * 1000

    return median_ms(data), median_ms(hostile)


async def bench(messages: int, clients: int, rounds: int) -> None:
    banner("SMTP intake: messages accepted per second, 100 KB PDF attached")
    whole, check = reading_cost()
    print(f"reading one message: {whole:.1f} ms of CPU, of which the PDF check {check:.2f} ms")
    plain, hostile = hostile_reading_cost()
    print(
        f"the same with a 1 MB Subject and a 250 KB Reply-To of words: {hostile:.1f} ms of CPU"
        f" (without them, by the same path: {plain:.1f} ms; {ratio(hostile, plain)})"
    )
    print()
    with tempfile.TemporaryDirectory(prefix="faxgate-bench-smtp-") as folder:
        listener, store = await faxgate_server(Path(folder) / "state")
        bare, counter = await bare_server(Settings().smtp.max_message_size)
        ports = {"bare": int(bare.sockets[0].getsockname()[1]), "faxgate": listener.port}
        results: list[dict[str, float]] = []
        try:
            for number in range(rounds):
                order = ("bare", "faxgate") if number % 2 == 0 else ("faxgate", "bare")
                rates = {}
                for name in order:
                    result = await client_round(ports[name], messages, clients)
                    rates[name] = result["sent"] / result["seconds"]
                    rates[f"{name} cpu"] = 1000 * result["server_cpu"] / result["sent"]
                results.append(rates)
            jobs = len(store.recent_jobs(messages * rounds + 1))
            transactions = listener.handler.intake.committer.transactions
        finally:
            await listener.stop()
            bare.close()
            await bare.wait_closed()
            store.close()
    assert counter.count == messages * rounds, counter.count
    assert jobs == messages * rounds, jobs
    print(f"{messages} messages per round and server, {clients} client connections")
    print()
    rows = [
        [f"round {n}", f"{r['bare']:.0f}", f"{r['faxgate']:.0f}", ratio(r["faxgate"], r["bare"])]
        for n, r in enumerate(results, start=1)
    ]
    print(table(["", "bare aiosmtpd msg/s", "faxgate msg/s", "faxgate / bare"], rows))
    print()
    ratios = sorted(r["faxgate"] / r["bare"] for r in results)
    median = statistics.median(ratios)
    verdict = "met" if median >= GOAL else "NOT met"
    print(f"median faxgate / bare: {median:.2f}x (goal: at least {GOAL:.1f}x: {verdict})")
    cpu = {
        name: statistics.median(r[f"{name} cpu"] for r in results) for name in ("bare", "faxgate")
    }
    print(
        f"server CPU per message (the listener and its readers, median round): bare"
        f" {cpu['bare']:.1f} ms, faxgate {cpu['faxgate']:.1f} ms: bare / faxgate"
        f" {ratio(cpu['bare'], cpu['faxgate'])} (CPU time: a busy machine shifts it less)"
    )
    print(f"store transactions: {transactions} for {jobs} messages")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400, help="messages per round")
    parser.add_argument("--clients", type=int, default=8, help="client connections at once")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (each server once)")
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client is not None:
        json.dump(run_client(args.client, args.messages, args.clients), sys.stdout)
        return 0
    asyncio.run(bench(args.messages, args.clients, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
