"""Document retention in the store: a pass removes exactly the documents due (their rows
marked, their files and, on PostgreSQL, their bytes gone), nothing else; it is idempotent,
finishes what a crash left, and several instances share it."""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from faxgate.domain.inbound import NewDelivery, NewInboundFax, ReceivedDocument
from faxgate.domain.jobs import Job, JobState
from faxgate.store import DocumentsRemoved, NewDocument, NewNotification, Store, retention
from faxgate.store.document_bytes import BYTES_LOCK
from faxgate.store.retention import purge
from faxgate.store.spool import Spool, SpooledFile
from tests.store.backends import Location, open_store, postgres_only, raw
from tests.store.making import FakeClock, new_job

S = JobState
KEEP = timedelta(days=90)


@pytest.fixture
def spool(tmp_path: Path, store: Store) -> Spool:
    spool = Spool(tmp_path / "spool")
    store.cache_documents_in(spool.root)
    return spool


def pdf(tag: str = "") -> bytes:
    return b"%PDF-1.4\n" + (tag or secrets.token_hex(16)).encode()


def finished_job(
    store: Store,
    spool: Spool,
    clock: FakeClock,
    state: JobState = S.SENT,
    *,
    data: bytes | None = None,
    notify: bool = False,
    eml: Path | None = None,
) -> Job:
    """A job taken in now and brought to `state` now; its documents in the spool."""
    file = spool.store_bytes(data or pdf(), suffix=".pdf")
    ref = {"eml": str(eml)} if eml else {}
    [job] = store.create_jobs(
        [new_job(documents=[NewDocument("a.pdf", file, "application/pdf")], intake_ref=ref)]
    )
    store.transition(job.id, S.SUBMITTING, detail="sending")
    if state is S.UNCERTAIN:
        return store.transition(job.id, S.UNCERTAIN, detail="may have left")
    store.transition(job.id, S.SUBMITTED, detail="taken")
    notification = NewNotification(payload={"x": 1}) if notify else None
    if state is S.CANCELLED:
        store.transition(job.id, S.FAILED, detail="failed")
        store.transition(job.id, S.QUEUED, detail="again")
        return store.transition(job.id, S.CANCELLED, detail="cancelled", notify=notification)
    return store.transition(job.id, state, detail="done", notify=notification)


def received(file: SpooledFile, guid: str | None = None) -> NewInboundFax:
    """An inbound fax whose document is `file`."""
    return NewInboundFax(
        provider_guid=guid or secrets.token_hex(20),
        to_number="+14155550100",
        from_number=None,
        pages=1,
        arrived_at=None,
        route="default",
        document=ReceivedDocument(file.path, file.size, file.sha256, "application/pdf"),
    )


def inbound(store: Store, spool: Spool, *, delivered: bool) -> str:
    file = spool.store_bytes(pdf(), suffix=".pdf")
    fax, _ = store.record_inbound(received(file), [NewDelivery("email", "a@example.org")])
    if delivered:
        store.mark_inbound_delivered(fax.id, 0, detail="sent")
    return fax.id


def files_of(store: Store, job: Job) -> list[Path]:
    return [d.path for d in store.documents(job.id)]


