"""The whole daemon against the sandbox over real HTTP: every path a fax can take."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from faxgate import metrics
from faxgate.app import Daemon, started
from faxgate.cli import main
from faxgate.domain.jobs import Event, Intake, Job, JobState
from faxgate.hellofax.sandbox import FaultSettings, Sandbox
from faxgate.sandbox.server import SandboxServer
from faxgate.store import NewJob, Store
from faxgate.web.health import HealthThresholds
from tests.conftest import (
    SANDBOX_GUID,
    SANDBOX_PASSWORD,
    SANDBOX_USERNAME,
    pdf_document,
    sandbox_settings,
    wait_for,
)
from tests.daemon import (
    CALLBACK_TOKEN,
    SANDBOX_APIS,
    assert_sent_once_per_call,
    callbacks_off,
    fast_settings,
    queue,
    reports_delivered,
    sandbox_of,
    settled,
)


@pytest.fixture(params=SANDBOX_APIS)
async def daemon(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Daemon]:
    """The daemon on the built-in sandbox, once on each API it speaks."""
    settings = fast_settings(tmp_path / "state", sandbox={"api": request.param})
    async with started(settings) as running:
        yield running


def the_sandbox(daemon: Daemon) -> SandboxServer:
    return sandbox_of(daemon)


async def test_every_outcome_gets_one_report(daemon: Daemon, tmp_path: Path) -> None:
    # v3 has no code for a blacklisted number: the sandbox says error_could_not_fax.
    blacklisted = "blacklisted" if daemon.settings.provider_api == "hellofax" else "unknown"
    numbers = {
        "+14155550123": (JobState.SENT, "the fax was sent", 1),
        "+14155550001": (JobState.FAILED, "busy", 4),  # 3 more tries by default
        "+14155550002": (JobState.FAILED, "no one answered", 2),
        "+14155550003": (JobState.FAILED, "not allocated", 1),
        "+14155550004": (JobState.FAILED, "disconnected", 1),
        "+14155550005": (JobState.FAILED, blacklisted, 1),
        "+14155550006": (JobState.FAILED, "", 1),
    }
    jobs = [await queue(daemon, number, reply_to="owner@example.com") for number in numbers]
    for job in await settled(daemon, jobs):
        state, reason, calls = numbers[job.to_number]
        assert job.state is state, job
        assert reason in (job.reason or ""), job.reason
        assert job.attempt == calls
    await reports_delivered(daemon, jobs)
    mails = list((daemon.settings.maildir / "new").iterdir())
    assert len(mails) == len(jobs)
    assert_sent_once_per_call(the_sandbox(daemon), daemon, jobs)


async def test_an_unconfirmed_account_puts_faxes_on_hold(daemon: Daemon) -> None:
    the_sandbox(daemon).set_confirmed(False)
    (job,) = await settled(daemon, [await queue(daemon, "+14155550123")])
    assert job.state is JobState.FAILED
    assert "on hold" in (job.reason or "")
    await reports_delivered(daemon, [job])


async def test_without_callbacks_every_sent_fax_vanishes_and_still_ends(daemon: Daemon) -> None:
    await callbacks_off(daemon)
    jobs = [await queue(daemon, f"+1415555{n:04d}") for n in range(120, 126)]
    jobs.append(await queue(daemon, "+14155550003"))
    ended = await settled(daemon, jobs)
    # Polling only: each sent fax is removed at once, so no poll ever reads its S. Every
    # job ends all the same; none as failed but the one that did fail; none sent again.
    states = Counter(job.state for job in ended)
    assert states == Counter({JobState.PRESUMED_SENT: 6, JobState.FAILED: 1})
    sandbox = the_sandbox(daemon)
    assert all(t.removed for t in sandbox.inspect() if t.status == "S")
    assert sandbox.callback_attempts() == []
    assert_sent_once_per_call(sandbox, daemon, jobs)
    await reports_delivered(daemon, jobs)
    presumed = next(job for job in ended if job.state is JobState.PRESUMED_SENT)
    (note,) = daemon.store.notifications(presumed.id)
    assert note.payload["state"] == "presumed_sent"
    assert "removed the fax" in note.payload["reason"]
    counted = metrics.REGISTRY.get_sample_value(
        "faxgate_outcomes_total", {"state": "presumed_sent", "reason": "removed"}
    )
    assert counted is not None
    assert counted >= 6
    assert metrics.REGISTRY.get_sample_value("faxgate_jobs", {"state": "presumed_sent"}) == 6


async def test_duplicate_late_and_shuffled_callbacks_are_harmless(daemon: Daemon) -> None:
    sandbox = the_sandbox(daemon)
    sandbox.faults.callback_copies = 3
    sandbox.faults.callback_shuffle = True
    sandbox.faults.callback_late_copy_after = 0.2
    jobs = [await queue(daemon, f"+1415555{n:04d}") for n in range(130, 140)]
    jobs.append(await queue(daemon, "+14155550001"))
    ended = await settled(daemon, jobs)
    assert [job.state for job in ended].count(JobState.SENT) == 10
    await reports_delivered(daemon, jobs)
    assert_sent_once_per_call(sandbox, daemon, jobs)


async def test_provider_errors_and_rate_limits_are_waited_out(daemon: Daemon) -> None:
    sandbox = the_sandbox(daemon)
    sandbox.faults.seed = 7
    sandbox.faults.error_rate = 0.4
    sandbox.faults.rate_limit_next = 3
    jobs = [await queue(daemon, f"+1415555{n:04d}") for n in range(140, 155)]
    ended = await settled(daemon, jobs, deadline=30)
    assert all(job.state is JobState.SENT for job in ended), [j.reason for j in ended]
    await reports_delivered(daemon, jobs)
    assert_sent_once_per_call(sandbox, daemon, jobs)


async def test_a_dropped_answer_is_reconciled_never_resent(daemon: Daemon) -> None:
    sandbox = the_sandbox(daemon)
    sandbox.faults.drop_after_upload_next = 3
    jobs = [await queue(daemon, f"+1415555{n:04d}") for n in range(160, 166)]
    ended = await settled(daemon, jobs)
    assert all(job.state is JobState.SENT for job in ended)
    assert_sent_once_per_call(sandbox, daemon, jobs)


async def test_a_send_whose_answer_is_lost_after_a_quick_success_is_found_by_its_callback(
    tmp_path: Path,
) -> None:
    # The answer never comes (the client gives up after 1 s), while the fax is sent
    # within milliseconds, its callback answered for a GUID no job holds yet, and the fax
    # removed: the list no longer shows it; only the kept callback can.
    settings = fast_settings(
        tmp_path / "state",
        provider={"timeout": 1.0},
        polling={"callback_grace": 60},  # no poll: the callback is the only witness
    )
    async with started(settings) as daemon:
        sandbox = the_sandbox(daemon)
        sandbox.faults.delay = 2.0
        sandbox.faults.delay_only_for_sends = True
        jobs = [await queue(daemon, f"+1415555{n:04d}") for n in range(176, 179)]
        ended = await settled(daemon, jobs, deadline=20)
        assert all(job.state is JobState.SENT for job in ended), [j.reason for j in ended]
        for job in jobs:
            events = daemon.store.events(job.id)
            found = [event for event in events if event.data.get("reconciled") == "found"]
            assert [event.data["by"] for event in found] == ["callback"]
        assert all(t.removed for t in sandbox.inspect())  # gone before it was looked for
        assert sandbox.duplicates() == []
        assert_sent_once_per_call(sandbox, daemon, jobs)
        # Each kept report found its job, and is let go once applied.
        await wait_for(lambda: daemon.store.unmatched_reports() == [], what="kept reports used")


async def test_callbacks_lost_through_the_whole_retry_schedule_still_end_every_job(
    tmp_path: Path,
) -> None:
    # The provider's schedule in ~0.6 s; faxgate first polls after 3 s, when it is over
    # and every sent fax was removed: no poll ever reads its S, and no callback arrives.
    settings = sandbox_settings(tmp_path / "sandbox", callback_retry_speed=5e-6)
    async with Sandbox(settings) as sandbox:
        daemon_settings = fast_settings(
            tmp_path / "state",
            provider={"base_url": sandbox.base_url},
            http={"public_url": "https://fax.example.com"},  # callbacks are expected
            polling={"callback_grace": 3.0},
        )
        async with started(daemon_settings) as daemon:
            port = daemon.http.port
            await daemon.client.update_account(
                outbound_url=f"http://127.0.0.1:{port}/callbacks/{CALLBACK_TOKEN}/outbound"
            )
            assert daemon.health is not None
            daemon.health.thresholds = HealthThresholds(callback_overdue_after=timedelta(0))
            sandbox.faults = FaultSettings(callbacks_lost=True)
            jobs = [await queue(daemon, f"+1415555{n:04d}") for n in range(180, 184)]
            jobs.append(await queue(daemon, "+14155550003"))  # fails, and stays readable
            ended = await settled(daemon, jobs, deadline=30)
            states = Counter(job.state for job in ended)
            assert states == Counter({JobState.PRESUMED_SENT: 4, JobState.FAILED: 1})
            attempts = Counter(a.transmission_guid for a in sandbox.callback_attempts())
            assert sorted(attempts.values()) == [8] * 5  # each callback tried 8 times, lost
            assert_sent_once_per_call(sandbox, daemon, jobs)
            await reports_delivered(daemon, jobs)

            # Callbacks were expected and never came: /healthz and the status page say so.
            async with httpx.AsyncClient() as http:
                health = await http.get(f"http://127.0.0.1:{port}/healthz")
                page = await http.get(f"http://127.0.0.1:{port}/")
            assert health.status_code == 503
            check = health.json()["checks"]["callbacks"]
            assert check["overdue"] == 4
            presumed = {job.id for job in ended if job.state is JobState.PRESUMED_SENT}
            assert set(check["overdue_jobs"]) == presumed
            assert "callbacks are not arriving" in page.text
            assert "presumed_sent" in page.text


async def test_callbacks_that_beat_the_send_answer_settle_the_job_without_a_poll(
    tmp_path: Path,
) -> None:
    # No poll for a minute: only the callbacks can settle these jobs in time.
    settings = fast_settings(tmp_path / "state", polling={"callback_grace": 60})
    async with started(settings) as daemon:
        sandbox = the_sandbox(daemon)
        sandbox.faults.delay = 0.5  # the send's answer comes long after its callbacks
        sandbox.faults.delay_only_for_sends = True
        jobs = [await queue(daemon, f"+1415555{n:04d}") for n in range(170, 174)]
        ended = await settled(daemon, jobs, deadline=20)
        assert all(job.state is JobState.SENT for job in ended)
        assert all(event.data.get("source") == "callback" for event in _last_events(daemon, jobs))
        await reports_delivered(daemon, jobs)
        assert_sent_once_per_call(sandbox, daemon, jobs)


def _last_events(daemon: Daemon, jobs: list[Job]) -> list[Event]:
    return [daemon.store.events(job.id)[-1] for job in jobs]


async def test_metrics_count_what_happened(daemon: Daemon) -> None:
    jobs = [await queue(daemon, "+14155550123"), await queue(daemon, "+14155550003")]
    await settled(daemon, jobs)
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{daemon.http.port}/metrics")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }
    assert samples[("faxgate_jobs", (("state", "sent"),))] == 1
    assert samples[("faxgate_jobs", (("state", "failed"),))] == 1
    sends = ("faxgate_api_requests_total", (("endpoint", "send"), ("outcome", "200")))
    assert samples[sends] >= 2


async def test_cli_send_and_wait_follows_the_fax_to_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    document = tmp_path / "letter.pdf"
    document.write_bytes(pdf_document(2))
    # One more call, late enough for --wait (which looks twice a second) to show the wait.
    settings = fast_settings(tmp_path / "state", retry={"busy_retries": 1, "busy_delay": 1.5})
    monkeypatch.setenv("FAXGATE_STATE_DIR", str(settings.state_dir))
    async with started(settings):
        command = ["send", "+1 415 555 0001", str(document), "--wait"]
        code = await asyncio.to_thread(main, command)
    out = capsys.readouterr().out
    assert code == 1  # busy every time: the fax failed
    assert "queued job" in out
    assert "waiting to call again" in out
    assert "failed: " in out
    assert "the line was busy (called 2 times)" in out


@pytest.mark.parametrize("api", SANDBOX_APIS)
async def test_a_restart_with_work_in_every_state(tmp_path: Path, api: str) -> None:
    settings = fast_settings(tmp_path / "state", sandbox={"api": api})
    async with started(settings) as first:
        sent, failed = await settled(
            first, [await queue(first, "+14155550123"), await queue(first, "+14155550003")]
        )
        the_sandbox(first).faults.stall_faxes = True  # held by the provider over the restart
        in_flight = await queue(first, "+14155550124")

        def with_the_provider() -> bool:
            job = first.store.get_job(in_flight.id)
            return job is not None and job.state is JobState.SUBMITTED

        await wait_for(with_the_provider, what="the third fax with the provider")

    # While faxgate is down: a job for later, a cancelled one and one a person must check.
    with Store.open(settings.database_path) as store:
        later, cancelled, doubtful = store.create_jobs(
            [
                NewJob(to_number=f"+1415555{n}", intake=Intake.CLI, documents=[])
                for n in ("0130", "0131", "0132")
            ]
        )
        store.update_fields(later.id, not_before=datetime.now(UTC) + timedelta(hours=1))
        store.transition(cancelled.id, JobState.CANCELLED, detail="a person cancelled it")
        store.transition(doubtful.id, JobState.SUBMITTING, detail="sending")
        store.transition(doubtful.id, JobState.UNCERTAIN, detail="could not tell")

    async with started(settings) as second:  # the sandbox's faults do not survive a restart
        (finished,) = await settled(second, [in_flight])
        assert finished.state is JobState.SENT
        states = {job.id: job.state for job in second.store.recent_jobs(10)}
        assert states[sent.id] is JobState.SENT
        assert states[failed.id] is JobState.FAILED
        assert states[later.id] is JobState.QUEUED
        assert states[cancelled.id] is JobState.CANCELLED
        assert states[doubtful.id] is JobState.UNCERTAIN
        sends = Counter(t.to for t in the_sandbox(second).inspect())
        assert sends == {"14155550123": 1, "14155550003": 1, "14155550124": 1}


async def test_a_start_on_hellofax_without_callbacks_warns_outcomes_cannot_be_confirmed(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    provider = {
        "kind": "hellofax",
        "base_url": sandbox.base_url,
        "account_guid": SANDBOX_GUID,
        "username": SANDBOX_USERNAME,
        "password": SANDBOX_PASSWORD,
    }
    with caplog.at_level(logging.WARNING, logger="faxgate"):
        async with started(fast_settings(tmp_path / "state", provider=provider)):
            pass
        warned = [r.getMessage() for r in caplog.records if "http.public_url" in r.getMessage()]
        assert len(warned) == 1
        assert "no fax's outcome can be confirmed" in warned[0]
        caplog.clear()
        provider_with_callbacks = fast_settings(
            tmp_path / "state", provider=provider, http={"public_url": "https://fax.example.com"}
        )
        async with started(provider_with_callbacks):
            pass
        assert not [r for r in caplog.records if "http.public_url" in r.getMessage()]
