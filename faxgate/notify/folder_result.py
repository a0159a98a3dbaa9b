"""Where a drop ends up: sent/ or failed/, beside NAME.result.json. The "folder"
reporter of the notifier (files refused at intake: faxgate.intake.folder.refusals).

A drop's jobs (one per number) report one by one; while some are still in flight, a
report only updates the status file. When the last one is settled, each document gets a
second hard link (a copy where links cannot be made) in sent/ (every number sent) or
failed/ (any other end), beside its result file. Once nothing can send it again (every
number sent, or cancelled), the spool's copy goes: in effect the file moved. A failed one
keeps its spool copy, because `faxgate retry` sends that again.

Names never collide: a second "invoice.pdf" becomes "invoice (2).pdf". Delivery is at
least once (see notifier.py), so placing is idempotent: a link made before a crash is
found again (the same file) rather than made twice, and the names used are written to a
placement record in the spool (spool/folder/<drop>.placed.json) before the results, so a
second delivery finishes the same placement. A later round (a job retried
by a person, an uncertain fax settled) takes back the earlier round's copies that are
still untouched, so a file ends in one place.

A full disk or a read-only sent/, failed/ or processing/ loses nothing: a result that
cannot be placed raises ResultNotPlaced, and the notifier keeps the report and tries
again later (placing is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import glob
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final

from faxgate.clock import iso_utc, utc_now
from faxgate.domain.jobs import FINISHED_STATES, Document, Job, JobState, Notification
from faxgate.domain.numbers import display_number
from faxgate.domain.outcomes import PRESUMED_SENT_REASON
from faxgate.durable import copy_file, write_bytes
from faxgate.intake.folder.claims import CLAIMS_DIR, placement_path
from faxgate.intake.folder.files import read_json, remove_quietly, write_json
from faxgate.intake.folder.naming import RESULT_SUFFIX, numbered
from faxgate.intake.folder.status import FolderRef, status_document, write_status
from faxgate.notify.confirmation import Confirmations, report_name
from faxgate.notify.mailer import Mailer
from faxgate.notify.report_text import calls, compose_report, read_outcome
from faxgate.notify.reporter import PermanentFailure, Reporter
from faxgate.store import Store
from faxgate.store.spool import passing_trouble

log = logging.getLogger("faxgate.hotfolder")

SETTLED: Final = frozenset({*FINISHED_STATES, JobState.UNCERTAIN})
# Nothing can send these again: their documents may leave the spool.
_FINAL: Final = frozenset({JobState.SENT, JobState.CANCELLED})
# Into sent/: sent, or presumed sent (the provider removed it; the result file says which).
_SENT: Final = frozenset({JobState.SENT, JobState.PRESUMED_SENT})
REPORT_SUFFIX: Final = ".report.pdf"


class ResultNotPlaced(Exception):
    """A drop's result cannot be placed for now (a full disk, a read-only folder); the
    report is kept and tried again."""


# ---------------------------------------------------------------------------- refused


# ---------------------------------------------------------------------------- reporter


def folder_reporter(
    store: Store, mailer: Mailer, spool_dir: Path, confirmations: Confirmations | None = None
) -> Reporter:
    """The notifier's handler for reports on folder jobs; with `confirmations`, each fax's
    confirmation report is written beside the drop's result file."""
    results = Results(store, spool_dir / CLAIMS_DIR)

    async def handle(notification: Notification, job: Job | None) -> None:
        if job is None:
            raise PermanentFailure("the job it reports on is no longer in the store")
        ref = FolderRef.read(job.intake_ref)
        if ref is None:
            raise PermanentFailure(f"job {job.id} does not say which folder drop it came from")
        placement = await asyncio.to_thread(results.settle, job, ref)
        written: dict[str, bytes] = {}
        if placement is not None and confirmations is not None and confirmations.enabled:
            written = await write_reports(store, confirmations, job, placement)
        if job.reply_to:
            documents = await asyncio.to_thread(store.documents, job.id)
            events = await asyncio.to_thread(store.events, job.id)
            told = [event for event in events if event.at <= notification.created_at]
            message = compose_report(job, documents, told, notification.payload)
            if confirmations is not None and confirmations.enabled:
                report = written.get(job.id) or await confirmations.report(
                    job, documents, told, notification.payload
                )
                if report is not None:
                    message.add_attachment(
                        report, maintype="application", subtype="pdf", filename=report_name(job)
                    )
            await mailer.send(message)

    return handle


