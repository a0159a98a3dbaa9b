"""What a claim is: the files claimed, the drop's claim, its record on disk, and what
became of it (queued, not taken, spoiled)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from faxgate.domain.jobs import Job
from faxgate.intake.folder.ready import Signature
from faxgate.intake.folder.status import FolderRef, Places


class ClaimedFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: str  # relative to the hot folder
    target: str  # name in the claims folder
    size: int
    mtime_ns: int
    inode: int

    @property
    def signature(self) -> Signature:
        return Signature(self.size, self.mtime_ns, self.inode)


class DropClaim(BaseModel):
    """One fax from a drop: its files and everything its jobs need."""

    model_config = ConfigDict(frozen=True)

    drop: str
    documents: list[ClaimedFile]
    names: list[str]  # the documents' names for people
    sidecar: ClaimedFile | None = None
    numbers: list[str]  # E.164
    from_line: str | None = None
    cover_to: str | None = None
    cover_from: str | None = None
    cover_message: str | None = None
    notify: str | None = None
    priority: int = 0  # urgent 1, normal 0, bulk -1
    number_from: str
    status: Path
    taken_at: datetime

    @property
    def files(self) -> list[ClaimedFile]:
        """The documents, then the sidecar if there is one."""
        return [*self.documents, *([self.sidecar] if self.sidecar else [])]

    def ref(self, places: Places, claims: Path | None = None) -> FolderRef:
        return FolderRef(
            claims=claims,
            drop=self.drop,
            places=places,
            files=[f.source for f in self.documents],
            spooled=[f.target for f in self.documents],
            sidecar=self.sidecar.source if self.sidecar else None,
            sidecar_spooled=self.sidecar.target if self.sidecar else None,
            status=self.status,
            number_from=self.number_from,
            taken_at=self.taken_at,
        )


class ClaimRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: Literal[1] = 1
    places: Places
    created_at: datetime
    drops: list[DropClaim]


@dataclass(frozen=True, slots=True)
class Queued:
    places: Places
    claim: DropClaim
    jobs: list[Job]


@dataclass(frozen=True, slots=True)
class NotTaken:
    """Left where it was: gone before the claim, changed since it was looked at, or stuck:
    the disk is full or a folder read-only, so it is tried again later (`detail` says
    why)."""

    places: Places
    claim: DropClaim
    why: Literal["gone", "changed", "stuck"]
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Spoiled:
    """Claimed, but not to be sent: its files (now in the spool) go to failed/."""

    places: Places
    claim: DropClaim
    code: str
    reason: str
    files: list[tuple[Path, str]]  # (where it is now, its name for people)


Outcome = Queued | NotTaken | Spoiled


def stuck(outcomes: Iterable[Outcome]) -> list[NotTaken]:
    """Those not taken for now (a full disk, a read-only folder): tried again later."""
    return [o for o in outcomes if isinstance(o, NotTaken) and o.why == "stuck"]
