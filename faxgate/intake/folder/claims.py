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

The spool's own `Spool.adopt` is not used: it picks the file's new name as it moves it, and
the record must know that name before the move.

A full disk, a read-only folder or a store that cannot grow takes nothing: whatever was
moved is linked back into the folder and the record goes, so the file stays where it was
dropped (NotTaken "stuck"), a warning says why, and the next look at the folder tries
again. Where a file cannot go back (its name was taken meanwhile, or the spool is on
another file system), the record stays and the recovery finishes the claim later.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import secrets
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from faxgate.clock import utc_now
from faxgate.domain.documents import DocumentRefused
from faxgate.domain.jobs import Intake
from faxgate.domain.numbers import FaxNumber
from faxgate.durable import CHUNK, fsync_dir
from faxgate.intake.folder.claim_records import (
    ClaimedFile,
    ClaimRecord,
    DropClaim,
    NotTaken,
    Outcome,
    Queued,
    Spoiled,
)
from faxgate.intake.folder.drops import CONTENT, MISSING, NOT_A_FILE, UNREADABLE, Drop
from faxgate.intake.folder.files import json_bytes, read_json, remove_quietly, write_json
from faxgate.intake.folder.naming import STATUS_SUFFIX, unique_name
from faxgate.intake.folder.ready import Signature
from faxgate.intake.folder.status import FolderRef, Places, status_document
from faxgate.intake.queue import FaxRequest, IncomingDocument, queue_faxes
from faxgate.store import Store
from faxgate.store.spool import FULL_ERRNOS, Spool, SpooledFile, clean_suffix, disk_trouble

log = logging.getLogger("faxgate.hotfolder")

CLAIMS_DIR: Final = "folder"
_NO_LINKS: Final = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})
FLUSHERS: Final = 8  # threads hashing and flushing the files of a batch
RECORD_SUFFIX: Final = ".claim.json"
# Jobs are looked for this far before a record's time, for a clock set back meanwhile.
_CLOCK_MARGIN: Final = timedelta(hours=1)
# The same trouble in the same folder is logged as a warning this often (seconds).
_COMPLAIN_EVERY: Final = 60.0
# Hashing and flushing a claimed file: these mean the disk, not the file, is the trouble.
_FLUSH_TROUBLE: Final = FULL_ERRNOS | {errno.EIO}


