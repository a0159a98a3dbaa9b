"""File moves that never overwrite, and the sweep of what a crash left half written."""

from __future__ import annotations

from pathlib import Path

import pytest

from faxgate.durable import copy_file, move_file
from faxgate.intake.folder.files import reserve, sweep_temporaries
from tests.mounts import Mounts, mounts

__all__ = ["mounts"]  # the fixture


def test_temporaries_a_crash_left_are_swept(tmp_path: Path) -> None:
    day = tmp_path / "sent" / "2024-05-01"
    day.mkdir(parents=True)
    left = [tmp_path / "sent" / ".a.pdf.result.json.0123abcd.tmp", day / ".b.pdf.89abcdef.tmp"]
    kept = [tmp_path / "sent" / "a.pdf", tmp_path / "sent" / ".hidden.tmp", day / "c.tmp"]
    for path in (*left, *kept):
        path.write_text("x")
    sweep_temporaries([tmp_path / "sent", tmp_path / "failed"])
    assert [p.exists() for p in left] == [False, False]
    assert all(p.exists() for p in kept)


def test_moves_and_copies_never_overwrite(tmp_path: Path) -> None:
    source, taken = tmp_path / "a.pdf", tmp_path / "b.pdf"
    source.write_text("a")
    taken.write_text("b")
    with pytest.raises(FileExistsError):
        move_file(source, taken)
    with pytest.raises(FileExistsError):
        copy_file(source, taken)
    assert (source.read_text(), taken.read_text()) == ("a", "b")
    move_file(source, tmp_path / "c.pdf")
    assert not source.exists()
    assert (tmp_path / "c.pdf").read_text() == "a"


def test_reserved_names_skip_files_and_companions(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_text("x")
    (tmp_path / "a (2).pdf.reason.txt").write_text("x")
    assert reserve(tmp_path, "a.pdf", ".reason.txt", b"why") == "a (3).pdf"
    assert (tmp_path / "a (3).pdf.reason.txt").read_text() == "why"


def test_a_move_between_two_mounts_of_one_file_system_copies(
    tmp_path: Path, mounts: Mounts
) -> None:
    """A bind mount shares the device number but refuses links and renames (EXDEV)."""
    (tmp_path / "disk" / "outbox").mkdir(parents=True)
    elsewhere = mounts.bind(tmp_path / "disk", tmp_path / "mounted")
    source = tmp_path / "disk" / "outbox" / "scan.pdf"
    source.write_bytes(b"%PDF-1.4 scan")
    target = elsewhere / "scan-moved.pdf"

    move_file(source, target)
    assert not source.exists()
    assert target.read_bytes() == b"%PDF-1.4 scan"
