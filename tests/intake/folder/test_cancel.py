"""A dropped file whose fax a person cancels: its owner sees it in failed/, and the status
file goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from faxgate.cli import main
from faxgate.domain.jobs import JobState
from tests.conftest import pdf_document, wait_for
from tests.intake.folder.test_runner import outbox_of, result, running


async def test_a_cancelled_drop_lands_in_failed_and_its_status_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(tmp_path) as daemon:
        daemon.dispatcher.stop()  # nothing is sent: the job waits in the queue
        outbox = outbox_of(daemon)
        (outbox / "14155550123_offer.pdf").write_bytes(pdf_document(1))
        status = outbox / "processing" / "14155550123_offer.pdf.status.json"
        await wait_for(status.exists, what="the status file")
        [job] = daemon.store.jobs_in_states([JobState.QUEUED])

        monkeypatch.setenv("FAXGATE_STATE_DIR", str(daemon.settings.state_dir))
        assert main(["cancel", job.id]) == 0
        assert "cancelled" in capsys.readouterr().out
        daemon.notifier.wake()  # the CLI is another process: it cannot wake the daemon

        outcome = await result(outbox, "14155550123_offer.pdf", "failed")
        assert outcome["outcome"] == "cancelled"
        await wait_for(lambda: not status.exists(), what="the status file removed")
        assert (outbox / "failed" / "14155550123_offer.pdf").exists()