class _ClaimBase:
    """spool/folder/: the claimed files, the claim records and the result records; the
    status files, queueing the claimed files' jobs, and saying why a file stays."""

    def __init__(self, spool_dir: Path, store: Store) -> None:
        self.spool = Spool(spool_dir)
        self.root = self.spool.root / CLAIMS_DIR
        self.root.mkdir(exist_ok=True)
        self.store = store
        self._complaints: dict[tuple[Path, str], float] = {}  # last warned, monotonic

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
        drop_id = f"{utc_now():%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}"

        def claimed(name: str, target: str) -> ClaimedFile:
            sig = signatures[name]
            source = f"{folder}/{name}" if folder else name
            return ClaimedFile(
                source=source, target=target, size=sig.size, mtime_ns=sig.mtime_ns, inode=sig.inode
            )

        documents = [
            claimed(name, f"{drop_id}-{i}{clean_suffix(Path(name).suffix)}")
            for i, name in enumerate(drop.documents)
        ]
        status_name = unique_name(drop.documents[0], lambda n: n + STATUS_SUFFIX in statuses)
        statuses.add(status_name + STATUS_SUFFIX)
        return DropClaim(
            drop=drop_id,
            documents=documents,
            names=list(drop.documents),
            sidecar=None if drop.sidecar is None else claimed(drop.sidecar, f"{drop_id}.sidecar"),
            numbers=[n.e164 for n in drop.numbers],
            from_line=drop.from_line,
            cover_to=drop.cover_to,
            cover_from=drop.cover_from,
            cover_message=drop.cover_message,
            notify=drop.notify,
            number_from=drop.source.value,
            status=places.processing / (status_name + STATUS_SUFFIX),
            taken_at=utc_now(),
        )

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
                _write_new(claim.status, json_bytes(document))
            except (FileExistsError, FileNotFoundError):
                continue  # the name was taken meanwhile, or processing/ is gone
            except OSError as exc:
                # Only a status for people: the fax goes on without it.
                trouble = disk_trouble(exc)
                if trouble is None:
                    raise
                self._complain(
                    outcome.places.folder,
                    f"status file not written path={claim.status} reason={trouble}; the "
                    "fax goes on and its result comes as usual",
                    f"status: {trouble}",
                )
                continue
            if placement_path(self.root, claim.drop).exists():
                remove_quietly([claim.status])

    # ------------------------------------------------------------------ queueing

    def _queue(self, places: Places, claims: Sequence[DropClaim]) -> list[Outcome]:
        """Hash and flush the claimed files, then create every job in one transaction."""
        outcomes: list[Outcome] = []
        ready: list[tuple[DropClaim, FaxRequest]] = []
        # Flushing many files at once lets the file system commit them together.
        with ThreadPoolExecutor(FLUSHERS) as flushers:
            hashed = list(flushers.map(self._spooled_all, claims))
        for claim, spooled in zip(claims, hashed, strict=True):
            if isinstance(spooled, OSError) and spooled.errno in _FLUSH_TROUBLE:
                detail = f"cannot flush {claim.documents[0].source} to disk: {spooled.strerror}"
                outcomes.append(NotTaken(places, claim, "stuck", detail))
                continue
            if isinstance(spooled, PermissionError):
                reason = "the file cannot be read: faxgate has no permission to read it"
                outcomes.append(self._spoiled(places, claim, UNREADABLE, reason))
                continue
            if isinstance(spooled, OSError):  # a symlink swapped in before the rename, say
                reason = f"the file changed: {spooled.strerror}"  # no path: it is ours
                outcomes.append(self._spoiled(places, claim, NOT_A_FILE, reason))
                continue
            ready.append((claim, _request(claim, claim.ref(places), spooled)))
        if not ready:
            return outcomes
        try:
            batches = queue_faxes(self.store, self.spool, [request for _, request in ready])
        except DocumentRefused:
            # Checked before the claim, so rare (the content changed): one by one.
            for claim, request in ready:
                try:
                    (jobs,) = queue_faxes(self.store, self.spool, [request])
                except DocumentRefused as refused:
                    outcomes.append(self._spoiled(places, claim, CONTENT, str(refused)))
                    continue
                except Exception as exc:
                    outcomes.append(self._not_queued(places, claim, exc))
                    continue
                outcomes.append(Queued(places, claim, jobs))
            return outcomes
        except Exception as exc:
            outcomes.extend(self._not_queued(places, claim, exc) for claim, _ in ready)
            return outcomes
        outcomes.extend(
            Queued(places, claim, jobs) for (claim, _), jobs in zip(ready, batches, strict=True)
        )
        return outcomes

    def _not_queued(self, places: Places, claim: DropClaim, exc: Exception) -> NotTaken:
        """A store that cannot take the jobs now (full, read-only): stuck; anything else
        is raised."""
        trouble = disk_trouble(exc)
        if trouble is None:
            raise exc
        return NotTaken(places, claim, "stuck", f"cannot record the fax in the store: {trouble}")

    def _spooled_all(self, claim: DropClaim) -> list[SpooledFile] | OSError:
        try:
            return [self._spooled(f) for f in claim.documents]
        except OSError as exc:
            return exc

    def _spooled(self, file: ClaimedFile) -> SpooledFile:
        path = self.root / file.target
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            digest, size = hashlib.sha256(), 0
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
            os.fsync(handle.fileno())  # written by someone else: make sure it is on disk
        return SpooledFile(path, size, digest.hexdigest())

    def _spoiled(self, places: Places, claim: DropClaim, code: str, reason: str) -> Spoiled:
        files = [
            (self.root / f.target, name)
            for f, name in zip(claim.documents, claim.names, strict=True)
        ]
        if claim.sidecar is not None:
            files.append((self.root / claim.sidecar.target, Path(claim.sidecar.source).name))
        present = [(path, name) for path, name in files if path.exists() or path.is_symlink()]
        return Spoiled(places, claim, code, reason, present)

    # ------------------------------------------------------------------ saying why

    def _left_in_place(
        self, places: Places, stuck: Sequence[NotTaken], *, kept: bool = False
    ) -> None:
        files = ",".join(f.source for o in stuck for f in o.claim.documents)
        where = (
            "claimed and kept in the spool, queued once it can be"
            if kept
            else "left in the folder, tried again later"
        )
        detail = stuck[0].detail
        self._complain(
            places.folder, f"files not taken files={files} reason={detail}; {where}", detail
        )

    def _complain(self, folder: Path, event: str, about: str) -> None:
        """A warning; the same trouble (`about`) in the same folder again only now and
        then, so that a disk full for hours does not fill the log."""
        key = (folder, about)
        now = time.monotonic()
        last = self._complaints.get(key)
        if last is not None and now - last < _COMPLAIN_EVERY:
            log.debug("hot folder %s folder=%s", event, folder)
            return
        self._complaints[key] = now
        log.warning("hot folder %s folder=%s", event, folder)