async def write_reports(
    store: Store, confirmations: Confirmations, job: Job, placement: Placement
) -> dict[str, bytes]:
    """Each of the drop's faxes' confirmation report beside its first file's result:
    NAME.report.pdf, or NAME.report-NUMBER.pdf when the drop went to several numbers.
    Written again on a second delivery (the same place, the same names). The reports
    written, by job."""
    written: dict[str, bytes] = {}
    jobs = await asyncio.to_thread(store.group_jobs, job.group_id) if job.group_id else [job]
    for each in jobs:
        documents = await asyncio.to_thread(store.documents, each.id)
        events = await asyncio.to_thread(store.events, each.id)
        notifications = await asyncio.to_thread(store.notifications, each.id)
        payload = next((n.payload for n in reversed(notifications) if n.kind == "report"), {})

        def placed(document: Document) -> Path | None:
            # The spool lets go of a sent drop's files: the copy in sent/ is the same file.
            names = placement.names
            return placement.directory / names[document.seq] if document.seq < len(names) else None

        report = await confirmations.report(each, documents, events, payload, fallback=placed)
        if report is None:
            continue
        written[each.id] = report
        suffix = REPORT_SUFFIX if len(jobs) == 1 else f".report-{each.to_number.lstrip('+')}.pdf"
        target = placement.directory / (placement.names[0] + suffix)
        try:
            await asyncio.to_thread(functools.partial(write_bytes, target, report, sync=True))
        except OSError as exc:
            trouble = passing_trouble(exc)
            raise ResultNotPlaced(
                f"the report {target.name} waits: cannot write in {target.parent}: {trouble}; "
                "tried again later"
            ) from exc
    return written


@dataclass(frozen=True, slots=True)
class Placement:
    key: str
    directory: Path
    names: list[str]  # the documents' names there
    sidecar: str | None
    sent: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "directory": str(self.directory),
            "names": self.names,
            "sidecar": self.sidecar,
            "sent": self.sent,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Placement:
        return cls(
            key=str(data["key"]),
            directory=Path(data["directory"]),
            names=[str(n) for n in data["names"]],
            sidecar=None if data.get("sidecar") is None else str(data["sidecar"]),
            sent=bool(data["sent"]),
        )