def test_a_pass_removes_exactly_the_documents_due(
    store: Store, spool: Spool, clock: FakeClock
) -> None:
    sent = finished_job(store, spool, clock, S.SENT)
    failed = finished_job(store, spool, clock, S.FAILED)
    cancelled = finished_job(store, spool, clock, S.CANCELLED)
    presumed = finished_job(store, spool, clock, S.PRESUMED_SENT)
    owing = finished_job(store, spool, clock, S.SENT, notify=True)
    uncertain = finished_job(store, spool, clock, S.UNCERTAIN)
    done_fax = inbound(store, spool, delivered=True)
    owed_fax = inbound(store, spool, delivered=False)
    clock.advance(days=91)
    recent = finished_job(store, spool, clock, S.SENT)
    gone = [files_of(store, job)[0] for job in (sent, failed, cancelled, presumed)]
    kept = [files_of(store, job)[0] for job in (owing, uncertain, recent)]
    done_file = store.get_inbound(done_fax).document.path  # type: ignore[union-attr]
    owed_file = store.get_inbound(owed_fax).document.path  # type: ignore[union-attr]

    report = purge(store, spool.root, KEEP)

    assert sorted(report.marked.jobs) == sorted(j.id for j in (sent, failed, cancelled, presumed))
    assert report.marked.inbound == [done_fax]
    assert report.marked.documents == 5
    assert report.files == 5
    assert not any(path.exists() for path in [*gone, done_file])
    assert all(path.exists() for path in [*kept, owed_file])
    for job in (sent, failed, cancelled, presumed):
        assert [d.removed_at for d in store.documents(job.id)] == [clock.now]
    for job in (owing, uncertain, recent):
        assert [d.removed_at for d in store.documents(job.id)] == [None]
    assert store.get_inbound(done_fax).removed_at == clock.now  # type: ignore[union-attr]
    assert store.get_inbound(owed_fax).removed_at is None  # type: ignore[union-attr]
    # The rows stay: the job, its events.
    assert store.get_job(sent.id) is not None
    assert store.events(sent.id)


def test_a_pass_is_idempotent_and_off_keeps_everything(
    store: Store, spool: Spool, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="faxgate.retention")
    job = finished_job(store, spool, clock)
    clock.advance(days=100)
    assert purge(store, spool.root, None).marked.documents == 0
    assert files_of(store, job)[0].exists()

    first = purge(store, spool.root, KEEP)
    removed_at = store.documents(job.id)[0].removed_at
    clock.advance(days=1)
    again = purge(store, spool.root, KEEP)
    assert (first.marked.documents, first.files) == (1, 1)
    assert (again.marked.documents, again.files, again.anything) == (0, 0, False)
    # One log line for the pass that removed anything, none for the one that did not.
    lines = [r.getMessage() for r in caplog.records if r.name == "faxgate.retention"]
    assert len(lines) == 1
    assert lines[0].startswith("documents removed jobs=1 inbound=0 documents=1 bytes=")
    assert store.documents(job.id)[0].removed_at == removed_at


def test_a_dry_run_changes_nothing(store: Store, spool: Spool, clock: FakeClock) -> None:
    job = finished_job(store, spool, clock, data=pdf("dry"))
    clock.advance(days=91)
    report = purge(store, spool.root, KEEP, dry_run=True)
    assert (report.dry_run, report.marked.jobs, report.marked.documents) == (True, [job.id], 1)
    assert report.marked.bytes == len(pdf("dry"))
    assert files_of(store, job)[0].exists()
    assert store.documents(job.id)[0].removed_at is None


def test_a_crash_after_the_commit_is_finished_by_the_next_pass(
    store: Store, spool: Spool, clock: FakeClock
) -> None:
    job = finished_job(store, spool, clock)
    path = files_of(store, job)[0]
    clock.advance(days=91)
    # The rows committed as removed, then the process died before the files went.
    store.mark_documents_removed(KEEP)
    assert path.exists()
    report = purge(store, spool.root, KEEP)
    assert (report.marked.documents, report.files) == (0, 1)
    assert not path.exists()


def test_batches_and_files_no_row_names(
    store: Store, spool: Spool, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "LOOKUP", 2)  # a look-up a few rows at a time
    jobs = [finished_job(store, spool, clock) for _ in range(5)]
    stray = spool.store_bytes(b"being taken in", suffix=".pdf")
    clock.advance(days=91)
    due = purge(store, spool.root, KEEP, dry_run=True)
    assert (len(due.marked.jobs), due.marked.documents) == (5, 5)
    report = purge(store, spool.root, KEEP, batch=2)
    assert sorted(report.marked.jobs) == sorted(j.id for j in jobs)
    assert report.files == 5
    assert stray.path.exists()  # no row names it: a message being taken in, left alone


