"""A hot folder shared by several instances: each file taken by exactly one, and the
claims of an instance gone finished by another, never queued twice. Two instances here are
two SharedClaims in one process (their locks exclude each other as two processes' do)."""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from faxgate.domain.numbers import parse_fax_number
from faxgate.intake.folder import claim_moves, claim_queue, shared
from faxgate.intake.folder.claim_records import DropClaim, NotTaken, Outcome, Queued
from faxgate.intake.folder.claims import LOCK_NAME, ClaimBox
from faxgate.intake.folder.drops import Drop
from faxgate.intake.folder.folders import HotFolders
from faxgate.intake.folder.naming import NumberSource
from faxgate.intake.folder.ready import Signature
from faxgate.intake.folder.runner import FolderError
from faxgate.intake.folder.shared import (
    PROCESSING_DIR,
    SharedClaims,
    folder_name,
    local_only_locks,
)
from faxgate.intake.folder.status import FolderRef, Places
from faxgate.intake.queue import queue_faxes
from faxgate.store import Store
from tests.conftest import pdf_document, wait_for
from tests.daemon import fast_settings
from tests.intake.folder.claiming import Killed, kill_on, killed_taking, places

__all__ = ["places"]  # the fixture


def instance(tmp_path: Path, places: Places, store: Store, name: str) -> SharedClaims:
    spool = tmp_path / name / "spool"
    return SharedClaims.open(
        places.folder, f"host:{name}", lambda root: ClaimBox(spool, store, root=root)
    )


def drop(places: Places, name: str, content: int = 1) -> dict[str, Signature]:
    path = places.folder / name
    path.write_bytes(pdf_document(content))
    info = os.lstat(path)
    return {name: Signature(info.st_size, info.st_mtime_ns, info.st_ino)}


def claim_for(box: ClaimBox, places: Places, name: str, sig: dict[str, Signature]) -> DropClaim:
    planned = Drop(
        documents=(name,),
        sidecar=None,
        numbers=(parse_fax_number("+14155550100"),),
        source=NumberSource.NAME,
    )
    return box.new_claim(places, "", planned, sig, box.status_names(places))


def killed_after_queueing(monkeypatch: pytest.MonkeyPatch) -> None:
    def queued_then_killed(*args: Any) -> Any:
        queue_faxes(*args)
        raise Killed

    monkeypatch.setattr(claim_queue, "queue_faxes", queued_then_killed)


def test_the_claims_folder_is_inside_the_hot_folder_and_locked(
    tmp_path: Path, places: Places, store: Store
) -> None:
    a = instance(tmp_path, places, store, "a")
    assert a.box.root == places.folder / PROCESSING_DIR / "host-a"
    assert (a.box.root / LOCK_NAME).exists()
    assert folder_name("vm:1234:ab12") == "vm-1234-ab12"  # SMB refuses ":"
    # A second instance sees it alive and leaves it alone.
    b = instance(tmp_path, places, store, "b")
    assert b.take_over() == []
    assert a.box.root.is_dir()


def test_of_two_instances_claiming_one_file_one_takes_it(
    tmp_path: Path, places: Places, store: Store
) -> None:
    a = instance(tmp_path, places, store, "a")
    b = instance(tmp_path, places, store, "b")
    sig = drop(places, "14155550100_a.pdf")
    claim_a = claim_for(a.box, places, "14155550100_a.pdf", sig)
    claim_b = claim_for(b.box, places, "14155550100_a.pdf", sig)
    (first,) = a.box.take(places, [claim_a])
    (second,) = b.box.take(places, [claim_b])
    assert isinstance(first, Queued)
    assert isinstance(second, NotTaken)
    assert second.why == "gone"
    (job,) = store.recent_jobs(10)
    ref = FolderRef.read(job.intake_ref)
    assert ref is not None
    assert ref.claims == a.box.root
    (document,) = store.documents(job.id)
    assert document.path.parent == a.box.root
    assert list(b.box.root.glob("*.claim.json")) == []


