"""Folders that turn read-only while faxgate runs (a share remounted, a permission changed):
nothing is lost, the log says what waits and where, and the work is finished once the
folder can be written again.

Read-only for root too: a read-only bind mount over the folder (os.access would say yes).
The notifier retries a report after a minute at the earliest; these tests make the retry
due at once (as if that minute had passed) instead of waiting for it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from faxgate.app import Daemon
from faxgate.clock import utc_now
from faxgate.domain.jobs import Job, JobState, Notification
from faxgate.hellofax.sandbox import Sandbox, inject_inbound
from tests.conftest import SANDBOX_LINE, pdf_document, wait_for
from tests.daemon import fast_settings, settled
from tests.intake.folder.test_runner import result
from tests.reliability.test_disk_full import (
    Mounts,
    answered_451,
    drop,
    jobs_of,
    listing,
    logged,
    mounts,
    running,
    send_mail,
    sends_to,
    settings_for,
    stage,
    why_not_taken,
)

__all__ = ["mounts"]  # the fixture, shared with test_disk_full


@pytest.fixture(autouse=True)
def _warnings_captured(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="faxgate")


async def failed_delivery(daemon: Daemon, outbox_id: int) -> Notification:
    """The outbox row once a delivery of it has failed (and is due again later)."""

    def failed() -> Notification | None:
        row = daemon.store.get_notification(outbox_id)
        return row if row is not None and row.last_error and row.attempts else None

    row: Notification = await wait_for(failed, what=f"outbox row {outbox_id} failed once")
    assert row.delivered_at is None
    assert row.next_attempt_at is not None, "kept, to be retried"
    return row


def retry_now(daemon: Daemon, row: Notification) -> None:
    """Make the row's retry due now, as if its wait were over."""
    daemon.store.mark_delivery_failed(row.id, row.last_error or "", utc_now())
    daemon.notifier.wake()


def report_row(daemon: Daemon, job: Job) -> Notification | None:
    rows = daemon.store.notifications(job.id)
    return rows[0] if rows else None


# ---------------------------------------------------------------------------- hot folders