def test_the_eml_goes_with_the_last_job_of_its_message(
    store: Store, spool: Spool, clock: FakeClock
) -> None:
    eml = spool.store_bytes(b"From: a@example.org\r\n\r\nhello", suffix=".eml").path
    first = finished_job(store, spool, clock, eml=eml)
    clock.advance(days=10)
    second = finished_job(store, spool, clock, eml=eml)
    clock.advance(days=85)
    purge(store, spool.root, KEEP)
    assert store.documents(first.id)[0].removed_at is not None
    assert store.documents(second.id)[0].removed_at is None
    assert eml.exists()  # the second job keeps its message
    clock.advance(days=10)
    report = purge(store, spool.root, KEEP)
    assert report.files == 2
    assert not eml.exists()


def test_a_document_two_jobs_share_stays_while_one_keeps_it(
    store: Store, spool: Spool, clock: FakeClock
) -> None:
    file = spool.store_bytes(pdf(), suffix=".pdf")
    doc = NewDocument("a.pdf", file, "application/pdf")
    old, young = store.create_jobs([new_job(documents=[doc]), new_job(documents=[doc])])
    for job in (old, young):
        store.transition(job.id, S.SUBMITTING, detail="sending")
        store.transition(job.id, S.SUBMITTED, detail="taken")
    store.transition(old.id, S.SENT, detail="done")
    clock.advance(days=91)
    store.transition(young.id, S.SENT, detail="done")
    purge(store, spool.root, KEEP)
    assert store.documents(old.id)[0].removed_at is not None
    assert file.path.exists()


# ------------------------------------------------------------------ PostgreSQL


@pytest.fixture
def other(location: Location, tmp_path: Path) -> Iterator[tuple[Store, Path]]:
    """Another instance on the same store, with a spool of its own."""
    other_spool = tmp_path / "other" / "spool"
    other_spool.mkdir(parents=True)
    with open_store(location) as opened:
        opened.cache_documents_in(other_spool)
        yield opened, other_spool


def kept_digests(location: Location) -> set[str]:
    with raw(location) as conn:
        return {row[0] for row in conn.execute("SELECT sha256 FROM document_bytes").fetchall()}


@postgres_only
def test_bytes_go_only_when_no_row_names_them_and_each_instance_clears_its_copies(
    location: Location,
    store: Store,
    spool: Spool,
    clock: FakeClock,
    other: tuple[Store, Path],
) -> None:
    shared = pdf("shared")
    old = finished_job(store, spool, clock, data=shared)
    alone = finished_job(store, spool, clock)
    clock.advance(days=50)
    young = finished_job(store, spool, clock, data=shared)
    digest = store.documents(old.id)[0].sha256
    alone_digest = store.documents(alone.id)[0].sha256
    # Another host read them: copies in its spool (this host's files out of its sight).
    instance, other_spool = other
    own = [*files_of(store, old), *files_of(store, alone)]
    for path in own:
        path.rename(path.with_name(f".away-{path.name}"))
    copies = [instance.documents(job.id)[0].path for job in (old, alone)]
    for path in own:
        path.with_name(f".away-{path.name}").rename(path)
    assert all(path.parent == other_spool for path in copies)
    clock.advance(days=45)

    purge(store, spool.root, KEEP)
    assert not any(path.exists() for path in own)
    assert digest in kept_digests(location)  # the young job still names them
    assert alone_digest not in kept_digests(location)
    assert store.documents(young.id)[0].removed_at is None

    # The other instance's pass marks nothing again, and clears its own copies.
    report = purge(instance, other_spool, KEEP, now=clock.now)
    assert report.marked.documents == 0
    assert not copies[1].exists()
    assert copies[0].exists()  # the young job still names its digest: the copy serves it

    clock.advance(days=50)
    purge(instance, other_spool, KEEP, now=clock.now)
    assert digest not in kept_digests(location)
    assert not copies[0].exists()
    # A removed document is not written back from the database.
    assert instance.documents(young.id)[0].removed_at is not None
    assert list(other_spool.iterdir()) == []


