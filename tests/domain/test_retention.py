"""The rule of document retention: which finished faxes may lose their documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from faxgate.domain.jobs import JobState
from faxgate.domain.retention import (
    InboundFacts,
    JobFacts,
    inbound_document_may_go,
    job_documents_may_go,
    removed_words,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KEEP = timedelta(days=90)
OLD = NOW - timedelta(days=91)
S = JobState


@pytest.mark.parametrize("state", [S.SENT, S.FAILED, S.CANCELLED, S.PRESUMED_SENT])
def test_a_finished_job_past_the_keep_may_lose_its_documents(state: JobState) -> None:
    assert job_documents_may_go(JobFacts(state, OLD, 0), NOW, KEEP)


@pytest.mark.parametrize(
    "state", [S.QUEUED, S.SUBMITTING, S.SUBMITTED, S.TRANSMITTING, S.UNCERTAIN]
)
def test_a_job_that_may_still_be_sent_keeps_them(state: JobState) -> None:
    assert not job_documents_may_go(JobFacts(state, OLD, 0), NOW, KEEP)


def test_a_recent_job_a_job_owing_a_notification_or_keep_off_keep_them() -> None:
    assert not job_documents_may_go(JobFacts(S.SENT, NOW - timedelta(days=89), 0), NOW, KEEP)
    assert not job_documents_may_go(JobFacts(S.SENT, NOW - KEEP, 0), NOW, KEEP)  # not before
    assert not job_documents_may_go(JobFacts(S.SENT, OLD, 1), NOW, KEEP)
    assert not job_documents_may_go(JobFacts(S.SENT, OLD, 0), NOW, None)
    assert not job_documents_may_go(JobFacts(S.SENT, None, 0), NOW, KEEP)


def test_an_inbound_fax_goes_once_delivered_and_old() -> None:
    assert inbound_document_may_go(InboundFacts(OLD, 0), NOW, KEEP)
    assert not inbound_document_may_go(InboundFacts(OLD, 1), NOW, KEEP)
    assert not inbound_document_may_go(InboundFacts(NOW - timedelta(days=1), 0), NOW, KEEP)
    assert not inbound_document_may_go(InboundFacts(OLD, 0), NOW, None)


def test_the_words_say_when_and_after_how_long() -> None:
    assert removed_words(OLD, KEEP) == (
        "its documents were removed on 2026-03-02 after 90 days ([retention] documents)"
    )
    assert "after 1 day " in removed_words(OLD, timedelta(days=1))
    assert "after 1.5 days" in removed_words(OLD, timedelta(hours=36))
