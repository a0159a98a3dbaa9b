"""A hot folder's confirmation reports follow its results: written beside them, and taken
back with them when a person's retry ends elsewhere. A real store and spool."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from faxgate.domain.jobs import JobState
from faxgate.intake.folder.claims import ClaimBox
from faxgate.intake.folder.status import Places
from faxgate.notify.confirmation import Confirmations
from faxgate.notify.folder_result import ResultNotPlaced, Results, write_reports
from faxgate.store import Store
from tests.intake.folder.claiming import claim_box, hot_folder
from tests.mounts import Mounts, mounts
from tests.notify.reports import report_text
from tests.notify.test_folder_result import NOW, finish, queued, ref_of, sent

__all__ = ["mounts"]  # the fixture

Folder = tuple[Places, Confirmations, Store, ClaimBox, Results]


@contextmanager
def one_folder(tmp_path: Path) -> Iterator[Folder]:
    """A hot folder (tmp_path/outbox), its reports without the picture, a store and claims
    box under tmp_path/state and the results placed from them; the store closed after."""
    places = hot_folder(tmp_path)
    confirmations = Confirmations("without_image", clock=lambda: NOW)
    with Store.open(tmp_path / "state" / "faxgate.sqlite3") as store:
        box = claim_box(tmp_path, store)
        results = Results(store, box.root, clock=lambda: NOW)
        yield places, confirmations, store, box, results


async def test_a_retried_drop_takes_its_earlier_report_back(tmp_path: Path) -> None:
    with one_folder(tmp_path) as (places, confirmations, store, box, results):
        (job,) = queued(box, places, "a.pdf", "+14155550100")
        job = finish(store, job, JobState.FAILED, "the number is not allocated")
        placement = results.settle(job, ref_of(job))
        assert placement is not None
        await write_reports(store, confirmations, job, placement)
        assert "FAILED" in report_text((places.failed / "a.pdf.report.pdf").read_bytes())

        store.transition(job.id, JobState.QUEUED, detail="retried by a person", attempt=2)
        job = sent(store, job)
        placement = results.settle(job, ref_of(job))
        assert placement is not None
        await write_reports(store, confirmations, job, placement)
    assert sorted(p.name for p in places.failed.iterdir()) == []
    assert sorted(p.name for p in places.sent.iterdir()) == [
        "a.pdf",
        "a.pdf.report.pdf",
        "a.pdf.result.json",
    ]
    assert "SENT" in report_text((places.sent / "a.pdf.report.pdf").read_bytes())


async def test_a_report_that_cannot_be_written_waits_and_is_written_later(
    tmp_path: Path, mounts: Mounts
) -> None:
    with one_folder(tmp_path) as (places, confirmations, store, box, results):
        (job,) = queued(box, places, "a.pdf", "+14155550100")
        job = sent(store, job)
        placement = results.settle(job, ref_of(job))
        assert placement is not None
        mounts.readonly(places.sent)
        with pytest.raises(ResultNotPlaced, match=r"the report a\.pdf\.report\.pdf waits"):
            await write_reports(store, confirmations, job, placement)
        mounts.unmount(places.sent)
        # The notifier tries the report again: the same placement, then the report.
        again = results.settle(job, ref_of(job))
        assert again == placement
        await write_reports(store, confirmations, job, placement)
    assert "SENT" in report_text((places.sent / "a.pdf.report.pdf").read_bytes())
