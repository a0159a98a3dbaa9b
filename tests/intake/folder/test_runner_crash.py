"""faxgate killed with SIGKILL while it takes dropped files: after restarts every file is
faxed exactly once and ends in sent/, none is lost or left behind. The daemon runs as a
real process (tests/daemon.py); the sandbox lives in the test, so it outlives it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from faxgate.hellofax.sandbox import Sandbox
from tests.conftest import pdf_document, wait_for
from tests.daemon import DaemonProcess, child_daemon

ROUNDS = 3
PER_ROUND = 40


@pytest.fixture
async def daemon(
    sandbox: Sandbox, tmp_path: Path, unused_tcp_port: int
) -> AsyncIterator[DaemonProcess]:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    folders = [{"path": str(outbox), "stable_for": 0.2, "rescan_interval": 3600}]
    env = {"FAXGATE_FOLDERS": json.dumps(folders)}
    async with child_daemon(sandbox, tmp_path / "state", unused_tcp_port, env) as process:
        yield process


def dropped(outbox: Path) -> list[Path]:
    return [p for p in outbox.iterdir() if p.is_file()]


async def test_killed_while_claiming_loses_nothing_and_sends_once(
    daemon: DaemonProcess, sandbox: Sandbox, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    numbers = [f"1415555{2000 + n:04d}" for n in range(ROUNDS * PER_ROUND)]
    daemon.state_dir.mkdir()
    await daemon.start()
    for round_ in range(ROUNDS):
        batch = numbers[round_ * PER_ROUND : (round_ + 1) * PER_ROUND]
        for number in batch:
            (outbox / f"{number}_letter.pdf").write_bytes(pdf_document(1))

        def claiming(count: int = len(batch)) -> bool:
            return len(dropped(outbox)) < count  # the first files are being taken

        await wait_for(claiming, timeout=20, what="faxgate taking the files")
        await daemon.kill()
        await daemon.start()

    sent = outbox / "sent"

    def all_placed() -> bool:
        results = [p for p in sent.glob("*.result.json") if p.stat().st_size]
        return len(results) == len(numbers) and not dropped(outbox)

    await wait_for(all_placed, timeout=60, what="every file faxed and placed in sent/")
    assert await daemon.stop() == 0

    per_number = Counter(t.to for t in sandbox.inspect() if not t.is_inbound)
    assert set(per_number) == set(numbers)
    assert set(per_number.values()) == {1}, "a file was sent twice"
    documents = sorted(p.name for p in sent.iterdir() if not p.name.endswith(".json"))
    assert documents == sorted(f"{number}_letter.pdf" for number in numbers)
    outcomes = {json.loads(p.read_text())["outcome"] for p in sent.glob("*.result.json")}
    assert outcomes == {"sent"}
    claims = daemon.state_dir / "spool" / "folder"
    assert not list(claims.glob("*.claim.json")), "a claim was left unfinished"
    assert not list((outbox / "processing").iterdir()), "a status file was left behind"
    # Alone on SQLite, the claims stay in the spool: nothing of a shared folder's is made.
    assert sorted(p.name for p in outbox.iterdir()) == ["failed", "processing", "sent"]
