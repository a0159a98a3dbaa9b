"""Claiming dropped files into the spool: nothing is taken twice, a crash loses nothing.

Blocking IO; the watcher calls it from a worker thread. A batch of drops is claimed so:

1. a claim record, spool/folder/<batch>.claim.json, names every file (where it lies, its
   inode, size and time, the name it will have in the spool) and the fax it makes; the
   record is flushed to disk before any file moves;
2. each file is moved into spool/folder/: a hard link there, then its name in the folder
   removed (where the spool is on another file system: copied and flushed first);
3. the jobs of the whole batch are created in one transaction of the store, each with its
   FolderRef as intake_ref;
4. the record is removed.

A kill between 1 and 4 leaves the record; `recover` (at start and at each rescan) finishes
it. A drop whose jobs are in the store is done; otherwise a file still in the folder,
unchanged, is claimed now, a file already in the spool is queued, and a drop whose
document is gone (taken back by its owner before the claim) goes to failed/. Jobs are
found by their drop id among the jobs created since the record was written.

The steps have their own modules: the claim planned from a drop (claim_plan, pure), the
files moved in and back (claim_moves), the jobs queued (claim_queue). The spool's own
`Spool.adopt` is not used: it picks the file's new name as it moves it, and the record
must know that name before the move.

A full disk, a read-only folder or a store that cannot grow takes nothing: whatever was
moved is linked back into the folder and the record goes, so the file stays where it was
dropped (NotTaken "stuck"), a warning says why, and the next look at the folder tries
again. Where a file cannot go back (its name was taken meanwhile, or the spool is on
another file system), the record stays and the recovery finishes the claim later.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from faxgate.clock import utc_now
from faxgate.domain.jobs import Intake
from faxgate.intake.folder import claim_moves, claim_queue
from faxgate.intake.folder.claim_plan import plan_claim
from faxgate.intake.folder.claim_records import (
    ClaimedFile,
    ClaimRecord,
    DropClaim,
    NotTaken,
    Outcome,
    Queued,
    stuck,
)
from faxgate.intake.folder.drops import Drop, Refused
from faxgate.intake.folder.files import json_bytes, read_json, remove_quietly, write_json, write_new
from faxgate.intake.folder.ready import Signature
from faxgate.intake.folder.status import Places, status_document
from faxgate.store import Store
from faxgate.store.spool import Spool, disk_trouble, passing_trouble

log = logging.getLogger("faxgate.hotfolder")

CLAIMS_DIR: Final = "folder"
RECORD_SUFFIX: Final = ".claim.json"
PLACED_SUFFIX: Final = ".placed.json"
LOCK_NAME: Final = ".lock"  # a shared claims folder's: held while its instance lives
ASIDE_DIR: Final = "refusing"  # a shared claims folder's files being refused
# Jobs are looked for this far before a record's time, for a clock set back meanwhile.
_CLOCK_MARGIN: Final = timedelta(hours=1)
# The same trouble in the same folder is logged as a warning this often (seconds).
_COMPLAIN_EVERY: Final = 60.0


class ClaimBox:
    """spool/folder/: the claimed files, the claim records and the result records. The
    claims of the hot folders are taken there in batches (take), and finished after a
    crash from the records left behind (recover)."""

    def __init__(self, spool_dir: Path, store: Store, *, root: Path | None = None) -> None:
        """`root`: a shared hot folder's claims folder for this instance (see shared.py)
        instead of the spool's: files are renamed into it, in one step of the file system
        every instance shares, and its records are there for whoever takes it over."""
        self.spool = Spool(spool_dir)
        self.shared = root is not None
        self.root = root if root is not None else self.spool.root / CLAIMS_DIR
        self.root.mkdir(exist_ok=True)
        self.store = store
        # Shared: the claims folders of instances gone, taken over at each recovery.
        self.others: Callable[[], list[Outcome]] | None = None
        self._complaints = _Complaints()

    def new_claim(
        self,
        places: Places,
        folder: str,
        drop: Drop,
        signatures: Mapping[str, Signature],
        statuses: set[str],
    ) -> DropClaim:
        """A claim for one planned drop in `folder` ("" or a sub-folder), with fresh spool
        names and a free status file name. `signatures`: each file's as looked at;
        `statuses`: the names in processing/ (see status_names), the new one added."""
        now = utc_now()
        drop_id = f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}"
        return plan_claim(places, folder, drop, signatures, statuses, drop_id=drop_id, now=now)

    @staticmethod
    def status_names(places: Places) -> set[str]:
        try:
            return set(os.listdir(places.processing))
        except FileNotFoundError:
            return set()

    def write_statuses(self, outcomes: Iterable[Outcome]) -> None:
        """The status files of queued drops. Written after the jobs, off the way of the
        fax; a drop already placed (a fax done at once) gets none."""
        for outcome in outcomes:
            if not isinstance(outcome, Queued):
                continue
            claim = outcome.claim
            document = status_document(
                [f.source for f in claim.documents],
                [(number, "queued") for number in claim.numbers],
                taken_at=claim.taken_at,
                now=utc_now(),
            )
            try:
                write_new(claim.status, json_bytes(document))
            except (FileExistsError, FileNotFoundError):
                continue  # the name was taken meanwhile, or processing/ is gone
            except OSError as exc:
                # Only a status for people: the fax goes on without it.
                trouble = passing_trouble(exc)
                self._complaints.warn(
                    outcome.places.folder,
                    f"status file not written path={claim.status} reason={trouble}; the "
                    "fax goes on and its result comes as usual",
                    f"status: {trouble}",
                )
                continue
            if placement_path(self.root, claim.drop).exists():
                remove_quietly([claim.status])

    # ------------------------------------------------------------------ claiming

    def take(self, places: Places, claims: Sequence[DropClaim]) -> list[Outcome]:
        """Claim and queue a batch of drops; one outcome per drop, in order."""
        if not claims:
            return []
        record = self.root / f"{utc_now():%Y%m%dT%H%M%S}-{secrets.token_hex(4)}{RECORD_SUFFIX}"
        body = ClaimRecord(places=places, created_at=utc_now(), drops=list(claims))
        try:
            write_json(record, body.model_dump(mode="json"), durable=True, pretty=False)
        except OSError as exc:
            trouble = passing_trouble(exc)
            detail = f"cannot write in the spool {self.root}: {trouble}"
            not_taken = [NotTaken(places, claim, "stuck", detail) for claim in claims]
            self._left_in_place(places, not_taken)
            return list(not_taken)
        outcomes: dict[str, Outcome] = {}
        moved: list[DropClaim] = []
        settled = True  # False: a file is neither queued nor back in the folder
        for claim in claims:
            not_taken_now, put_back = self._claim_files(places, claim)
            settled = settled and put_back
            if not_taken_now is None:
                moved.append(claim)
            else:
                outcomes[claim.drop] = not_taken_now
        claim_moves.flush(self.root, places, moved)
        queued = self._queue(places, moved)
        outcomes.update((outcome.claim.drop, outcome) for outcome in queued)
        for not_queued in stuck(queued):
            # Moved in but not queued: back into the folder, as if never taken.
            back = claim_moves.put_back(self.root, places, not_queued.claim.files)
            settled = back and settled
        left = stuck(outcomes.values())
        if settled:
            record.unlink()
        if left:
            self._left_in_place(places, left, kept=not settled)
        return [outcomes[claim.drop] for claim in claims]

    def _claim_files(self, places: Places, claim: DropClaim) -> tuple[NotTaken | None, bool]:
        """Move the drop's files into the claims folder, all or none: (why not, None when
        all moved; False when some moved file could not be put back in the folder)."""
        files = claim.files
        for file in files:
            try:
                info = os.lstat(places.folder / file.source)
            except FileNotFoundError:
                return NotTaken(places, claim, "gone"), True
            if not stat.S_ISREG(info.st_mode) or claim_moves.signature_of(info) != file.signature:
                return NotTaken(places, claim, "changed"), True
        done: list[ClaimedFile] = []
        for file in files:
            try:
                self._move_in(places.folder / file.source, self.root / file.target)
            except FileNotFoundError:
                # Taken back meanwhile: put the others back too.
                put_back = claim_moves.put_back(self.root, places, done)
                return NotTaken(places, claim, "gone"), put_back
            except OSError as exc:
                trouble = disk_trouble(exc)
                put_back = claim_moves.put_back(self.root, places, done)
                if trouble is None:
                    raise
                detail = f"cannot move {file.source} into the spool: {trouble} ({exc.filename})"
                return NotTaken(places, claim, "stuck", detail), put_back
            done.append(file)
        return None, True

    def _queue(self, places: Places, claims: Sequence[DropClaim]) -> list[Outcome]:
        return claim_queue.queue_claims(
            self.store, self.spool, self.root, places, claims, shared=self.shared
        )

    # ------------------------------------------------------------------ refusing (shared)

    def set_aside(self, folder: Path, source: str) -> Path | None:
        """Shared: a file about to be refused renamed into this instance's claims folder
        first (ASIDE_DIR/<where it was dropped>), so that one instance refuses it, as one
        claims it; None when another instance had it first."""
        target = self.root / ASIDE_DIR / source
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            claim_moves.rename_in(folder / source, target)
        except FileNotFoundError:
            return None
        return target

    def put_aside_back(self) -> None:
        """Files set aside and not refused (failed/ could not be written, or the instance
        died in between) go back where they were dropped, to be looked at again."""
        aside = self.root / ASIDE_DIR
        if not aside.is_dir():
            return
        folder = self.root.parent.parent  # <folder>/.faxgate-claims/<instance>/
        for path in sorted(aside.rglob("*"), reverse=True):  # files before their folders
            if path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            back = folder / path.relative_to(aside)
            if os.path.lexists(back):
                continue  # the name was taken again meanwhile: kept until it is free
            try:
                os.rename(path, back)
            except OSError as exc:
                log.warning("file set aside not put back path=%s error=%s", path, exc)
        with contextlib.suppress(OSError):
            aside.rmdir()

    def _move_in(self, source: Path, target: Path) -> None:
        if self.shared:
            claim_moves.rename_in(source, target)
        else:
            claim_moves.move_in(source, target)

    # ------------------------------------------------------------------ recovery

    def recover(self, folder: Path | None = None) -> list[Outcome]:
        """Finish the claims a crash left (those of `folder`, or all when None)."""
        outcomes: list[Outcome] = []
        for record in sorted(self.root.glob("*" + RECORD_SUFFIX)):
            try:
                body = ClaimRecord.model_validate(read_json(record))
            except (ValueError, ValidationError, OSError) as exc:
                log.error("claim record unreadable, set aside path=%s error=%s", record, exc)
                record.rename(record.with_suffix(".unreadable"))
                continue
            if folder is not None and body.places.folder != folder:
                continue
            try:
                recovered = self._recover_record(body)
            except OSError as exc:
                trouble = passing_trouble(exc)
                self._complaints.warn(
                    body.places.folder,
                    f"claim not finished record={record.name} reason={trouble}; finished "
                    "once the folders can be written",
                    trouble,
                )
                continue
            outcomes.extend(recovered)
            left = stuck(recovered)
            if left:
                self._left_in_place(body.places, left, kept=True)
            else:
                record.unlink()
        if self.shared:
            self.put_aside_back()
        if self.others is not None:
            outcomes.extend(self.others())
        return outcomes

    def _recover_record(self, body: ClaimRecord) -> list[Outcome]:
        places = body.places
        queued = self._drops_in_store(body.created_at - _CLOCK_MARGIN)
        outcomes: list[Outcome] = []
        pending: list[DropClaim] = []
        for claim in body.drops:
            if claim.drop in queued:
                for file in claim.files:
                    if (self.root / file.target).exists():
                        claim_moves.let_go_of_copy(places, file)
                continue
            missing = self._finish_claim(places, claim)
            if missing:
                reason = f"{', '.join(missing)} disappeared before faxgate took it"
                outcomes.append(
                    claim_queue.spoiled(self.root, places, claim, Refused.MISSING, reason)
                )
            else:
                pending.append(claim)
        claim_moves.flush(self.root, places, pending)
        outcomes.extend(self._queue(places, pending))
        log.info(
            "claims recovered folder=%s drops=%d queued_now=%d",
            places.folder,
            len(body.drops),
            sum(isinstance(o, Queued) for o in outcomes),
        )
        return outcomes

    def _finish_claim(self, places: Places, claim: DropClaim) -> list[str]:
        """Claim what a crash left in the folder; the documents that are nowhere."""
        missing = []
        for file in claim.files:
            target = self.root / file.target
            if target.exists():
                claim_moves.let_go_of_copy(places, file)
                continue
            source = places.folder / file.source
            try:
                info = os.lstat(source)
            except FileNotFoundError:
                info = None
            if info is not None and claim_moves.signature_of(info) == file.signature:
                self._move_in(source, target)
            elif file is not claim.sidecar:  # a sidecar's content is in the record
                missing.append(file.source)
        return missing

    def _drops_in_store(self, since: datetime) -> set[str]:
        """Drop ids of the folder jobs created since `since`."""
        limit = 256
        while True:
            jobs = self.store.recent_jobs(limit)
            if len(jobs) < limit or jobs[-1].created_at < since:
                break
            limit *= 4
        return {
            str(job.intake_ref.get("drop"))
            for job in jobs
            if job.intake is Intake.FOLDER and job.created_at >= since
        }

    def cleanup(self) -> None:
        """At start: temporary copies a crash left behind."""
        remove_quietly(
            p
            for p in self.root.iterdir()
            if p.name.startswith(".") and p.name != LOCK_NAME and p.is_file()
        )

    def _left_in_place(
        self, places: Places, not_taken: Sequence[NotTaken], *, kept: bool = False
    ) -> None:
        files = ",".join(f.source for o in not_taken for f in o.claim.documents)
        where = (
            "claimed and kept in the spool, queued once it can be"
            if kept
            else "left in the folder, tried again later"
        )
        detail = not_taken[0].detail
        self._complaints.warn(
            places.folder, f"files not taken files={files} reason={detail}; {where}", detail
        )


class _Complaints:
    """Warnings; the same trouble (`about`) in the same folder again only now and then,
    so that a disk full for hours does not fill the log."""

    def __init__(self) -> None:
        self._last: dict[tuple[Path, str], float] = {}  # last warned, monotonic

    def warn(self, folder: Path, event: str, about: str) -> None:
        key = (folder, about)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < _COMPLAIN_EVERY:
            log.debug("hot folder %s folder=%s", event, folder)
            return
        self._last[key] = now
        log.warning("hot folder %s folder=%s", event, folder)


def placement_path(claims: Path, drop: str) -> Path:
    """The record of where a drop's files were placed (notify/folder_result.py)."""
    return claims / f"{drop}{PLACED_SUFFIX}"
