"""What a hot-folder job remembers of its drop, and the status file a person sees meanwhile.

The job's `intake_ref` holds a FolderRef: where the files were dropped, where the spool
keeps them, and where the results go. The reporter works from it alone, so a folder that
has left the settings since still gets its results.

While a drop is in flight, processing/NAME.status.json says so:

    {"file": "contract.pdf", "state": "sending", "faxes": [{"number": "+1 415-555-0100",
     "state": "queued"}], "taken_at": "...", "updated_at": "...", "note": "..."}

It is written whole (atomically) and removed when the result is in sent/ or failed/.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from faxgate.intake.folder.files import write_json
from faxgate.intake.folder.naming import date_folder
from faxgate.settings import FolderSettings


class Places(BaseModel):
    """A hot folder's own folders, as absolute paths."""

    model_config = ConfigDict(frozen=True)

    folder: Path
    sent: Path
    failed: Path
    processing: Path
    date_subfolders: bool = False

    @classmethod
    def of(cls, settings: FolderSettings) -> Places:
        sent, failed, processing = (_absolute(d) for d in settings.result_dirs())
        return cls(
            folder=_absolute(settings.path),
            sent=sent,
            failed=failed,
            processing=processing,
            date_subfolders=settings.date_subfolders,
        )

    def result_dir(self, *, sent: bool, when: datetime) -> Path:
        base = self.sent if sent else self.failed
        return base / date_folder(when) if self.date_subfolders else base

    def inside(self) -> frozenset[str]:
        """The top-level names in the folder that are faxgate's (never taken from)."""
        names = set()
        for directory in (self.sent, self.failed, self.processing):
            try:
                relative = directory.relative_to(self.folder)
            except ValueError:
                continue
            names.add(relative.parts[0])
        return frozenset(names)


class FolderRef(BaseModel):
    """A folder job's intake_ref."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    drop: str
    places: Places
    files: list[str]  # where the documents were dropped, relative to the folder
    spooled: list[str]  # their names in the claims folder of the spool
    # The claims folder itself when it is not the spool's: a shared hot folder's own
    # (<folder>/.faxgate-claims/<instance>/), which every instance sharing it can read.
    claims: Path | None = None
    sidecar: str | None = None
    sidecar_spooled: str | None = None
    status: Path
    number_from: str
    taken_at: datetime

    def intake_ref(self) -> dict[str, Any]:
        data: dict[str, Any] = self.model_dump(mode="json")
        data["folder"] = str(self.places.folder)  # for people reading `faxgate status`
        return data

    @classmethod
    def read(cls, intake_ref: Mapping[str, Any]) -> FolderRef | None:
        try:
            return cls.model_validate(intake_ref)
        except ValidationError:
            return None

    @property
    def names(self) -> list[str]:
        """The documents' own names ("contract.pdf")."""
        return [PurePosixPath(f).name for f in self.files]


def status_document(
    files: Sequence[str], faxes: Sequence[tuple[str, str]], *, taken_at: datetime, now: datetime
) -> dict[str, Any]:
    """The status file's content. `files`: where the documents were dropped, relative to
    the folder; `faxes`: (number, state) pairs."""
    names = [PurePosixPath(f).name for f in files]
    return {
        "file": names[0],
        "files": names,
        "dropped_as": files[0],
        "state": "sending",
        "faxes": [{"number": number, "state": state} for number, state in faxes],
        "taken_at": _time(taken_at),
        "updated_at": _time(now),
        "note": "faxgate is sending this file; when it is done, the file and its "
        "result are in sent/ or failed/",
    }


def write_status(path: Path, document: Mapping[str, Any]) -> None:
    # Not flushed: a status lost to a power cut is written again by the next change.
    write_json(path, document)


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _absolute(path: Path) -> Path:
    return Path(os.path.normpath(path.absolute()))