class _Claimer(_ClaimBase):
    """Claiming a batch: the record flushed, the files moved in, their jobs queued."""

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
            trouble = disk_trouble(exc)
            if trouble is None:
                raise
            detail = f"cannot write in the spool {self.root}: {trouble}"
            stuck = [NotTaken(places, claim, "stuck", detail) for claim in claims]
            self._left_in_place(places, stuck)
            return list(stuck)
        outcomes: dict[str, Outcome] = {}
        moved: list[DropClaim] = []
        settled = True  # False: a file is neither queued nor back in the folder
        for claim in claims:
            not_taken, put_back = self._claim_files(places, claim)
            settled = settled and put_back
            if not_taken is None:
                moved.append(claim)
            else:
                outcomes[claim.drop] = not_taken
        self._flush(places, moved)
        for outcome in self._queue(places, moved):
            outcomes[outcome.claim.drop] = outcome
            if _is_stuck(outcome):
                # Moved in but not queued: back into the folder, as if never taken.
                settled = self._put_back(places, _files(outcome.claim)) and settled
        stuck = _stuck(outcomes.values())
        if settled:
            record.unlink()
        if stuck:
            self._left_in_place(places, stuck, kept=not settled)
        return [outcomes[claim.drop] for claim in claims]

    def _claim_files(self, places: Places, claim: DropClaim) -> tuple[NotTaken | None, bool]:
        """Move the drop's files into the claims folder, all or none: (why not, None when
        all moved; False when some moved file could not be put back in the folder)."""
        files = _files(claim)
        for file in files:
            try:
                info = os.lstat(places.folder / file.source)
            except FileNotFoundError:
                return NotTaken(places, claim, "gone"), True
            if not stat.S_ISREG(info.st_mode) or _signature(info) != file.signature:
                return NotTaken(places, claim, "changed"), True
        done: list[ClaimedFile] = []
        for file in files:
            try:
                self._move_in(places.folder / file.source, self.root / file.target)
            except FileNotFoundError:
                # Taken back meanwhile: put the others back too.
                return NotTaken(places, claim, "gone"), self._put_back(places, done)
            except OSError as exc:
                trouble = disk_trouble(exc)
                put_back = self._put_back(places, done)
                if trouble is None:
                    raise
                detail = f"cannot move {file.source} into the spool: {trouble} ({exc.filename})"
                return NotTaken(places, claim, "stuck", detail), put_back
            done.append(file)
        return None, True

    def _move_in(self, source: Path, target: Path) -> None:
        """A hard link into the spool, then the folder's name removed: whoever removes
        the name owns the file. (A rename out of a watched folder leaves inotify an
        unpaired move, which watchdog holds back half a second, and every event after it.)"""
        try:
            os.link(source, target, follow_symlinks=False)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                # The spool is on another file system: copy, flush, then let go.
                _copy_regular(source, target)
                fsync_dir(self.root)
            elif exc.errno in _NO_LINKS:
                os.rename(source, target)  # a file system without hard links
                return
            else:
                raise
        try:
            os.unlink(source)
        except OSError:
            # Someone else took it first, or the folder is read-only: not ours after all.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
            raise

    def _put_back(self, places: Places, files: Sequence[ClaimedFile]) -> bool:
        """Give moved files their names in the folder again (a hard link back, the same
        file: a recovery finds it unchanged); False when one cannot go back (its name was
        taken meanwhile, the spool is on another file system...): it stays in the spool."""
        back = True
        for file in files:
            target, source = self.root / file.target, places.folder / file.source
            if not target.exists():
                continue
            try:
                os.link(target, source, follow_symlinks=False)
            except OSError:
                back = False
                continue
            os.unlink(target)
        if files:
            with contextlib.suppress(OSError):
                fsync_dir(self.root)
                for folder in {(places.folder / f.source).parent for f in files}:
                    fsync_dir(folder)
        return back

    def _flush(self, places: Places, claims: Sequence[DropClaim]) -> None:
        if not claims:
            return
        fsync_dir(self.root)
        folders = {(places.folder / f.source).parent for c in claims for f in c.documents} | {
            (places.folder / c.sidecar.source).parent for c in claims if c.sidecar
        }
        for folder in folders:
            with contextlib.suppress(OSError):
                fsync_dir(folder)