async def test_results_wait_for_read_only_sent_and_processing_folders(
    tmp_path: Path, sandbox: Sandbox, mounts: Mounts, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    async with running(settings_for(tmp_path / "state", sandbox, outbox)) as daemon:
        claims = daemon.settings.spool_dir / "folder"
        mounts.readonly(outbox / "sent")
        mounts.readonly(outbox / "processing")
        dropped = drop(stage(tmp_path / "staging", "14155550310_letter.pdf"), outbox)

        (job,) = await wait_for(lambda: jobs_of(daemon), what="the file queued")
        (done,) = await settled(daemon, [job])
        assert done.state is JobState.SENT, "the status file is only for people: it goes on"
        assert logged(caplog, "status file not written", "read-only")
        row = await failed_delivery(daemon, (await wait_for(lambda: report_row(daemon, job))).id)
        assert row.last_error is not None
        assert "ResultNotPlaced" in row.last_error
        assert "read-only" in row.last_error
        assert str(outbox / "sent") in row.last_error, "where it waits"
        await wait_for(
            lambda: logged(caplog, "notification failed", "14155550310_letter.pdf", "read-only")
        )
        assert listing(outbox / "sent") == []
        assert [p for p in listing(claims) if p.endswith(".pdf")], "the spool keeps the file"

        mounts.unmount(outbox / "sent")
        mounts.unmount(outbox / "processing")
        retry_now(daemon, row)
        placed = await result(outbox, dropped.name)
        await wait_for(lambda: daemon.store.notifications(job.id)[0].delivered_at)
        assert [p for p in listing(claims) if p.endswith(".pdf")] == [], "moved, not copied"
    assert placed["outcome"] == "sent"
    assert listing(outbox / "sent") == [dropped.name, dropped.name + ".result.json"]
    assert listing(outbox / "processing") == []
    assert sends_to(sandbox)["14155550310"] == 1


async def test_a_read_only_hot_folder_keeps_its_files_until_writable(
    tmp_path: Path, sandbox: Sandbox, mounts: Mounts, caplog: pytest.LogCaptureFixture
) -> None:
    # faxgate watches `outbox`, a second view of `shared`; people write through `shared`,
    # as others write to a share that is read-only for faxgate. failed/ is elsewhere, on a
    # file system of its own: a refused file is copied there before the original goes.
    shared, outbox = tmp_path / "shared", tmp_path / "outbox"
    shared.mkdir()
    mounts.bind(shared, outbox)
    failed = mounts.tmpfs(tmp_path / "failed", "4m")
    settings = settings_for(tmp_path / "state", sandbox, outbox, failed_dir=failed)
    async with running(settings) as daemon:
        mounts.remount(outbox, readonly=True)
        good = drop(stage(tmp_path / "staging", "14155550311_letter.pdf"), shared)
        bad = drop(stage(tmp_path / "staging", "invoice.pdf"), shared)  # no number

        why = await why_not_taken(caplog, good.name)
        assert "read-only" in why
        assert "left in the folder" in why
        await wait_for(lambda: logged(caplog, "file not refused yet", bad.name, "read-only"))
        assert good.exists()
        assert bad.exists()
        assert listing(failed) == [], "no copy and no reason file while the original stays"
        assert jobs_of(daemon) == []

        mounts.remount(outbox, readonly=False)
        done = await result(outbox, good.name)
        reason = await wait_for(
            lambda: listing(failed) == ["invoice.pdf", "invoice.pdf.reason.txt"]
        )
        assert not good.exists()
        assert not bad.exists()
    assert reason
    assert done["outcome"] == "sent"
    assert sends_to(sandbox)["14155550311"] == 1


async def test_a_read_only_failed_folder_keeps_a_refused_file_in_place(
    tmp_path: Path, sandbox: Sandbox, mounts: Mounts, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    async with running(settings_for(tmp_path / "state", sandbox, outbox)) as daemon:
        mounts.readonly(outbox / "failed")
        bad = drop(stage(tmp_path / "staging", "14155550312_letter.exe"), outbox)

        why = await wait_for(lambda: logged(caplog, "file not refused yet", bad.name))
        assert str(outbox / "failed") in why
        assert "read-only" in why
        assert bad.exists()

        mounts.unmount(outbox / "failed")
        await wait_for(lambda: not bad.exists(), what="the file refused at last")
        assert listing(outbox / "failed") == [bad.name, bad.name + ".reason.txt"]
        assert "cannot be faxed" in (outbox / "failed" / f"{bad.name}.reason.txt").read_text()
        assert jobs_of(daemon) == []


# ---------------------------------------------------------------------------- the spool


async def test_a_read_only_spool_answers_451_until_writable(
    tmp_path: Path, sandbox: Sandbox, mounts: Mounts, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(settings_for(tmp_path / "state", sandbox)) as daemon:
        spool = daemon.settings.spool_dir
        before = listing(spool)
        mounts.readonly(spool)
        await answered_451(daemon, "14155550313")
        assert logged(caplog, "smtp message not stored", str(spool), "read-only")
        assert jobs_of(daemon) == []

        mounts.unmount(spool)
        assert listing(spool) == before
        assert (await send_mail(daemon, "14155550313"))[0] == 250
        (done,) = await settled(daemon, jobs_of(daemon))
    assert done.state is JobState.SENT
    assert sends_to(sandbox)["14155550313"] == 1


# ---------------------------------------------------------------------------- inbound


async def test_an_inbound_fax_waits_for_a_read_only_output_folder(
    tmp_path: Path, mounts: Mounts, caplog: pytest.LogCaptureFixture
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    settings = fast_settings(tmp_path / "state", inbound={"default_folder": str(incoming)})
    async with running(settings) as daemon:
        assert daemon.sandbox is not None
        mounts.readonly(incoming)
        document = tmp_path / "in.pdf"
        document.write_bytes(pdf_document(2))
        await inject_inbound(daemon.sandbox.base_url, SANDBOX_LINE, "12125550100", document)

        (fax,) = await wait_for(lambda: daemon.store.recent_inbound(5), what="the fax stored")
        (delivery,) = daemon.store.inbound_deliveries(fax.id)
        assert delivery.outbox_id is not None
        row = await failed_delivery(daemon, delivery.outbox_id)
        assert row.last_error is not None
        assert "FolderUnwritable" in row.last_error
        assert str(incoming) in row.last_error
        assert "read-only" in row.last_error
        await wait_for(lambda: logged(caplog, "notification failed", "read-only"))
        assert listing(incoming) == []

        mounts.unmount(incoming)
        assert listing(incoming) == [], "no temporary file left behind"
        retry_now(daemon, row)

        def delivered() -> bool:
            (now,) = daemon.store.inbound_deliveries(fax.id)
            return now.delivered_at is not None

        await wait_for(delivered, what="the fax written once the folder is writable")
    names = listing(incoming)
    assert sorted(Path(name).suffix for name in names) == [".json", ".pdf"], names
