"""Where a drop ends: sent/ or failed/ beside its result file, placed once however often
the report is delivered; refused files beside the reason."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from faxgate.domain.jobs import Intake, Job, JobState, Notification
from faxgate.domain.numbers import parse_fax_number
from faxgate.domain.outcomes import PRESUMED_SENT_REASON, report_payload
from faxgate.intake.folder.claim_records import Queued
from faxgate.intake.folder.claims import ClaimBox
from faxgate.intake.folder.drops import Drop
from faxgate.intake.folder.naming import NumberSource
from faxgate.intake.folder.ready import Signature
from faxgate.intake.folder.refusals import refuse
from faxgate.intake.folder.status import FolderRef, Places
from faxgate.notify import folder_result as folder_results
from faxgate.notify.folder_result import Results, folder_reporter
from faxgate.notify.reporter import PermanentFailure
from faxgate.store import Store
from tests.conftest import pdf_document
from tests.intake.folder.claiming import Killed, box, places

__all__ = ["box", "places"]  # the fixtures

NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def results(box: ClaimBox, store: Store) -> Results:
    return Results(store, box.root, clock=lambda: NOW)


def killed_settling(
    results: Results, job: Job, monkeypatch: pytest.MonkeyPatch, *, at: str
) -> None:
    """Settle the job, the process dying at its first call of folder_result's `at`; the
    next process starts clean."""

    def killed(*_: Any, **__: Any) -> None:
        raise Killed

    monkeypatch.setattr(folder_results, at, killed)
    with pytest.raises(Killed):
        results.settle(job, ref_of(job))
    monkeypatch.undo()


def queued(box: ClaimBox, places: Places, name: str, *numbers: str, **drop: Any) -> list[Job]:
    path = places.folder / name
    path.write_bytes(pdf_document(2))
    info = os.lstat(path)
    plan = Drop(
        documents=(name,),
        sidecar=None,
        numbers=tuple(parse_fax_number(n) for n in numbers),
        source=NumberSource.NAME,
        **drop,
    )
    signatures = {name: Signature(info.st_size, info.st_mtime_ns, info.st_ino)}
    claim = box.new_claim(places, "", plan, signatures, box.status_names(places))
    (outcome,) = box.take(places, [claim])
    assert isinstance(outcome, Queued)
    box.write_statuses([outcome])
    return outcome.jobs


def sent(store: Store, job: Job, guid: str = "a" * 40) -> Job:
    store.transition(job.id, JobState.SUBMITTING, detail="handing over")
    store.transition(job.id, JobState.SUBMITTED, detail="pending", provider_guid=guid)
    return finish(store, job, JobState.SENT, "the fax was sent", pages=2)


def finish(store: Store, job: Job, state: JobState, reason: str, pages: int | None = None) -> Job:
    current = store.get_job(job.id)
    assert current is not None
    payload = report_payload(
        job_id=job.id,
        state=state,
        reason=reason,
        status_code=None,
        error_code=None,
        pages=pages,
        attempts=current.attempt,
        provider_guid=current.provider_guid,
    )
    return store.transition(
        job.id, state, detail=reason, notify=payload, reason=reason, pages=pages
    )


def ref_of(job: Job) -> FolderRef:
    ref = FolderRef.read(job.intake_ref)
    assert ref is not None
    return ref


def read_result(path: Path) -> Any:
    return json.loads(path.read_text())


def test_a_sent_file_moves_to_sent_beside_its_result(
    box: ClaimBox, places: Places, store: Store, results: Results
) -> None:
    (job,) = queued(box, places, "14155550100_letter.pdf", "+14155550100")
    ref = ref_of(job)
    assert ref.status.exists()
    job = sent(store, job, guid="f" * 40)
    placement = results.settle(job, ref)
    assert placement is not None
    placed = places.sent / "14155550100_letter.pdf"
    assert placed.read_bytes() == pdf_document(2)
    assert not (box.root / ref.spooled[0]).exists(), "moved, not copied"
    assert not ref.status.exists()
    result = read_result(places.sent / "14155550100_letter.pdf.result.json")
    assert result["outcome"] == "sent"
    assert result["reason"] == "sent to +1 415-555-0100 (2 pages)"
    assert (result["number"], result["pages"], result["tries"]) == ("+14155550100", 2, 1)
    assert result["provider_guid"] == "f" * 40
    assert result["faxes"][0]["job"] == job.id
    assert "next" not in result


def test_placing_twice_places_once(
    box: ClaimBox, places: Places, store: Store, results: Results
) -> None:
    (job,) = queued(box, places, "a.pdf", "+14155550100")
    job = sent(store, job)
    first = results.settle(job, ref_of(job))
    second = results.settle(job, ref_of(job))
    assert first == second
    assert sorted(p.name for p in places.sent.iterdir()) == ["a.pdf", "a.pdf.result.json"]


def test_a_delivery_repeated_by_another_instance_places_once(
    box: ClaimBox, places: Places, store: Store, results: Results, tmp_path: Path
) -> None:
    """Instances sharing a store each have a spool: the one that delivers a report again
    (the taker died before marking it delivered) finds the taker's placement."""
    (job,) = queued(box, places, "a.pdf", "+14155550100")
    job = sent(store, job)
    first = results.settle(job, ref_of(job))
    other = Results(store, tmp_path / "other" / "spool" / "folder", clock=lambda: NOW)
    assert other.settle(job, ref_of(job)) == first
    assert sorted(p.name for p in places.sent.iterdir()) == ["a.pdf", "a.pdf.result.json"]


