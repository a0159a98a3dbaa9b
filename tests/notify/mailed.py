"""Faxes that came by email, for the reply and report tests: a job with one document,
ended with its report owed."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from faxgate.domain.jobs import Intake, Job, JobState
from faxgate.domain.outcomes import report_payload
from faxgate.store import NewDocument, NewJob, NewNotification, Store
from faxgate.store.spool import Spool

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
GUID = "0123456789abcdef0123456789abcdef01234567"


def mailed_job(
    store: Store,
    tmp_path: Path,
    content: bytes,
    name: str = "contract.pdf",
    content_type: str = "application/pdf",
    *,
    intake_ref: dict[str, Any],
    reply_to: str | None = "alice@example.com",
    cover_to: str | None,
) -> Job:
    """A job queued at T0 from a mail, its one document spooled in tmp_path/spool."""
    spool = Spool(tmp_path / "spool")
    document = NewDocument(name, spool.store_bytes(content), content_type)
    (job,) = store.create_jobs(
        [
            NewJob(
                to_number="+14155550123",
                intake=Intake.SMTP,
                documents=[document],
                intake_ref=intake_ref,
                reply_to=reply_to,
                cover_to=cover_to,
            )
        ],
        now=T0,
    )
    return job


def ended_with_report(
    store: Store,
    job: Job,
    state: JobState,
    reason: str,
    *,
    attempts: int,
    error_code: str,
    called_at: datetime,
) -> Job:
    """The job's call made at `called_at` and ended in `state` a minute later (on
    `error_code` unless sent), its report owed."""
    store.transition(job.id, JobState.SUBMITTING, detail="submitting", now=called_at)
    store.transition(job.id, JobState.SUBMITTED, detail="submitted", now=called_at)
    payload = report_payload(
        job_id=job.id,
        state=state,
        reason=reason,
        status_code="S" if state is JobState.SENT else "E",
        error_code=None if state is JobState.SENT else error_code,
        pages=3 if state is JobState.SENT else None,
        attempts=attempts,
        provider_guid=GUID,
    )
    return store.transition(
        job.id,
        state,
        detail=reason,
        now=called_at + timedelta(minutes=1),
        notify=NewNotification(payload=payload),
        pages=payload["pages"],
        reason=reason,
    )


def maildir_mails(folder: Path) -> list[EmailMessage]:
    """The mails in a Maildir's new/, by file name."""
    found = []
    for path in sorted((folder / "new").iterdir()):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(parsed)
    return found
