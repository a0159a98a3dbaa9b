"""A claim's files into the spool and back: the same file each way, nothing overwritten."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faxgate.intake.folder.claim_moves import let_go_of_copy, move_in, put_back, signature_of
from faxgate.intake.folder.claim_records import ClaimedFile
from faxgate.intake.folder.status import Places
from tests.intake.folder.claiming import hot_folder


@pytest.fixture
def places(tmp_path: Path) -> Places:
    return hot_folder(tmp_path)


@pytest.fixture
def claims_dir(tmp_path: Path) -> Path:
    (tmp_path / "claims").mkdir()
    return tmp_path / "claims"


def claimed(places: Places, name: str, target: str) -> ClaimedFile:
    sig = signature_of(os.lstat(places.folder / name))
    return ClaimedFile(
        source=name, target=target, size=sig.size, mtime_ns=sig.mtime_ns, inode=sig.inode
    )


def test_a_file_moved_in_and_put_back_is_the_same_file(places: Places, claims_dir: Path) -> None:
    (places.folder / "a.pdf").write_bytes(b"%PDF a")
    file = claimed(places, "a.pdf", "D-0.pdf")
    move_in(places.folder / "a.pdf", claims_dir / "D-0.pdf")
    assert not (places.folder / "a.pdf").exists()
    assert put_back(claims_dir, places, [file])
    assert not (claims_dir / "D-0.pdf").exists()
    assert signature_of(os.lstat(places.folder / "a.pdf")) == file.signature


def test_a_name_taken_meanwhile_keeps_the_file_in_the_spool(
    places: Places, claims_dir: Path
) -> None:
    (places.folder / "a.pdf").write_bytes(b"%PDF a")
    file = claimed(places, "a.pdf", "D-0.pdf")
    move_in(places.folder / "a.pdf", claims_dir / "D-0.pdf")
    (places.folder / "a.pdf").write_bytes(b"%PDF another")
    assert not put_back(claims_dir, places, [file])
    assert (places.folder / "a.pdf").read_bytes() == b"%PDF another", "never overwritten"
    assert (claims_dir / "D-0.pdf").read_bytes() == b"%PDF a"


def test_letting_go_removes_the_claimed_name_but_not_a_new_file(
    places: Places, claims_dir: Path
) -> None:
    (places.folder / "a.pdf").write_bytes(b"%PDF a")
    file = claimed(places, "a.pdf", "D-0.pdf")
    os.link(places.folder / "a.pdf", claims_dir / "D-0.pdf")  # a crash before the unlink
    let_go_of_copy(places, file)
    assert not (places.folder / "a.pdf").exists()
    (places.folder / "a.pdf").write_bytes(b"%PDF a, dropped again")
    let_go_of_copy(places, file)
    assert (places.folder / "a.pdf").exists(), "another file under the same name stays"
