"""The whole daemon on a PostgreSQL store, against the built-in sandbox: the faxes are
claimed under the instance's name, sent once, reported once, and its leases are given up
on a clean stop."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx

from faxgate.app import started
from faxgate.clock import utc_now
from faxgate.domain.jobs import Intake, JobState
from faxgate.hellofax.sandbox import Sandbox
from faxgate.store import NewJob, Share, Store
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


async def test_the_cluster_shows_on_healthz_metrics_and_the_status_page(
    tmp_path: Path, postgres_url: str
) -> None:
    """The daemon alive beside another instance holding a fax, and one gone: /healthz
    names this instance and counts two alive, /metrics gives the count and each alive
    instance's held jobs, the status page lists all three."""
    now = utc_now()
    lease = timedelta(seconds=5)
    with Store.open_url(postgres_url) as store:
        other = Share("gw2:42:cd", lease, host="gw2", pid=42)
        store.instance_seen(other, version="9.9", started_at=now, now=now)
        long_ago = now - timedelta(hours=1)
        gone = Share("gw3:43:ef", lease, host="gw3", pid=43)
        store.instance_seen(gone, version="9.8", started_at=long_ago, now=long_ago)
        store.create_jobs([NewJob(to_number="+14155550123", intake=Intake.CLI)])
        # Claimed for an hour, so this daemon cannot take it meanwhile.
        store.claim_due_jobs(now, 1, owner=other.owner, lease=timedelta(hours=1))
    settings = fast_settings(tmp_path / "state", store={"url": postgres_url, "lease": "5s"})
    async with started(settings) as daemon, httpx.AsyncClient() as http:
        assert daemon.share is not None
        me = daemon.share.owner
        base = f"http://127.0.0.1:{daemon.http.port}"
        health = (await http.get(f"{base}/healthz")).json()
        assert health["checks"]["instances"] == {"ok": True, "instance": me, "alive": 2}

        scraped = (await http.get(f"{base}/metrics")).text
        assert "faxgate_instances_alive 2.0" in scraped.splitlines()
        assert f'faxgate_instance_held_jobs{{instance="{me}"}} 0.0' in scraped
        assert 'faxgate_instance_held_jobs{instance="gw2:42:cd"} 1.0' in scraped
        assert "gw3:43:ef" not in scraped  # gone: not an instance to watch

        page = (await http.get(f"{base}/")).text
        assert "<h2>Instances: 2 alive</h2>" in page
        for name in (me, "gw2:42:cd", "gw3:43:ef"):
            assert f'data-instance="{name}"' in page
        assert f"{me} (this one)" in page
        assert 'data-instance="gw3:43:ef" class="gone"' in page
