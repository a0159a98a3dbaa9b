"""Files refused at intake go to failed/ beside NAME.reason.txt, which says why.

A refused file that cannot go to failed/ (a full disk, a read-only folder) stays where it
was dropped, with a warning, and is refused again at the next look; nothing is half done:
what was moved goes back, and the reason with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from faxgate import metrics
from faxgate.clock import iso_utc, utc_now
from faxgate.durable import move_file
from faxgate.intake.folder.files import remove_quietly, reserve
from faxgate.intake.folder.naming import REASON_SUFFIX, unique_name
from faxgate.intake.folder.status import Places
from faxgate.store.spool import passing_trouble

log = logging.getLogger("faxgate.hotfolder")


def refuse(
    places: Places,
    files: Sequence[tuple[Path, str]],
    code: str,
    reason: str,
    *,
    dropped_as: str,
    help_text: str | None = None,
    now: datetime | None = None,
) -> Path | None:
    """Move refused files (documents first, then a sidecar) to failed/ beside
    NAME.reason.txt; the reason file's path. None when failed/ cannot be written now (a
    full disk, a read-only folder): the files stay where they are, and a warning says so."""
    when = now or utc_now()
    target = places.result_dir(sent=False, when=when)
    first_name = files[0][1]
    text = reason_text(first_name, dropped_as, places.folder, reason, help_text, when)
    try:
        return _refuse(places, files, code, reason, target, text, dropped_as)
    except OSError as exc:
        trouble = passing_trouble(exc)
        log.warning(
            "file not refused yet folder=%s file=%s code=%s reason=cannot write in %s: %s; "
            "it stays where it is and is refused again at the next look",
            places.folder,
            dropped_as,
            code,
            target,
            trouble,
        )
        in_spool = [str(path) for path, _ in files if not path.is_relative_to(places.folder)]
        if in_spool:
            log.error(
                "refused files kept in the spool until failed/ can be written files=%s",
                ", ".join(in_spool),
            )
        return None


def _refuse(
    places: Places,
    files: Sequence[tuple[Path, str]],
    code: str,
    reason: str,
    target: Path,
    text: str,
    dropped_as: str,
) -> Path:
    name = reserve(target, files[0][1], REASON_SUFFIX, text.encode("utf-8", "surrogateescape"))
    reason_file = target / (name + REASON_SUFFIX)
    moved: list[tuple[Path, Path]] = []
    try:
        for i, (path, own) in enumerate(files):
            wanted = name if i == 0 else (f"{name}.json" if own.endswith(".json") else own)
            placed = _move_aside(path, target, wanted)
            if placed is not None:
                moved.append((path, placed))
    except BaseException:
        # Nothing half done: what was moved goes back, and the reason with it.
        for path, placed in reversed(moved):
            with contextlib.suppress(OSError):
                move_file(placed, path)
        if not any(os.path.lexists(placed) for _, placed in moved):
            remove_quietly([reason_file])
        raise
    documents = sum(not own.lower().endswith(".json") for _, own in files) or 1
    metrics.folder_files_refused.labels(reason=code).inc(documents)
    log.warning(
        "file refused folder=%s file=%s code=%s reason=%s", places.folder, dropped_as, code, reason
    )
    return reason_file


def reason_text(
    name: str, dropped_as: str, folder: Path, reason: str, help_text: str | None, when: datetime
) -> str:
    lines = [
        "faxgate did not send this file.",
        "",
        f"File:    {name}",
        f"Dropped: {dropped_as} in {folder}",
        f"When:    {iso_utc(when)}",
        f"Reason:  {reason}",
        "",
    ]
    if help_text:
        lines += [help_text, ""]
    lines.append("To send it after all, put right what the reason says and drop it again.")
    return "\n".join(lines) + "\n"


def _move_aside(path: Path, directory: Path, wanted: str) -> Path | None:
    """Move `path` into `directory` under the first free form of `wanted`; where it went
    (None: it was gone). On failure the file stays where it was, with no second name."""
    if not (path.exists() or path.is_symlink()):
        return None
    while True:
        name = unique_name(
            wanted, lambda n: (directory / n).exists() or (directory / n).is_symlink()
        )
        target = directory / name
        try:
            move_file(path, target)
            return target
        except FileExistsError:
            continue
        except OSError:
            # The link or copy may be made and the original not removable (a read-only
            # folder): the original stays, so the second name goes.
            if path.exists() or path.is_symlink():
                with contextlib.suppress(OSError):
                    target.unlink()
            raise
