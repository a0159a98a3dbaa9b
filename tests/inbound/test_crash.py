"""faxgate killed with SIGKILL while faxes come in: none is lost, none delivered twice.

The daemon runs as a real process; the sandbox lives in the test, so it outlives it and
keeps retrying the callbacks the dead daemon did not answer.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from faxgate.hellofax.sandbox import Sandbox, inject_inbound
from faxgate.store import Store
from tests.conftest import (
    SANDBOX_LINE,
    pdf_document,
    wait_for,
)
from tests.daemon import DaemonProcess, child_daemon


@pytest.fixture
async def daemon(
    sandbox: Sandbox, tmp_path: Path, unused_tcp_port: int
) -> AsyncIterator[DaemonProcess]:
    inbound = {
        "FAXGATE_INBOUND__DEFAULT_EMAIL": json.dumps(["desk@example.com"]),
        "FAXGATE_INBOUND__DEFAULT_FOLDER": str(tmp_path / "out"),
    }
    state_dir = tmp_path / "state"
    async with child_daemon(
        sandbox, state_dir, unused_tcp_port, inbound, callbacks="inbound"
    ) as process:
        yield process


@contextmanager
def notifier_held(state_dir: Path) -> Iterator[None]:
    """Hold the notifier's cycle lock: the daemon stores faxes but delivers none."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / "faxgate.sqlite3.notifier-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


async def fax_in(sandbox: Sandbox, tmp_path: Path, n: int) -> str:
    document = tmp_path / f"in-{n}.pdf"
    document.write_bytes(pdf_document(1 + n % 3))
    sender = f"1212555{n:04d}"
    return str((await inject_inbound(sandbox.base_url, SANDBOX_LINE, sender, document))["Guid"])


def stored(state_dir: Path) -> dict[str, bool]:
    """Provider GUID -> every delivery done, for each fax in the store."""
    with Store.open(state_dir / "faxgate.sqlite3") as store:
        return {
            fax.provider_guid: all(d.delivered_at for d in store.inbound_deliveries(fax.id))
            for fax in store.recent_inbound(1000)
        }


def mails_by_fax(state_dir: Path) -> dict[str, list[str]]:
    """faxgate's fax id -> the Message-IDs of the mails about it."""
    found: dict[str, list[str]] = defaultdict(list)
    new = state_dir / "maildir" / "new"
    for path in new.iterdir() if new.is_dir() else []:
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        found[str(mail["X-Faxgate-Inbound"])].append(str(mail["Message-ID"]))
    return found


def written(folder: Path) -> Counter[str]:
    """Files in the output folder by suffix; temporary ones counted apart."""
    return (
        Counter("partial" if p.name.startswith(".") else p.suffix for p in folder.iterdir())
        if folder.is_dir()
        else Counter()
    )


async def test_killed_between_receiving_and_delivering(
    daemon: DaemonProcess, sandbox: Sandbox, tmp_path: Path
) -> None:
    with notifier_held(daemon.state_dir):
        await daemon.start()
        guid = await fax_in(sandbox, tmp_path, 1)
        await wait_for(lambda: guid in stored(daemon.state_dir), what="the fax stored")
        await daemon.kill()
        assert mails_by_fax(daemon.state_dir) == {}
        assert written(tmp_path / "out") == Counter()

    await daemon.start()
    await wait_for(lambda: stored(daemon.state_dir) == {guid: True}, what="the fax delivered")
    (messages,) = mails_by_fax(daemon.state_dir).values()
    assert len(messages) == 1
    assert written(tmp_path / "out") == Counter({".pdf": 1, ".json": 1})
    assert await daemon.stop() == 0


async def test_killed_again_and_again_while_faxes_come_in(
    daemon: DaemonProcess, sandbox: Sandbox, tmp_path: Path
) -> None:
    await daemon.start()
    guids = []
    for round_ in range(2):
        for n in range(4):
            guids.append(await fax_in(sandbox, tmp_path, 4 * round_ + n))
        target = 4 * round_ + 2

        def some_stored(target: int = target) -> bool:
            return len(stored(daemon.state_dir)) >= target

        await wait_for(some_stored, timeout=30, what=f"{target} faxes stored")
        await daemon.kill()
        await daemon.start()

    def all_delivered() -> bool:
        found = stored(daemon.state_dir)
        return set(found) == set(guids) and all(found.values())

    # The sandbox retries the callbacks the dead daemon missed; the restarted one delivers.
    try:
        await wait_for(all_delivered, timeout=60, what="every fax stored and delivered")
    except AssertionError as late:  # say what the daemon did meanwhile
        raise AssertionError(f"{late}\n{daemon.log.read_text()[-4000:]}") from None
    mails = mails_by_fax(daemon.state_dir)
    assert len(mails) == len(guids)
    # A mail is sent at least once; a copy (a kill right after sending) has the same id.
    assert all(len(set(ids)) == 1 for ids in mails.values()), mails
    assert written(tmp_path / "out") == Counter({".pdf": len(guids), ".json": len(guids)})
    assert await daemon.stop() == 0