class Results:
    """Status updates and placements for folder drops (blocking IO: a worker thread)."""

    def __init__(self, store: Store, claims: Path, clock: Callable[[], datetime] = utc_now):
        self._store = store
        self._claims = claims
        self._clock = clock

    def settle(self, job: Job, ref: FolderRef) -> Placement | None:
        """Place the drop when all its jobs are settled (the placement), else update its
        status file (None). ResultNotPlaced when a folder cannot be written now."""
        try:
            return self._settle(job, ref)
        except OSError as exc:
            trouble = passing_trouble(exc)
            written = exc.filename2 or exc.filename
            where = Path(written).parent if written else ref.places.folder
            raise ResultNotPlaced(
                f"the result of {ref.files[0]} (drop {ref.drop}) waits: cannot write in "
                f"{where}: {trouble}; tried again later"
            ) from exc

    def _settle(self, job: Job, ref: FolderRef) -> Placement | None:
        jobs = self._store.group_jobs(job.group_id) if job.group_id else [job]
        jobs = [self._store.get_job(j.id) or j for j in jobs]
        if any(j.state not in SETTLED for j in jobs):
            self._update_status(ref, jobs)
            return None
        facts = [self._facts(j) for j in jobs]
        claims = self._claims_of(job, ref)
        placement = self._placement(ref, jobs, claims)
        result = result_document(ref, placement, facts, self._clock())
        for i, name in enumerate(placement.names):
            document = {**result, "file": name, "dropped_as": ref.files[i]}
            write_json(placement.directory / (name + RESULT_SUFFIX), document, durable=True)
        if ref.status.exists():  # removing a missing file fails on a read-only folder
            remove_quietly([ref.status])
        if all(j.state in _FINAL for j in jobs):
            # Nothing can send it again: the spool lets go of its copy.
            remove_quietly(claims / name for name in _spooled(ref))
        log.info(
            "folder drop done drop=%s outcome=%s placed=%s",
            ref.drop,
            result["outcome"],
            placement.directory / placement.names[0],
        )
        return placement

    def _update_status(self, ref: FolderRef, jobs: Sequence[Job]) -> None:
        if not ref.status.exists():
            return
        faxes = [(j.to_number, j.state.value) for j in jobs]
        document = status_document(ref.files, faxes, taken_at=ref.taken_at, now=self._clock())
        try:
            write_status(ref.status, document)
        except OSError as exc:
            # Only a status for people: the next change or the result writes it again.
            trouble = passing_trouble(exc)
            log.warning("status file not updated path=%s reason=%s", ref.status, trouble)

    def _claims_of(self, job: Job, ref: FolderRef) -> Path:
        """The claims folder the drop was spooled in: where its documents are. Instances
        sharing a store each have a spool of their own, and the one delivering a report
        may not be the one that took the drop (it died, say, after placing the files and
        before the report was marked delivered): the placement record and the spooled
        files are in the taker's. A shared hot folder's drops are in its claims folder,
        which every instance reads."""
        if ref.claims is not None:
            return ref.claims
        for document in self._store.documents(job.id):
            if document.path.name in ref.spooled:
                return document.path.parent
        return self._claims

    def _placement(self, ref: FolderRef, jobs: Sequence[Job], claims: Path) -> Placement:
        """Where the drop's files go, and the files put there: a second link to each
        spooled file (a copy across file systems), under a name no other file has."""
        key = _round_key(jobs)
        record = placement_path(claims, ref.drop)
        if record.exists():
            earlier = Placement.from_json(read_json(record))
            if earlier.key == key:
                return earlier  # a second delivery: the files are there already
            self._take_back(ref, earlier, claims)
        sent = all(j.state in _SENT for j in jobs)
        directory = ref.places.result_dir(sent=sent, when=self._clock())
        directory.mkdir(parents=True, exist_ok=True)
        names = [
            self._put(directory, name, claims / spooled)
            for name, spooled in zip(ref.names, ref.spooled, strict=True)
        ]
        sidecar = None
        if ref.sidecar is not None and ref.sidecar_spooled is not None:
            own = PurePosixPath(ref.sidecar).name
            wanted = f"{names[0]}.json" if own.startswith(PurePosixPath(ref.files[0]).stem) else own
            sidecar = self._put(directory, wanted, claims / ref.sidecar_spooled)
        placement = Placement(key, directory, names, sidecar, sent)
        write_json(record, placement.as_json(), durable=True)  # replaces an earlier round's
        return placement

    @staticmethod
    def _put(directory: Path, name: str, source: Path) -> str:
        """Link (or copy) `source` into `directory` under the first free form of `name`
        (free: no file, no result file); the name used. A link made before a crash is
        found again (the same file) instead of making a second one."""
        for n in range(1, 10_000):
            candidate = numbered(name, n)
            target = directory / candidate
            if (directory / (candidate + RESULT_SUFFIX)).exists():
                continue
            if target.exists() or target.is_symlink():
                with contextlib.suppress(OSError):
                    if os.path.samefile(target, source):
                        return candidate
                continue
            if not source.exists():
                return candidate  # the spool lost it: the result says where it would be
            try:
                copy_file(source, target)
            except FileExistsError:
                continue  # taken in between
            return candidate
        raise FileExistsError(f"no free name left for {name!r} in {directory}")

    def _take_back(self, ref: FolderRef, earlier: Placement, claims: Path) -> None:
        """Remove an earlier round's copies that are still the spool's own (untouched)."""
        for i, (spooled, name) in enumerate(zip(ref.spooled, earlier.names, strict=True)):
            copy, source = earlier.directory / name, claims / spooled
            try:
                ours = source.exists() and os.path.samefile(copy, source)
            except FileNotFoundError:
                ours = False
            if ours:
                copy.unlink()
                remove_quietly([earlier.directory / (name + RESULT_SUFFIX)])
                if i == 0:  # the confirmation reports stand beside the first file
                    remove_quietly(list(earlier.directory.glob(glob.escape(name) + ".report*.pdf")))

    def _facts(self, job: Job) -> dict[str, Any]:
        reports = [n for n in self._store.notifications(job.id) if n.kind == "report"]
        events = self._store.events(job.id)
        outcome = read_outcome(job, events, reports[-1].payload if reports else {})
        tries = calls(events)
        first = tries[0].started_at if tries else job.submitted_at
        return {
            "number": job.to_number,
            "number_display": display_number(job.to_number),
            "outcome": outcome.state.value,
            "reason": outcome.reason,
            "pages": outcome.pages,
            "tries": outcome.attempts if tries else 0,
            "queued_at": iso_utc(job.created_at),
            "first_try_at": None if first is None else iso_utc(first),
            "finished_at": None if outcome.at is None else iso_utc(outcome.at),
            "provider_guid": outcome.provider_guid,
            "job": job.id,
        }


