"""The daemon removes the documents [retention] documents no longer keeps, on its own,
every [retention] interval; the jobs and their reports stay."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from faxgate import metrics
from faxgate.app import started
from faxgate.clock import utc_now
from faxgate.domain.jobs import JobState
from tests.conftest import wait_for
from tests.daemon import fast_settings, queue, reports_delivered, settled
from tests.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]


def removed_count() -> float:
    value = metrics.REGISTRY.get_sample_value("faxgate_documents_removed_total", {"kind": "job"})
    return value or 0.0


@pytest.fixture(params=["sqlite", "postgresql"])
def store_section(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    return {"url": str(request.getfixturevalue("postgres_url")), "lease": "5s"}


async def test_the_daemon_removes_documents_on_its_interval(
    tmp_path: Path, store_section: dict[str, str]
) -> None:
    settings = fast_settings(
        tmp_path / "state",
        retention={"documents": "1s", "interval": "0.1s"},
        store=store_section,
    )
    before = removed_count()
    async with started(settings) as daemon:
        purger = daemon.purger
        assert purger is not None
        job = await queue(daemon, "+14155550123")
        [done] = await settled(daemon, [job])
        assert done.state is JobState.SENT
        await reports_delivered(daemon, [job])
        files = [d.path for d in daemon.store.documents(job.id)]
        assert len(files) == 2

        def removed() -> bool:
            documents = daemon.store.documents(job.id)
            return all(d.removed_at is not None for d in documents) and not any(
                path.exists() for path in files
            )

        await wait_for(removed, timeout=20, what="the documents removed by the daemon")

        def counted() -> bool:
            return removed_count() - before == 2

        await wait_for(counted, what="the two documents counted")
        passes = purger.passes

        # More passes on its interval, not only at start; none removes anything again.
        def ran_again() -> bool:
            return purger.passes >= passes + 2

        await wait_for(ran_again, what="passes go on")
        assert removed_count() - before == 2
        assert daemon.store.get_job(job.id).state is JobState.SENT  # type: ignore[union-attr]
        assert daemon.store.events(job.id)


async def test_a_reload_applies_a_new_retention_at_once(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "state")  # 90 days, hourly
    async with started(settings) as daemon:
        job = await queue(daemon, "+14155550123")
        await settled(daemon, [job])
        await reports_delivered(daemon, [job])
        files = [d.path for d in daemon.store.documents(job.id)]
        [done] = await settled(daemon, [job])
        assert done.finished_at is not None
        finished_at = done.finished_at

        def older_than_a_second() -> bool:
            return utc_now() - finished_at > timedelta(seconds=1.5)

        await wait_for(older_than_a_second, what="the fax ended over a second ago")
        shorter = fast_settings(tmp_path / "state", retention={"documents": "1s", "interval": "1h"})
        plan = await daemon.reload_from(shorter)
        assert plan is not None
        assert "retention.documents" in plan.applied

        def removed() -> bool:
            return not any(path.exists() for path in files)

        # Within the hour: the reload woke the pass.
        await wait_for(removed, timeout=20, what="the documents removed after the reload")
