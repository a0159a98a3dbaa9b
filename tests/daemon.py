"""Helpers for tests that run the whole daemon: settings for speed, queueing, settling."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from faxgate.app import Daemon
from faxgate.domain.jobs import Intake, Job, JobState
from faxgate.domain.numbers import parse_fax_number
from faxgate.hellofax.sandbox import Sandbox
from faxgate.intake.queue import FaxRequest, IncomingDocument, queue_fax
from faxgate.settings import Settings
from faxgate.spool import Spool
from tests.conftest import pdf_document, wait_for

CALLBACK_TOKEN = "test-callback-token-0123456789"
SETTLED = {JobState.SENT, JobState.FAILED, JobState.UNCERTAIN, JobState.CANCELLED}


def fast_settings(state_dir: Path, **sections: dict[str, Any]) -> Settings:
    """A daemon on loopback, any free ports, with every timer shrunk for tests."""
    values: dict[str, Any] = {
        "state_dir": state_dir,
        "sandbox": {"listen": "127.0.0.1:0", "speed": "test"},
        "http": {"listen": "127.0.0.1:0", "callback_token": CALLBACK_TOKEN},
        "polling": {"tick": 0.05, "first_interval": 0.1, "max_interval": 0.3},
        "retry": {"busy_delay": 0.05, "no_answer_delay": 0.05},
        "dispatch": {"backoff_first": 0.05, "backoff_max": 0.5},
    }
    for name, overrides in sections.items():
        values[name] = {**values.get(name, {}), **overrides}
    return Settings(**values)


async def queue(
    daemon: Daemon, number: str, *, pages: int = 1, tag: str = "", reply_to: str | None = None
) -> Job:
    """Queue a fax as an intake would, then wake the dispatcher. `tag` makes the document
    unique, so the sandbox's inspection can tell faxes to one number apart."""
    request = FaxRequest(
        numbers=[parse_fax_number(number)],
        documents=[
            IncomingDocument("letter.pdf", pdf_document(pages)),
            IncomingDocument("note.txt", f"fax {number} {tag}".encode()),
        ],
        intake=Intake.CLI,
        reply_to=reply_to,
    )
    spool = Spool(daemon.settings.spool_dir)
    (job,) = await asyncio.to_thread(queue_fax, daemon.store, spool, request)
    daemon.dispatcher.wake()
    return job


async def settled(daemon: Daemon, jobs: list[Job], deadline: float = 20.0) -> list[Job]:
    """Wait until every job's story is told; return them as they ended."""

    def current() -> list[Job] | None:
        now = [daemon.store.get_job(job.id) for job in jobs]
        done = [job for job in now if job is not None and job.state in SETTLED]
        return done if len(done) == len(jobs) else None

    result: list[Job] = await wait_for(current, timeout=deadline, what="every job settled")
    return result


async def reports_delivered(daemon: Daemon, jobs: list[Job]) -> None:
    """Each job has exactly one report in the outbox, and it went out."""

    def delivered() -> bool:
        for job in jobs:
            rows = daemon.store.notifications(job.id)
            if len(rows) != 1 or rows[0].delivered_at is None:
                return False
        return True

    await wait_for(delivered, what="one delivered report per job")


def assert_sent_once_per_call(sandbox: Sandbox, daemon: Daemon, jobs: list[Job]) -> None:
    """The sandbox saw each job's document exactly as many times as the job made calls:
    nothing was sent twice by accident."""
    sent = Counter(t.to for t in sandbox.inspect() if not t.is_inbound)
    for job in jobs:
        final = daemon.store.get_job(job.id)
        assert final is not None
        calls = final.attempt if final.state is not JobState.CANCELLED else 0
        assert sent[job.to_number.lstrip("+")] == calls, (final.id, final.state, final.reason)