def result_document(
    ref: FolderRef, placement: Placement, faxes: Sequence[dict[str, Any]], now: datetime
) -> dict[str, Any]:
    """NAME.result.json: the outcome in plain words, then every fax's facts."""
    outcome, reason, next_step = summary(faxes)
    document: dict[str, Any] = {
        "file": placement.names[0],
        "dropped_as": ref.files[0],
        "files": placement.names,
        "outcome": outcome,
        "reason": reason,
    }
    if next_step:
        document["next"] = next_step
    if len(faxes) == 1:
        (only,) = faxes
        document.update(
            number=only["number"],
            pages=only["pages"],
            tries=only["tries"],
            provider_guid=only["provider_guid"],
        )
    finished = [f["finished_at"] for f in faxes if f["finished_at"]]
    document.update(
        taken_at=iso_utc(ref.taken_at),
        finished_at=max(finished) if finished else iso_utc(now),
        faxes=list(faxes),
    )
    return document


def summary(faxes: Sequence[dict[str, Any]]) -> tuple[str, str, str | None]:
    """(outcome, reason, what to do next) for a drop's faxes."""
    states = {f["outcome"] for f in faxes}
    if states == {JobState.SENT.value}:
        parts = [f"sent to {f['number_display']}{_pages(f['pages'])}" for f in faxes]
        return "sent", "; ".join(parts), None
    sent_like = {JobState.SENT.value, JobState.PRESUMED_SENT.value}
    if states <= sent_like:
        presumed = " ".join(f["job"] for f in faxes if f["outcome"] != JobState.SENT.value)
        parts = [
            f"{'sent' if f['outcome'] == JobState.SENT.value else 'presumably sent'} to "
            f"{f['number_display']}{_pages(f['pages'])}"
            for f in faxes
        ]
        return (
            JobState.PRESUMED_SENT.value,
            f"{'; '.join(parts)}: {PRESUMED_SENT_REASON}",
            "nothing, unless the recipient did not get it: then "
            f"`faxgate retry {presumed}`; a late callback updates `faxgate status`",
        )
    if states == {JobState.CANCELLED.value}:
        return "cancelled", "the fax was cancelled before it was sent", None
    if len(faxes) == 1:
        reason = faxes[0]["reason"]
    else:
        reason = "; ".join(f"{f['number_display']}: {f['reason']}" for f in faxes)
    jobs = " ".join(f["job"] for f in faxes if f["outcome"] not in sent_like)
    if JobState.UNCERTAIN.value in states:
        outcome = "uncertain"
        next_step = (
            "faxgate cannot tell whether it was sent; ask the recipient before sending it "
            f"again (`faxgate retry {jobs}`)"
        )
    elif states & sent_like:
        outcome = "partly sent"
        next_step = (
            "it was not sent to every number; to send it to the others only, drop it again "
            f"with their numbers (or run `faxgate retry {jobs}`)"
        )
    else:
        outcome = "failed"
        next_step = f"to try again, drop the file again, or run `faxgate retry {jobs}`"
    return outcome, reason, next_step


def _spooled(ref: FolderRef) -> list[str]:
    return [*ref.spooled, *([ref.sidecar_spooled] if ref.sidecar_spooled else [])]


def _round_key(jobs: Sequence[Job]) -> str:
    text = ";".join(f"{j.id}:{j.attempt}:{j.state.value}" for j in sorted(jobs, key=lambda j: j.id))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _pages(pages: object) -> str:
    if isinstance(pages, int) and pages > 0:
        return f" ({pages} page{'s' if pages != 1 else ''})"
    return ""
