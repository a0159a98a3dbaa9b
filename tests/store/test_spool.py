from __future__ import annotations

import hashlib
import io
import os
import signal
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from faxgate.store.spool import (
    CHUNK_SIZE,
    TEMP_PREFIX,
    Spool,
    SpooledFile,
    SpoolTooLarge,
    clean_suffix,
)
from tests.store.making import wait_for


def temp_files(spool: Spool) -> list[Path]:
    return [p for p in spool.root.iterdir() if p.name.startswith(TEMP_PREFIX)]


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


def check_whole(spooled: SpooledFile, data: bytes) -> None:
    assert spooled.path.read_bytes() == data
    assert spooled.size == len(data)
    assert spooled.sha256 == hashlib.sha256(data).hexdigest()


def test_spool_creates_its_directory(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    Spool(root)
    assert root.is_dir()


def test_store_bytes(spool: Spool) -> None:
    data = b"%PDF-1.4 a fax\n"
    spooled = spool.store_bytes(data, suffix=".pdf")
    check_whole(spooled, data)
    assert spooled.path.parent == spool.root
    assert spooled.path.suffix == ".pdf"
    assert spool.files() == [spooled.path]
    assert temp_files(spool) == []
    # Faxes are private: only the owner may read them.
    assert stat.S_IMODE(spooled.path.stat().st_mode) == 0o600


def test_the_same_content_twice_gets_two_names(spool: Spool) -> None:
    a = spool.store_bytes(b"same")
    b = spool.store_bytes(b"same")
    assert a.path != b.path
    assert a.sha256 == b.sha256
    assert len(spool.files()) == 2


def test_empty_document(spool: Spool) -> None:
    check_whole(spool.store_bytes(b""), b"")


class ChunkRecorder(io.RawIOBase):
    """A stream that remembers how much was asked of it in each read."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.asked: list[int] = []

    def read(self, size: int = -1, /) -> bytes:
        self.asked.append(size)
        return self._data.read(size)


def test_store_stream_copies_in_chunks(spool: Spool) -> None:
    data = os.urandom(5 * CHUNK_SIZE + 123)
    stream = ChunkRecorder(data)
    spooled = spool.store_stream(stream, suffix=".tif")
    check_whole(spooled, data)
    # Never the whole stream at once: a large document is not held in memory.
    assert stream.asked
    assert all(0 < size <= CHUNK_SIZE for size in stream.asked)


def test_store_stream_refuses_past_the_limit_and_leaves_nothing(spool: Spool) -> None:
    data = b"x" * (CHUNK_SIZE * 2)
    with pytest.raises(SpoolTooLarge):
        spool.store_stream(io.BytesIO(data), max_size=CHUNK_SIZE)
    assert list(spool.root.iterdir()) == []


def test_store_stream_at_the_limit_is_accepted(spool: Spool) -> None:
    data = b"x" * 1000
    check_whole(spool.store_stream(io.BytesIO(data), max_size=1000), data)


@pytest.mark.parametrize(
    ("given", "kept"),
    [(".pdf", ".pdf"), (".PDF", ".pdf"), ("", ""), ("pdf", ""), ("/../x", ""), (".a b", "")],
)
def test_suffixes_are_cleaned(given: str, kept: str) -> None:
    assert clean_suffix(given) == kept


def test_the_users_name_never_becomes_the_file_name(spool: Spool) -> None:
    spooled = spool.store_bytes(b"x", suffix="/../../etc/passwd")
    assert spooled.path.parent == spool.root
    assert "passwd" not in spooled.path.name


def test_durable_write_order(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        calls.append(f"fsync {kind}")
        real_fsync(fd)

    def rename(src: str | Path, dst: str | Path) -> None:
        calls.append("rename")
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    spool.store_bytes(b"data")
    assert calls == ["fsync file", "rename", "fsync dir"]


def test_failure_before_rename_leaves_no_file_at_all(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_rename(src: str | Path, dst: str | Path) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "rename", broken_rename)
    with pytest.raises(OSError, match="disk gone"):
        spool.store_bytes(b"data")
    assert list(spool.root.iterdir()) == []


WRITER = """
import sys
from pathlib import Path
from faxgate.store.spool import Spool
Spool(Path(sys.argv[1])).store_stream(sys.stdin.buffer)
print("stored", flush=True)
"""


def test_crash_mid_write_leaves_no_visible_half_file(spool: Spool) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(spool.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as child:
        try:
            assert child.stdin is not None
            # More than one chunk, less than two: the writer stores a chunk, then waits.
            child.stdin.write(b"y" * (CHUNK_SIZE + CHUNK_SIZE // 2))
            child.stdin.flush()
            wait_for(lambda: any(p.stat().st_size > 0 for p in temp_files(spool)), 10.0)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert spool.files() == []
    [orphan] = temp_files(spool)

    # A fresh temporary file may still be someone's work in progress: spared by default.
    assert spool.cleanup_orphans() == []
    assert orphan.exists()
    later = datetime.now(UTC) + timedelta(hours=2)
    assert spool.cleanup_orphans(now=later) == [orphan]
    assert list(spool.root.iterdir()) == []


def test_cleanup_leaves_spooled_files_alone(spool: Spool) -> None:
    kept = spool.store_bytes(b"keep")
    (spool.root / f"{TEMP_PREFIX}abc").write_bytes(b"half")
    assert [p.name for p in spool.cleanup_orphans(older_than=timedelta(0))] == [f"{TEMP_PREFIX}abc"]
    assert spool.files() == [kept.path]
    assert kept.path.read_bytes() == b"keep"


def test_adopt_claims_a_file_by_rename(spool: Spool, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    dropped = inbox / "Quarterly Report.PDF"
    data = os.urandom(3 * CHUNK_SIZE + 7)
    dropped.write_bytes(data)
    inode = dropped.stat().st_ino

    spooled = spool.adopt(dropped)
    check_whole(spooled, data)
    assert not dropped.exists()
    assert spooled.path.parent == spool.root
    assert spooled.path.stat().st_ino == inode  # moved, not copied
    assert spooled.path.suffix == ".pdf"
    assert "Quarterly" not in spooled.path.name


def test_adopt_with_a_given_suffix(spool: Spool, tmp_path: Path) -> None:
    dropped = tmp_path / "scan"
    dropped.write_bytes(b"II*\x00")
    assert spool.adopt(dropped, suffix=".tiff").path.suffix == ".tiff"


def test_adopt_a_file_someone_else_took_first(spool: Spool, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        spool.adopt(tmp_path / "gone.pdf")
    assert list(spool.root.iterdir()) == []


def test_adopt_refuses_what_is_not_a_regular_file(spool: Spool, tmp_path: Path) -> None:
    target = tmp_path / "target.pdf"
    target.write_bytes(b"x")
    link = tmp_path / "link.pdf"
    link.symlink_to(target)
    folder = tmp_path / "folder"
    folder.mkdir()
    for path in (link, folder):
        with pytest.raises(ValueError, match="not a regular file"):
            spool.adopt(path)
    assert link.is_symlink()
    assert folder.is_dir()
    assert spool.files() == []


def test_remove(spool: Spool) -> None:
    spooled = spool.store_bytes(b"x")
    other = spool.store_bytes(b"y")
    assert spool.remove(spooled.path) is True
    assert not spooled.path.exists()
    assert spool.remove(spooled.path) is False
    assert spool.files() == [other.path]


def test_remove_refuses_paths_outside_the_spool(spool: Spool, tmp_path: Path) -> None:
    outside = tmp_path / "precious.pdf"
    outside.write_bytes(b"x")
    sneaky = spool.root / ".." / "precious.pdf"
    for path in (outside, sneaky, spool.root / f"{TEMP_PREFIX}x"):
        with pytest.raises(ValueError, match="not a spooled file"):
            spool.remove(path)
    assert outside.exists()


def test_files_lists_what_was_stored_and_nothing_else(spool: Spool) -> None:
    stored = [spool.store_bytes(bytes([i])).path for i in range(3)]
    (spool.root / f"{TEMP_PREFIX}half").write_bytes(b"x")
    (spool.root / "subdir").mkdir()
    assert sorted(spool.files()) == sorted(stored)