class ClaimBox(_Claimer):
    """The claims of the hot folders: taken in batches (take), and finished after a crash
    from the records left behind (recover)."""

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
                trouble = disk_trouble(exc)
                if trouble is None:
                    raise
                self._complain(
                    body.places.folder,
                    f"claim not finished record={record.name} reason={trouble}; finished "
                    "once the folders can be written",
                    trouble,
                )
                continue
            outcomes.extend(recovered)
            stuck = _stuck(recovered)
            if stuck:
                self._left_in_place(body.places, stuck, kept=True)
            else:
                record.unlink()
        return outcomes

    def _recover_record(self, body: ClaimRecord) -> list[Outcome]:
        places = body.places
        queued = self._drops_in_store(body.created_at - _CLOCK_MARGIN)
        outcomes: list[Outcome] = []
        pending: list[DropClaim] = []
        for claim in body.drops:
            if claim.drop in queued:
                self._let_go_of_copied(places, claim)
                continue
            missing = self._finish_claim(places, claim)
            if missing:
                reason = f"{', '.join(missing)} disappeared before faxgate took it"
                outcomes.append(self._spoiled(places, claim, MISSING, reason))
            else:
                pending.append(claim)
        self._flush(places, pending)
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
        for file in [*claim.documents, *([claim.sidecar] if claim.sidecar else [])]:
            target = self.root / file.target
            if target.exists():
                self._let_go_of_copy(places, file)
                continue
            source = places.folder / file.source
            try:
                info = os.lstat(source)
            except FileNotFoundError:
                info = None
            if info is not None and _signature(info) == file.signature:
                self._move_in(source, target)
            elif file is not claim.sidecar:  # a sidecar's content is in the record
                missing.append(file.source)
        return missing

    def _let_go_of_copied(self, places: Places, claim: DropClaim) -> None:
        for file in [*claim.documents, *([claim.sidecar] if claim.sidecar else [])]:
            if (self.root / file.target).exists():
                self._let_go_of_copy(places, file)

    def _let_go_of_copy(self, places: Places, file: ClaimedFile) -> None:
        """A link (or copy) into the spool was made, the folder's name not yet removed:
        remove it now. A new file dropped under the same name has another inode (or size,
        or time), and stays."""
        source = places.folder / file.source
        with contextlib.suppress(FileNotFoundError):
            if _signature(os.lstat(source)) == file.signature:
                os.unlink(source)

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
        remove_quietly(p for p in self.root.iterdir() if p.name.startswith(".") and p.is_file())


def placement_path(claims: Path, drop: str) -> Path:
    """The record of where a drop's files were placed (folder_results)."""
    return claims / f"{drop}.placed.json"


def _request(claim: DropClaim, ref: FolderRef, spooled: Iterable[SpooledFile]) -> FaxRequest:
    return FaxRequest(
        numbers=[FaxNumber(e164, None) for e164 in claim.numbers],
        documents=[
            IncomingDocument(name, file) for name, file in zip(claim.names, spooled, strict=True)
        ],
        intake=Intake.FOLDER,
        intake_ref=ref.intake_ref(),
        from_line=claim.from_line,
        cover_to=claim.cover_to,
        cover_from=claim.cover_from,
        cover_message=claim.cover_message,
        reply_to=claim.notify,
    )


def _files(claim: DropClaim) -> list[ClaimedFile]:
    return [*claim.documents, *([claim.sidecar] if claim.sidecar else [])]


def _is_stuck(outcome: Outcome) -> bool:
    return isinstance(outcome, NotTaken) and outcome.why == "stuck"


def _stuck(outcomes: Iterable[Outcome]) -> list[NotTaken]:
    return [o for o in outcomes if isinstance(o, NotTaken) and o.why == "stuck"]


def _write_new(path: Path, data: bytes) -> None:
    """Create `path` holding `data`; FileExistsError when the name is taken. A failed
    write (a full disk) leaves no empty file behind."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    except BaseException:
        remove_quietly([path])
        raise


def _signature(info: os.stat_result) -> Signature:
    return Signature(info.st_size, info.st_mtime_ns, info.st_ino)


def _copy_regular(source: Path, target: Path) -> None:
    temp = target.with_name(f".{target.name}.tmp")
    try:
        src_fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(src_fd, "rb") as src, temp.open("wb") as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.rename(temp, target)
    finally:
        temp.unlink(missing_ok=True)