def test_instances_racing_for_many_files_take_each_once(
    tmp_path: Path, places: Places, store: Store
) -> None:
    boxes = [instance(tmp_path, places, store, name).box for name in ("a", "b", "c")]
    names = [f"1415555{1000 + n:04d}_x.pdf" for n in range(60)]
    signatures: dict[str, Signature] = {}
    for n, name in enumerate(names):
        signatures.update(drop(places, name, n % 3 + 1))
    plans = [[claim_for(box, places, name, signatures) for name in names] for box in boxes]
    outcomes: list[list[Outcome]] = [[] for _ in boxes]
    start = threading.Barrier(len(boxes))

    def take(i: int) -> None:
        start.wait()
        for one in plans[i]:  # one at a time: the most chances to meet
            outcomes[i].extend(boxes[i].take(places, [one]))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(boxes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = Counter(
        o.claim.documents[0].source for per in outcomes for o in per if isinstance(o, Queued)
    )
    assert taken == dict.fromkeys(names, 1)
    assert all(o.why == "gone" for per in outcomes for o in per if isinstance(o, NotTaken))
    assert len(store.recent_jobs(200)) == len(names)
    assert [p for p in places.folder.iterdir() if p.is_file()] == []


def test_a_claim_killed_after_the_rename_is_finished_by_another_instance(
    tmp_path: Path, places: Places, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = instance(tmp_path, places, store, "a")
    sig = drop(places, "14155550100_a.pdf")
    claim = claim_for(a.box, places, "14155550100_a.pdf", sig)
    kill_on(monkeypatch, claim_queue, "queue_faxes")
    killed_taking(a.box, places, [claim], monkeypatch)
    assert not (places.folder / "14155550100_a.pdf").exists()  # in a's claims folder
    assert store.recent_jobs(10) == []
    b = instance(tmp_path, places, store, "b")
    assert b.take_over() == [], "a lives: its claims are its own"
    a.close()  # a dies: its lock goes
    (outcome,) = b.take_over()
    assert isinstance(outcome, Queued)
    (job,) = store.recent_jobs(10)
    (document,) = store.documents(job.id)
    assert document.path == a.box.root / claim.documents[0].target
    assert list(a.box.root.glob("*.claim.json")) == []
    # Its file is the fax's until it is placed: the folder stays, nothing queued again.
    assert a.box.root.is_dir()
    assert b.take_over() == []
    assert len(store.recent_jobs(10)) == 1


def test_a_claim_killed_after_its_jobs_is_not_queued_again(
    tmp_path: Path, places: Places, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = instance(tmp_path, places, store, "a")
    sig = drop(places, "14155550100_a.pdf")
    claim = claim_for(a.box, places, "14155550100_a.pdf", sig)
    killed_after_queueing(monkeypatch)
    killed_taking(a.box, places, [claim], monkeypatch)
    assert len(list(a.box.root.glob("*.claim.json"))) == 1
    a.close()
    b = instance(tmp_path, places, store, "b")
    assert b.take_over() == []
    assert len(store.recent_jobs(10)) == 1
    assert list(a.box.root.glob("*.claim.json")) == []


def test_a_claim_killed_before_the_rename_is_taken_once(
    tmp_path: Path, places: Places, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """a wrote its record and died before the rename: the file is still in the folder, and
    b takes it either by a claim of its own or by finishing a's, never both."""
    a = instance(tmp_path, places, store, "a")
    b = instance(tmp_path, places, store, "b")
    sig = drop(places, "14155550100_a.pdf")
    claim_a = claim_for(a.box, places, "14155550100_a.pdf", sig)
    kill_on(monkeypatch, claim_moves, "rename_in")
    killed_taking(a.box, places, [claim_a], monkeypatch)
    a.close()
    # b saw the file meanwhile, and claims it before it looks at a's folder.
    (own,) = b.box.take(places, [claim_for(b.box, places, "14155550100_a.pdf", sig)])
    assert isinstance(own, Queued)
    finished = b.take_over()
    assert not any(isinstance(o, Queued) for o in finished)
    assert len(store.recent_jobs(10)) == 1
    assert not a.box.root.exists(), "nothing left in it: removed"


def test_the_folder_of_an_instance_gone_is_removed_once_its_drops_are_placed(
    tmp_path: Path, places: Places, store: Store
) -> None:
    a = instance(tmp_path, places, store, "a")
    (a.box.root / "20260101T000000Z-abc.placed.json").write_text("{}")
    a.close()
    b = instance(tmp_path, places, store, "b")
    assert b.take_over() == []
    assert not a.box.root.exists()
    assert b.box.root.is_dir()
    assert b.take_over() == []


def test_a_file_refused_is_set_aside_by_one_instance(
    tmp_path: Path, places: Places, store: Store
) -> None:
    a = instance(tmp_path, places, store, "a")
    b = instance(tmp_path, places, store, "b")
    (places.folder / "sub").mkdir()
    (places.folder / "sub" / "no-number.pdf").write_bytes(pdf_document(1))
    aside = a.box.set_aside(places.folder, "sub/no-number.pdf")
    assert aside == a.box.root / "refusing" / "sub" / "no-number.pdf"
    assert b.box.set_aside(places.folder, "sub/no-number.pdf") is None
    # Not refused after all (failed/ not writable, or a dies): back where it was dropped.
    a.close()
    assert b.take_over() == []
    assert (places.folder / "sub" / "no-number.pdf").read_bytes() == pdf_document(1)
    assert not a.box.root.exists()


def test_temporary_files_a_kill_left_go_with_the_folder(
    tmp_path: Path, places: Places, store: Store
) -> None:
    a = instance(tmp_path, places, store, "a")
    (a.box.root / ".20260101T000000Z-abc.placed.json.1234abcd.tmp").write_text("{")
    a.close()
    b = instance(tmp_path, places, store, "b")
    b.take_over()
    assert not a.box.root.exists()


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:40 / /srv/faxes rw,relatime shared:20 - nfs4 nas:/faxes rw,vers=4.2,local_lock=none
41 22 0:41 / /srv/old rw,relatime shared:21 - nfs nas:/old rw,vers=3,nolock,local_lock=all
42 22 0:42 / /srv/smb rw,relatime shared:22 - cifs //nas/faxes rw,vers=3.1.1,nobrl
43 22 0:43 / /srv/smb2 rw,relatime shared:23 - cifs //nas/faxes2 rw,vers=3.1.1
"""


@pytest.mark.parametrize(
    ("path", "local"),
    [
        ("/srv/faxes/outbox", False),
        ("/srv/old/outbox", True),
        ("/srv/smb/outbox", True),
        ("/srv/smb2/outbox", False),
        ("/home/fax/outbox", False),
        ("/srv/oldish/outbox", False),
    ],
)
def test_a_share_whose_locks_stay_on_this_host_is_told(path: str, local: bool) -> None:
    why = local_only_locks(Path(path), MOUNTINFO)
    assert (why is not None) == local, why


def test_a_shared_folder_whose_locks_stay_on_this_host_is_refused_at_start(
    tmp_path: Path, places: Places, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fast_settings(tmp_path / "state", folders=[{"path": str(places.folder)}])
    alone = HotFolders.prepare(settings, store, wake=lambda: None)
    assert alone.watchers
    sharing = HotFolders.prepare(settings, store, wake=lambda: None, owner="host:1:ab")
    assert sharing.watchers

    def kept_here(path: Path, _mountinfo: str) -> str:
        return f"{path} is an NFS mount with locks kept on this host (nolock or local_lock)"

    monkeypatch.setattr(shared, "local_only_locks", kept_here)
    HotFolders.prepare(settings, store, wake=lambda: None)  # alone: no locks needed
    with pytest.raises(FolderError, match=r"cannot be shared by several instances.*nolock"):
        HotFolders.prepare(settings, store, wake=lambda: None, owner="host:1:ab")


async def test_watching_a_shared_folder_claims_into_its_own_folder_until_stopped(
    tmp_path: Path, places: Places, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    folder = {"path": str(places.folder), "mode": "poll", "poll_interval": 0.05}
    settings = fast_settings(tmp_path / "state", folders=[{**folder, "stable_for": 0.05}])
    folders = HotFolders.prepare(settings, store, wake=lambda: None, owner="host:1:ab")
    root = places.folder / PROCESSING_DIR / "host-1-ab"
    other = instance(tmp_path, places, store, "b")
    async with folders.running():
        drop(places, "14155550100_a.pdf")
        (job,) = await wait_for(lambda: store.recent_jobs(10), timeout=10, what="the claim")
        (document,) = store.documents(job.id)
        assert document.path.parent == root
        assert not (tmp_path / "state" / "spool" / "folder" / document.path.name).exists()
        assert other.take_over() == []  # it lives
        assert (root / LOCK_NAME).exists()
    assert "taken over" not in caplog.text
    # Stopped: its lock let go, its folder taken over, and kept while its fax needs the file.
    with caplog.at_level(logging.INFO, logger="faxgate.hotfolder"):
        assert other.take_over() == []
    assert "claims of an instance gone taken over" in caplog.text
    assert document.path.exists()
    assert (root / LOCK_NAME).exists()
