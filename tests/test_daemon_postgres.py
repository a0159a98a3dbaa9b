"""The whole daemon on a PostgreSQL store, against the built-in sandbox: the faxes are
claimed under the instance's name, sent once, reported once, and its leases are given up
on a clean stop."""

from __future__ import annotations

from pathlib import Path

import httpx

from faxgate.app import started
from faxgate.domain.jobs import JobState
from faxgate.hellofax.sandbox import Sandbox
from faxgate.store import Store
from tests.daemon import assert_sent_once_per_call, fast_settings, queue, reports_delivered, settled
from tests.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]


async def test_a_daemon_on_postgresql_sends_reports_and_gives_its_leases_up(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = fast_settings(tmp_path / "state", store={"url": postgres_url, "lease": "5s"})
    async with started(settings) as daemon:
        assert daemon.share is not None
        owner = daemon.share.owner
        numbers = {"+14155550123": JobState.SENT, "+14155550003": JobState.FAILED}
        jobs = [await queue(daemon, n, reply_to="owner@example.com") for n in numbers]
        for job in await settled(daemon, jobs):
            assert job.state is numbers[job.to_number], job
            lease = daemon.store.lease(job.id)
            assert lease is not None
            assert lease.owner == owner  # claimed, not merely read
        await reports_delivered(daemon, jobs)
        assert len(list((settings.maildir / "new").iterdir())) == len(jobs)
        assert isinstance(daemon.sandbox, Sandbox)
        assert_sent_once_per_call(daemon.sandbox, daemon, jobs)
        async with httpx.AsyncClient() as http:
            health = await http.get(f"http://127.0.0.1:{daemon.http.port}/healthz")
        assert health.status_code == 200, health.text
    assert not settings.database_path.exists()
    with Store.open_url(postgres_url) as store:
        assert all(store.lease(job.id) is None for job in jobs)