@postgres_only
def test_instances_purging_at_once_mark_each_row_once(
    location: Location, store: Store, spool: Spool, clock: FakeClock
) -> None:
    jobs = [finished_job(store, spool, clock) for _ in range(40)]
    clock.advance(days=91)
    instances = [open_store(location) for _ in range(3)]
    start = threading.Barrier(len(instances))
    marked: list[list[str]] = []
    errors: list[BaseException] = []

    def run(instance: Store) -> None:
        start.wait()
        try:
            while step := instance.mark_documents_removed(KEEP, now=clock.now, limit=3).jobs:
                marked.append(step)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(instance,)) for instance in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for instance in instances:
        instance.close()
    assert errors == []
    every = [job_id for step in marked for job_id in step]
    assert sorted(every) == sorted(j.id for j in jobs)  # each once, none left


@postgres_only
def test_removing_bytes_waits_for_a_write_that_counts_on_them(
    location: Location, store: Store, spool: Spool, clock: FakeClock
) -> None:
    """A write that finds a document's bytes kept and names them holds the bytes lock
    shared; a pass deleting bytes waits for it to commit, then sees the new row."""
    data = pdf("named again")
    old = finished_job(store, spool, clock, data=data)
    digest = store.documents(old.id)[0].sha256
    clock.advance(days=91)
    young = finished_job(store, spool, clock)
    with raw(location) as conn:
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock_shared(?)", (BYTES_LOCK,))
        conn.execute(
            "INSERT INTO documents (job_id, seq, name, path, size, sha256, content_type)"
            " VALUES (?, 1, 'again.pdf', '/elsewhere/again.pdf', ?, ?, 'application/pdf')",
            (young.id, len(data), digest),
        )
        done = threading.Event()

        def mark() -> None:
            store.mark_documents_removed(KEEP)
            done.set()

        marking = threading.Thread(target=mark)
        marking.start()
        assert not done.wait(0.5)  # held off by the writer
        conn.execute("COMMIT")
    marking.join(timeout=30)
    assert done.is_set()
    assert store.documents(old.id)[0].removed_at is not None
    assert digest in kept_digests(location)  # the young job names them now


def test_a_job_whose_documents_were_removed_is_never_queued_again(
    store: Store, spool: Spool, clock: FakeClock
) -> None:
    job = finished_job(store, spool, clock, S.FAILED)
    clock.advance(days=91)
    purge(store, spool.root, KEEP)
    with pytest.raises(DocumentsRemoved) as refused:
        store.transition(job.id, S.QUEUED, detail="again", expect=S.FAILED)
    assert refused.value.removed_at == clock.now
    assert store.get_job(job.id).state is S.FAILED  # type: ignore[union-attr]
    # A job whose documents stay is queued again as before.
    kept = finished_job(store, spool, clock, S.FAILED)
    assert store.transition(kept.id, S.QUEUED, detail="again").state is S.QUEUED


def test_files_in_the_spools_folders_and_outside_it_go_too(
    store: Store, spool: Spool, clock: FakeClock, tmp_path: Path
) -> None:
    """A hot folder's claims are in spool/folder/, a shared hot folder's in a claims folder
    of its own: their documents go as the spool's do."""
    claimed = spool.root / "folder" / "drop-1.pdf"
    shared = tmp_path / "shared-claims" / "drop-2.pdf"
    jobs = []
    for path in (claimed, shared):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pdf())
        file = SpooledFile(path, path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
        [job] = store.create_jobs(
            [new_job(documents=[NewDocument("d.pdf", file, "application/pdf")])]
        )
        for state in (S.SUBMITTING, S.SUBMITTED, S.SENT):
            store.transition(job.id, state, detail=state.value)
        jobs.append(job)
    record = spool.root / "folder" / "drop-1.claim.json"
    record.write_text("{}")
    clock.advance(days=91)
    store.mark_documents_removed(KEEP)  # then a crash: the next pass deletes the files
    assert claimed.exists()
    assert shared.exists()
    report = purge(store, spool.root, KEEP)
    assert report.files == 2
    assert not claimed.exists()
    assert not shared.exists()
    assert record.exists()  # no row names it

    # Past RECHECK, a file outside the spool is no longer looked for; the spool's still are.
    shared.write_bytes(b"put back")
    claimed.write_bytes(b"put back")
    clock.advance(days=8)
    purge(store, spool.root, KEEP)
    assert shared.exists()
    assert not claimed.exists()
