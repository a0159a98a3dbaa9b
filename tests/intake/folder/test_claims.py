"""Claiming dropped files into the spool: a kill at any step loses nothing and queues each
drop once. Each test stops a claim at one step, as a SIGKILL would, then recovers."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from faxgate.domain.numbers import parse_fax_number
from faxgate.intake.folder import claim_moves, claim_queue
from faxgate.intake.folder import claims as folder_claims
from faxgate.intake.folder.claim_records import DropClaim, NotTaken, Queued, Spoiled
from faxgate.intake.folder.claims import ClaimBox
from faxgate.intake.folder.drops import Drop
from faxgate.intake.folder.naming import NumberSource
from faxgate.intake.folder.ready import Signature
from faxgate.intake.folder.status import FolderRef, Places
from faxgate.intake.queue import queue_faxes
from faxgate.store import Store
from tests.conftest import pdf_document
from tests.intake.folder.claiming import Killed, box, kill_on, killed_taking, places

__all__ = ["box", "places"]  # the fixtures


def dropped(places: Places, *names: str) -> dict[str, Signature]:
    signatures = {}
    for i, name in enumerate(names):
        path = places.folder / name
        path.write_bytes(pdf_document(i + 1))
        info = os.lstat(path)
        signatures[name] = Signature(info.st_size, info.st_mtime_ns, info.st_ino)
    return signatures


def claim_for(box: ClaimBox, places: Places, *names: str) -> DropClaim:
    signatures = dropped(places, *names)
    drop = Drop(
        documents=names,
        sidecar=None,
        numbers=(parse_fax_number("+14155550100"),),
        source=NumberSource.NAME,
        cover_to="Legal",
    )
    return box.new_claim(places, "", drop, signatures, box.status_names(places))


def folder_jobs(store: Store) -> list[Any]:
    return store.recent_jobs(100)


def records(box: ClaimBox) -> list[Path]:
    return list(box.root.glob("*.claim.json"))


def assert_recovered_queued(box: ClaimBox, places: Places) -> None:
    """The recovery finds one drop, and queues it."""
    (outcome,) = box.recover(places.folder)
    assert isinstance(outcome, Queued)


def test_a_claim_queues_the_drop_and_leaves_no_record(
    box: ClaimBox, places: Places, store: Store
) -> None:
    claim = claim_for(box, places, "14155550100_a.pdf")
    (outcome,) = box.take(places, [claim])
    assert isinstance(outcome, Queued)
    box.write_statuses([outcome])
    (job,) = outcome.jobs
    assert not (places.folder / "14155550100_a.pdf").exists()
    assert records(box) == []
    (document,) = store.documents(job.id)
    assert document.path == box.root / claim.documents[0].target
    assert document.path.read_bytes() == pdf_document(1)
    assert document.name == "14155550100_a.pdf"
    ref = FolderRef.read(job.intake_ref)
    assert ref is not None
    assert (ref.drop, ref.files, ref.places) == (claim.drop, ["14155550100_a.pdf"], places)
    assert job.cover_to == "Legal"
    status = json.loads(ref.status.read_text())
    assert status["state"] == "sending"
    assert status["faxes"] == [{"number": "+14155550100", "state": "queued"}]


def test_killed_before_any_file_moved(
    box: ClaimBox, places: Places, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = claim_for(box, places, "a.pdf")
    kill_on(monkeypatch, claim_moves, "move_in")
    killed_taking(box, places, [claim], monkeypatch)
    assert (places.folder / "a.pdf").exists()
    assert len(records(box)) == 1
    assert_recovered_queued(box, places)
    assert not (places.folder / "a.pdf").exists()
    assert len(folder_jobs(store)) == 1
    assert records(box) == []


def test_killed_between_two_files_of_one_drop(
    box: ClaimBox, places: Places, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = claim_for(box, places, "a.pdf", "b.pdf")
    kill_on(monkeypatch, claim_moves, "move_in", call=2)
    killed_taking(box, places, [claim], monkeypatch)
    assert not (places.folder / "a.pdf").exists()
    assert (places.folder / "b.pdf").exists()
    assert_recovered_queued(box, places)
    (job,) = folder_jobs(store)
    assert [d.name for d in store.documents(job.id)] == ["a.pdf", "b.pdf"]
    assert [d.path.read_bytes() for d in store.documents(job.id)] == [
        pdf_document(1),
        pdf_document(2),
    ]


def test_killed_after_the_files_moved_before_the_jobs(
    box: ClaimBox, places: Places, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = claim_for(box, places, "a.pdf")
    kill_on(monkeypatch, claim_queue, "queue_faxes")
    killed_taking(box, places, [claim], monkeypatch)
    assert folder_jobs(store) == []
    assert_recovered_queued(box, places)
    assert len(folder_jobs(store)) == 1


def test_killed_after_the_jobs_before_the_record_went(
    box: ClaimBox, places: Places, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    claims = [claim_for(box, places, "a.pdf"), claim_for(box, places, "b.pdf")]
    real = queue_faxes

    def queued_then_killed(*args: Any) -> Any:
        real(*args)
        raise Killed

    monkeypatch.setattr(claim_queue, "queue_faxes", queued_then_killed)
    killed_taking(box, places, claims, monkeypatch)
    assert len(folder_jobs(store)) == 2
    assert box.recover(places.folder) == [], "already queued: nothing to do"
    assert len(folder_jobs(store)) == 2
    assert records(box) == []


def test_a_file_taken_back_before_the_claim_is_let_go(
    box: ClaimBox, places: Places, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = claim_for(box, places, "a.pdf")
    kill_on(monkeypatch, claim_moves, "move_in")
    killed_taking(box, places, [claim], monkeypatch)
    (places.folder / "a.pdf").unlink()  # its owner took it back while faxgate was down
    (outcome,) = box.recover(places.folder)
    assert isinstance(outcome, Spoiled)
    assert (outcome.code, outcome.files) == ("missing", [])
    assert folder_jobs(store) == []
    assert not claim.status.exists()


def test_a_file_replaced_meanwhile_is_not_claimed_by_mistake(
    box: ClaimBox, places: Places, store: Store
) -> None:
    claim = claim_for(box, places, "a.pdf")
    (places.folder / "a.pdf").write_bytes(pdf_document(3))  # rewritten after it was looked at
    (outcome,) = box.take(places, [claim])
    assert isinstance(outcome, NotTaken)
    assert outcome.why == "changed"
    assert (places.folder / "a.pdf").read_bytes() == pdf_document(3)
    assert folder_jobs(store) == []
    assert not claim.status.exists()


def test_other_folders_records_are_left_to_them(
    box: ClaimBox, places: Places, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    claim = claim_for(box, places, "a.pdf")
    kill_on(monkeypatch, claim_moves, "move_in")
    killed_taking(box, places, [claim], monkeypatch)
    assert box.recover(tmp_path / "another") == []
    assert len(records(box)) == 1
    assert len(box.recover()) == 1


def exdev_for(places: Places) -> Callable[..., None]:
    """os.link as it fails when the spool is on another file system."""
    real = os.link

    def link(source: Any, target: Any, **kwargs: Any) -> None:
        if Path(source).parent == places.folder:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real(source, target, **kwargs)

    return link


def killed_on_unlink_in(folder: Path) -> Callable[..., None]:
    """os.unlink as a kill makes it: never done for a name in `folder`."""
    real = os.unlink

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).parent == folder:
            raise Killed
        real(path, *args, **kwargs)

    return unlink


def test_across_file_systems_the_file_is_copied_then_removed(
    box: ClaimBox, places: Places, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "link", exdev_for(places))
    (outcome,) = box.take(places, [claim_for(box, places, "a.pdf")])
    assert isinstance(outcome, Queued)
    assert not (places.folder / "a.pdf").exists()
    (document,) = store.documents(outcome.jobs[0].id)
    assert document.path.read_bytes() == pdf_document(1)
    assert not [p for p in box.root.iterdir() if p.name.startswith(".")]


def test_killed_between_the_copy_and_the_removal(
    box: ClaimBox, places: Places, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "link", exdev_for(places))
    claim = claim_for(box, places, "a.pdf")
    monkeypatch.setattr(os, "unlink", killed_on_unlink_in(places.folder))
    killed_taking(box, places, [claim], monkeypatch)
    assert (places.folder / "a.pdf").exists(), "the copy is in the spool, the original too"
    assert_recovered_queued(box, places)
    assert not (places.folder / "a.pdf").exists(), "the original goes once the copy is queued"
    assert len(folder_jobs(store)) == 1


def test_status_names_never_collide_and_a_placed_drop_gets_none(
    box: ClaimBox, places: Places
) -> None:
    statuses = box.status_names(places)
    first = box.new_claim(
        places,
        "",
        Drop(("a.pdf",), None, (), NumberSource.NAME),
        {"a.pdf": Signature(1, 1, 1)},
        statuses,
    )
    second = box.new_claim(
        places,
        "",
        Drop(("a.pdf",), None, (), NumberSource.NAME),
        {"a.pdf": Signature(1, 1, 2)},
        statuses,
    )
    assert [first.status.name, second.status.name] == ["a.pdf.status.json", "a (2).pdf.status.json"]
    folder_claims.placement_path(box.root, second.drop).write_text("{}")  # done already
    box.write_statuses([Queued(places, first, []), Queued(places, second, [])])
    assert json.loads(first.status.read_text())["file"] == "a.pdf"
    assert not second.status.exists()


def test_a_file_system_without_hard_links_gets_a_rename(
    box: ClaimBox, places: Places, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*_: Any, **__: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    (outcome,) = box.take(places, [claim_for(box, places, "a.pdf")])
    assert isinstance(outcome, Queued)
    assert not (places.folder / "a.pdf").exists()


def test_killed_between_the_link_and_the_removal(
    box: ClaimBox, places: Places, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = claim_for(box, places, "a.pdf")
    monkeypatch.setattr(os, "unlink", killed_on_unlink_in(places.folder))
    killed_taking(box, places, [claim], monkeypatch)
    assert (places.folder / "a.pdf").exists(), "two names for one file"
    assert_recovered_queued(box, places)
    assert not (places.folder / "a.pdf").exists()
    assert len(folder_jobs(store)) == 1
