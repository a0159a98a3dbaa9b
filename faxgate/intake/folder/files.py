"""The hot folder's files: JSON written in one step, names reserved with their
companions, temporaries a crash left swept. Blocking IO; the durable steps themselves are
in faxgate.durable."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from faxgate.durable import TEMPORARY, write_bytes
from faxgate.intake.folder.naming import unique_name


def write_json(path: Path, value: Any, *, durable: bool = False, pretty: bool = True) -> None:
    """Replace `path` with the JSON of `value` in one step (the temporary name starts
    with a dot, which the hot folder never takes); flushed to disk when `durable`."""
    write_bytes(path, json_bytes(value, pretty=pretty), sync=durable)


def json_bytes(value: Any, *, pretty: bool = True) -> bytes:
    indent = 2 if pretty else None
    try:
        return (json.dumps(value, ensure_ascii=False, indent=indent) + "\n").encode()
    except UnicodeEncodeError:
        # A file name that is not UTF-8 (its bytes kept as surrogates): escaped, it reads
        # back as the same name.
        return (json.dumps(value, ensure_ascii=True, indent=indent) + "\n").encode()


def write_new(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Create `path` holding `data`; FileExistsError when the name is taken. A failed
    write (a full disk) leaves no empty file behind."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    except BaseException:
        remove_quietly([path])
        raise


def read_json(path: Path) -> Any:
    with path.open("rb") as handle:
        return json.loads(handle.read())


def reserve(directory: Path, name: str, companion: str, content: bytes = b"") -> str:
    """A free name for a file and its companion ("a.pdf" and "a.pdf.reason.txt"): the
    first of name, "name (2)", ... where neither exists. The companion is created at once
    (exclusively, holding `content`: written whole as its name is taken, and a failed write
    leaves none), so two callers never get the same name and a crash leaves no empty one."""
    directory.mkdir(parents=True, exist_ok=True)
    while True:
        chosen = unique_name(
            name,
            lambda n: (directory / n).exists() or (directory / (n + companion)).exists(),
        )
        try:
            write_new(directory / (chosen + companion), content, mode=0o666)
        except FileExistsError:
            continue  # taken in between by someone else
        return chosen


def sweep_temporaries(directories: Iterable[Path]) -> None:
    """Remove the temporary files a crash left in these folders and their sub-folders
    (one level: the date folders)."""
    for directory in directories:
        with contextlib.suppress(FileNotFoundError):
            with os.scandir(directory) as it:
                entries = list(it)
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    _sweep(Path(entry.path))
            _sweep(directory)


def _sweep(directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        remove_quietly(
            Path(entry.path)
            for entry in os.scandir(directory)
            if TEMPORARY.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)
        )


def same_file_system(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def remove_quietly(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