def test_a_drop_placed_by_another_instance_moves_from_the_takers_spool(
    box: ClaimBox, places: Places, store: Store, tmp_path: Path
) -> None:
    (job,) = queued(box, places, "a.pdf", "+14155550100")
    job = sent(store, job)
    other = Results(store, tmp_path / "other" / "spool" / "folder", clock=lambda: NOW)
    placement = other.settle(job, ref_of(job))
    assert placement is not None
    assert placement.names == ["a.pdf"]
    assert (places.sent / "a.pdf").read_bytes() == pdf_document(2)
    assert not (box.root / ref_of(job).spooled[0]).exists(), "moved, not copied"


def test_killed_while_placing_is_finished_with_the_same_names(
    box: ClaimBox,
    places: Places,
    store: Store,
    results: Results,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (places.sent / "a.pdf").parent.mkdir(exist_ok=True)
    (places.sent / "a.pdf").write_bytes(b"someone else's")
    (job,) = queued(box, places, "a.pdf", "+14155550100")
    job = sent(store, job)
    killed_settling(results, job, monkeypatch, at="copy_file")
    placement = results.settle(job, ref_of(job))
    assert placement is not None
    assert placement.names == ["a (2).pdf"]
    assert (places.sent / "a.pdf").read_bytes() == b"someone else's"
    assert (places.sent / "a (2).pdf").read_bytes() == pdf_document(2)
    assert read_result(places.sent / "a (2).pdf.result.json")["file"] == "a (2).pdf"


def test_a_drop_to_two_numbers_waits_for_both(
    box: ClaimBox, places: Places, store: Store, results: Results
) -> None:
    first, second = queued(box, places, "both.pdf", "+14155550100", "+14155550101")
    first = sent(store, first)
    assert results.settle(first, ref_of(first)) is None
    status = read_result(ref_of(first).status)
    assert status["faxes"] == [
        {"number": "+14155550100", "state": "sent"},
        {"number": "+14155550101", "state": "queued"},
    ]
    second = finish(store, second, JobState.FAILED, "the line was busy (called 4 times)")
    placement = results.settle(second, ref_of(second))
    assert placement is not None
    assert placement.directory == places.failed
    result = read_result(places.failed / "both.pdf.result.json")
    assert result["outcome"] == "partly sent"
    assert result["reason"] == (
        "+1 415-555-0100: the fax was sent; +1 415-555-0101: the line was busy (called 4 times)"
    )
    assert second.id in result["next"]
    assert "number" not in result, "two faxes: their facts are under faxes"
    spooled = box.root / ref_of(second).spooled[0]
    assert os.path.samefile(places.failed / "both.pdf", spooled), "kept for `faxgate retry`"


def test_a_fax_presumed_sent_goes_to_sent_and_its_result_says_so(
    box: ClaimBox, places: Places, store: Store, results: Results
) -> None:
    first, second = queued(box, places, "both.pdf", "+14155550100", "+14155550101")
    first = sent(store, first)
    results.settle(first, ref_of(first))
    store.transition(second.id, JobState.SUBMITTING, detail="handing over")
    store.transition(second.id, JobState.SUBMITTED, detail="pending", provider_guid="b" * 40)
    second = finish(store, second, JobState.PRESUMED_SENT, PRESUMED_SENT_REASON, pages=2)
    placement = results.settle(second, ref_of(second))
    assert placement is not None
    assert placement.directory == places.sent
    result = read_result(places.sent / "both.pdf.result.json")
    assert result["outcome"] == "presumed_sent"
    assert result["reason"].startswith(
        "sent to +1 415-555-0100 (2 pages); presumably sent to +1 415-555-0101 (2 pages)"
    )
    assert "no callback confirmed it" in result["reason"]
    assert second.id in result["next"]
    assert first.id not in result["next"]
    outcomes = [fax["outcome"] for fax in result["faxes"]]
    assert outcomes == ["sent", "presumed_sent"]


def test_a_late_failure_of_a_fax_presumed_sent_moves_it_to_failed(
    box: ClaimBox, places: Places, store: Store, results: Results
) -> None:
    (job,) = queued(box, places, "a.pdf", "+14155550100")
    store.transition(job.id, JobState.SUBMITTING, detail="handing over")
    store.transition(job.id, JobState.SUBMITTED, detail="pending", provider_guid="c" * 40)
    job = finish(store, job, JobState.PRESUMED_SENT, PRESUMED_SENT_REASON, pages=2)
    results.settle(job, ref_of(job))
    assert read_result(places.sent / "a.pdf.result.json")["outcome"] == "presumed_sent"
    # Hours later the provider's callback says it failed after all.
    job = finish(store, job, JobState.FAILED, "the line was busy; it was not sent again")
    placement = results.settle(job, ref_of(job))
    assert placement is not None
    assert placement.directory == places.failed
    assert sorted(p.name for p in places.sent.iterdir()) == []
    assert read_result(places.failed / "a.pdf.result.json")["outcome"] == "failed"


def test_a_retried_fax_ends_in_one_place(
    box: ClaimBox, places: Places, store: Store, results: Results
) -> None:
    (job,) = queued(box, places, "a.pdf", "+14155550100")
    job = finish(store, job, JobState.FAILED, "the number is not allocated")
    results.settle(job, ref_of(job))
    assert (places.failed / "a.pdf").exists()
    store.transition(job.id, JobState.QUEUED, detail="retried by a person", attempt=2)
    job = sent(store, job)
    results.settle(job, ref_of(job))
    assert sorted(p.name for p in places.failed.iterdir()) == []
    assert read_result(places.sent / "a.pdf.result.json")["outcome"] == "sent"


def test_a_moved_away_failed_copy_is_left_alone(
    box: ClaimBox, places: Places, store: Store, results: Results, tmp_path: Path
) -> None:
    (job,) = queued(box, places, "a.pdf", "+14155550100")
    job = finish(store, job, JobState.FAILED, "busy")
    results.settle(job, ref_of(job))
    (places.failed / "a.pdf").rename(tmp_path / "kept.pdf")  # a person took it
    store.transition(job.id, JobState.QUEUED, detail="retried", attempt=2)
    results.settle(sent(store, job), ref_of(job))
    assert (tmp_path / "kept.pdf").exists()
    assert (places.sent / "a.pdf").exists()


def test_refused_files_go_to_failed_beside_the_reason(places: Places, tmp_path: Path) -> None:
    for _ in range(2):
        (places.folder / "invoice.pdf").write_bytes(b"%PDF-")
        (places.folder / "invoice.pdf.json").write_text("{oops")
        refuse(
            places,
            [
                (places.folder / "invoice.pdf", "invoice.pdf"),
                (places.folder / "invoice.pdf.json", "invoice.pdf.json"),
            ],
            "sidecar",
            "the sidecar is not valid JSON",
            dropped_as="invoice.pdf",
            help_text="Name it well.",
            now=NOW,
        )
    assert sorted(p.name for p in places.failed.iterdir()) == [
        "invoice (2).pdf",
        "invoice (2).pdf.json",
        "invoice (2).pdf.reason.txt",
        "invoice.pdf",
        "invoice.pdf.json",
        "invoice.pdf.reason.txt",
    ]
    text = (places.failed / "invoice (2).pdf.reason.txt").read_text()
    assert "Reason:  the sidecar is not valid JSON" in text
    assert "Name it well." in text
    assert "2024-05-01" in text


def test_a_refused_symlink_is_moved_as_itself(places: Places, tmp_path: Path) -> None:
    target = tmp_path / "secret.pdf"
    target.write_bytes(b"secret")
    os.symlink(target, places.folder / "link.pdf")
    refuse(
        places,
        [(places.folder / "link.pdf", "link.pdf")],
        "symlink",
        "link.pdf is a symbolic link",
        dropped_as="link.pdf",
    )
    assert (places.failed / "link.pdf").is_symlink()
    assert target.read_bytes() == b"secret"


class Outbox:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        self.sent.append(message)


async def test_the_reporter_places_and_mails_the_owner(
    box: ClaimBox, places: Places, store: Store, tmp_path: Path
) -> None:
    (job,) = queued(box, places, "a.pdf", "+14155550100", notify="owner@example.com")
    job = sent(store, job)
    (notification,) = store.notifications(job.id)
    mailer = Outbox()
    handle = folder_reporter(store, mailer, tmp_path / "state" / "spool")
    await handle(notification, job)
    assert (places.sent / "a.pdf").exists()
    (mail,) = mailer.sent
    assert mail["To"] == "owner@example.com"
    assert "sent" in str(mail["Subject"])


async def test_the_reporter_refuses_a_job_without_its_drop(store: Store, tmp_path: Path) -> None:
    notification = Notification(id=1, job_id="x", created_at=NOW, kind="report", payload={})
    job = Job(
        id="x",
        created_at=NOW,
        updated_at=NOW,
        state=JobState.SENT,
        intake=Intake.FOLDER,
        to_number="+14155550100",
    )
    handle = folder_reporter(store, Outbox(), tmp_path / "spool")
    with pytest.raises(PermanentFailure, match="which folder drop"):
        await handle(notification, job)


def test_killed_after_choosing_names_takes_the_same_names_again(
    box: ClaimBox,
    places: Places,
    store: Store,
    results: Results,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (job,) = queued(box, places, "a.pdf", "+14155550100")
    job = sent(store, job)
    killed_settling(results, job, monkeypatch, at="write_json")  # the placement record
    results.settle(job, ref_of(job))
    assert sorted(p.name for p in places.sent.iterdir()) == ["a.pdf", "a.pdf.result.json"]


def test_names_taken_by_a_document_or_a_result_are_skipped(places: Places, tmp_path: Path) -> None:
    places.sent.mkdir()
    (places.sent / "a.pdf").write_bytes(b"someone's, without a result")
    (places.sent / "a (2).pdf.result.json").write_text("{}")
    ours = tmp_path / "spooled.pdf"
    ours.write_bytes(b"ours")
    assert Results._put(places.sent, "a.pdf", ours) == "a (3).pdf"
    assert Results._put(places.sent, "a.pdf", ours) == "a (3).pdf", "found again, not copied"
    assert (places.sent / "a (3).pdf").read_bytes() == b"ours"


def test_a_drop_taken_into_a_shared_claims_folder_is_placed_by_any_instance(
    tmp_path: Path, places: Places, store: Store
) -> None:
    """A shared hot folder: the drop was claimed into another instance's claims folder in
    the hot folder, and this instance (its own spool elsewhere) places it from there."""
    (places.folder / ".faxgate-claims").mkdir()
    theirs = ClaimBox(tmp_path / "a" / "spool", store, root=places.folder / ".faxgate-claims" / "a")
    (job,) = queued(theirs, places, "14155550100_contract.pdf", "+14155550100")
    assert ref_of(job).claims == theirs.root
    mine = Results(store, tmp_path / "b" / "spool" / "folder", clock=lambda: NOW)
    placement = mine.settle(sent(store, job), ref_of(job))
    assert placement is not None
    placed = places.sent / "14155550100_contract.pdf"
    assert placed.read_bytes() == pdf_document(2)
    assert read_result(places.sent / "14155550100_contract.pdf.result.json")["outcome"] == "sent"
    assert list(theirs.root.glob("*.pdf")) == [], "the claims folder let go of its copy"
    assert len(list(theirs.root.glob("*.placed.json"))) == 1
