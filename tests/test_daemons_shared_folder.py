"""Two and three `faxgate run` processes sharing one PostgreSQL store watch ONE hot folder:
each dropped file is taken by exactly one of them. One instance is SIGKILLed while its
claims folder holds files; another takes its claims over.

The sandbox is the judge: every number faxed exactly once; and every file ends in sent/
once, with one result file, none left in the folder or in a claims folder.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from faxgate.hellofax.sandbox import Sandbox
from faxgate.intake.folder.shared import PROCESSING_DIR, folder_name
from tests.conftest import pdf_document, wait_for
from tests.daemon import keeping_sandbox, one_gateway, sandbox_posts_to, stop_survivors
from tests.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]

PortFactory = Callable[[], int]
FILES = 60
LEASE = "2s"
# Each send's answer comes this long after the fax was taken: the victim is killed with
# faxes in flight, their documents in its claims folder.
SEND_DELAY = 0.3
WAVE = 4
REFUSED = 3  # waves with a file that has no number


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with keeping_sandbox(tmp_path, send_delay=SEND_DELAY) as running:
        yield running


def number(index: int) -> str:
    return f"1415555{4000 + index:04d}"


def dropped(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file()]


@pytest.mark.parametrize(
    ("count", "mode"),
    # Polling, as on an NFS or SMB mount, where inotify sees nothing of other hosts; and
    # inotify, as for one host's folder shared by instances on that host.
    [(2, "poll"), (3, "poll"), (2, "inotify")],
)
async def test_instances_sharing_one_hot_folder_take_each_file_once(
    count: int,
    mode: str,
    tmp_path: Path,
    sandbox: Sandbox,
    postgres_url: str,
    unused_tcp_port_factory: PortFactory,
) -> None:
    hot = tmp_path / "shared-outbox"
    hot.mkdir()
    folders = [{"path": str(hot), "mode": mode, "poll_interval": 0.2, "stable_for": 0.2}]
    if mode == "inotify":
        folders[0]["rescan_interval"] = 0.5  # how often the claims of the dead are looked for
    http = [unused_tcp_port_factory() for _ in range(count)]
    await sandbox_posts_to(sandbox, http[0])
    shared = {"FAXGATE_FOLDERS": json.dumps(folders)}
    instances = one_gateway(tmp_path, sandbox, postgres_url, LEASE, http, lambda n: shared)
    victim = instances[-1]
    claims = hot / PROCESSING_DIR
    try:
        await asyncio.gather(*(instance.start() for instance in instances))
        assert victim.process is not None
        mine = folder_name(f"{socket.gethostname()}:{victim.process.pid}:")

        def victim_holds() -> list[Path]:
            return [
                p
                for folder in claims.glob(mine + "*")
                for p in folder.iterdir()
                if p.name.endswith(".pdf")
            ]

        # In waves: whoever lists the folder first takes a whole wave. The victim is killed
        # the moment it is seen holding files (looked at while each wave is taken, not
        # after, when a quick victim may have finished them), and the waves go on.
        held: list[Path] = []
        killed_at = 0.0
        gone_at = 0.0  # when the victim's claims folder was first seen done and removed

        def victim_folder_gone() -> bool:
            nonlocal gone_at
            if held and not gone_at and not list(claims.glob(mine + "*")):
                gone_at = time.monotonic()
            return bool(gone_at)

        def wave_taken() -> bool:
            nonlocal killed_at
            victim_folder_gone()  # looked at all along: the takeover's time is measured
            if not held:
                held.extend(victim_holds())
                if held and victim.process is not None:
                    victim.process.send_signal(signal.SIGKILL)
                    killed_at = time.monotonic()
            return not dropped(hot)

        for wave in range(0, FILES, WAVE):
            for index in range(wave, wave + WAVE):
                (hot / f"{number(index)}_letter.pdf").write_bytes(pdf_document(1))
            if wave < REFUSED * WAVE:  # and a file no instance can fax, refused once
                (hot / f"no-number-{wave}.pdf").write_bytes(pdf_document(1))
            await wait_for(wave_taken, timeout=20, what="the wave taken")
        assert held, "the victim never took a file: nothing was taken over"
        await victim.process.wait()
        print(f"\n{count} instances ({mode}): the victim held {len(held)} files when killed")

        sent = hot / "sent"

        def all_placed() -> bool:
            victim_folder_gone()
            results = [p for p in sent.glob("*.result.json") if p.stat().st_size]
            return len(results) == FILES and not dropped(hot)

        await wait_for(all_placed, timeout=90, what="every file faxed and placed in sent/")
        await wait_for(victim_folder_gone, timeout=20, what="the victim's claims taken over")
        print(
            f"the victim's claims folder done and removed {gone_at - killed_at:.2f}s"
            f" after the kill (lease {LEASE})"
        )
    finally:
        codes = await stop_survivors(instances, instances[:-1])
    assert codes == [0] * (count - 1)

    per_number = Counter(t.to for t in sandbox.inspect() if not t.is_inbound)
    assert per_number == {number(i): 1 for i in range(FILES)}, "a file was faxed twice"
    assert sandbox.duplicates() == []
    documents = sorted(p.name for p in sent.iterdir() if p.name.endswith(".pdf"))
    assert documents == sorted(f"{number(i)}_letter.pdf" for i in range(FILES))
    results = sorted(p.name for p in sent.glob("*.result.json"))
    assert results == sorted(f"{number(i)}_letter.pdf.result.json" for i in range(FILES))
    outcomes = Counter(json.loads(p.read_text())["outcome"] for p in sent.glob("*.result.json"))
    assert outcomes == {"sent": FILES}
    failed = sorted(p.name for p in (hot / "failed").iterdir())
    assert failed == sorted(
        name
        for wave in range(0, REFUSED * WAVE, WAVE)
        for name in (f"no-number-{wave}.pdf", f"no-number-{wave}.pdf.reason.txt")
    ), "a file refused twice, or one faxable refused"
    assert not list((hot / "processing").iterdir()), "a status file was left behind"
    # The survivors' claims folders hold no file and no claim: only their locks, the
    # records of drops placed, and perhaps the temporary file of a placement record the
    # victim was writing when it was killed (hidden, removed with the folder).
    left = [
        p
        for p in claims.rglob("*")
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".placed.json")
    ]
    assert left == [], left
    sends = [instance.log.read_text().count("submitting job=") for instance in instances]
    taken_over = sum(
        instance.log.read_text().count("instance gone taken over") for instance in instances
    )
    print(f"sends by instance: {sends}; claims folders of the dead taken over: {taken_over}")
    assert taken_over >= 1, "no instance took the victim's claims folder over"
