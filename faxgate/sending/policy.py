"""The sending policy at work: the rules in use (swapped whole on a reload), and what the
dispatcher does with each due job's verdict (faxgate.domain.sending_rules judges).

A job a rule holds back gets its `not_before` (the dispatcher's due set leaves it out
until then, so a cycle's cost stays flat however many wait) and the reason in plain
words; a job a rule refuses fails with the reason in its report. A job keeps its place in
its number's line while it waits.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from faxgate.domain.jobs import Document, Job, JobState, RetryPolicy, RetryRule
from faxgate.domain.sending_rules import (
    DAY,
    Candidate,
    Refuse,
    Rule,
    SenderUse,
    Wait,
    first_match,
    in_sending_order,
    judge,
)
from faxgate.settings.policy import PolicySettings
from faxgate.store import JobNotFound, StaleState, Store

log = logging.getLogger("faxgate.dispatcher")

# A job the rules could not judge is judged again this much later.
JUDGE_AGAIN = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class SendingPolicy:
    """The rules in use, first match wins; at most `per_number` calls at once to one
    number (None: no limit); the zone of numbers phonenumbers cannot place."""

    rules: tuple[Rule, ...] = ()
    per_number: int | None = 1
    unknown_zone: str = "UTC"

    @classmethod
    def from_settings(cls, settings: PolicySettings) -> SendingPolicy:
        return cls(
            rules=settings.rules_in_order(),
            per_number=settings.calls_per_number or None,
            unknown_zone=settings.unknown_zone,
        )

    def rule_for(self, job: Job) -> Rule | None:
        return first_match(self.rules, candidate(job)) if self.rules else None

    def retries(self, job: Job, base: RetryPolicy) -> RetryPolicy:
        """The calls again a job gets after a busy line or no answer: its rule's, where
        it sets them, else `base` (the [retry] settings)."""
        rule = self.rule_for(job)
        if rule is None or (rule.busy_retries is None and rule.no_answer_retries is None):
            return base
        busy, no_answer = base.busy, base.no_answer
        if rule.busy_retries is not None:
            busy = RetryRule(extra_tries=rule.busy_retries, delay=busy.delay)
        if rule.no_answer_retries is not None:
            no_answer = RetryRule(extra_tries=rule.no_answer_retries, delay=no_answer.delay)
        return RetryPolicy(busy=busy, no_answer=no_answer)


@dataclass(slots=True)
class Verdicts:
    """A cycle's due jobs sorted by the rules: those that go (in sending order), those
    told to wait and those refused."""

    go: list[Job]
    waits: list[tuple[Job, Wait]]
    refusals: list[tuple[Job, Refuse]]


def candidate(job: Job) -> Candidate:
    sender = job.intake_ref.get("sender") if job.intake.value == "smtp" else None
    folder = job.intake_ref.get("folder") if job.intake.value == "folder" else None
    return Candidate(
        job_id=job.id,
        number=job.to_number,
        sender=sender.lower() if isinstance(sender, str) and sender else None,
        folder=folder if isinstance(folder, str) and folder else None,
        pages=job.pages,
        priority=job.priority,
    )


def judge_due(policy: SendingPolicy, store: Store, jobs: Sequence[Job], now: datetime) -> Verdicts:
    """Judge each due job by its rule (blocking: reads the store, and the documents of
    a job whose rule counts pages). Faxes let go in this cycle count against their
    sender's limits at once."""
    verdicts = Verdicts([], [], [])
    used: dict[str, list[datetime]] = {}
    going: list[tuple[Candidate, Rule | None]] = []
    by_id = {job.id: job for job in jobs}
    for job in jobs:
        seen = candidate(job)
        # The store's failures fail the cycle (tried again); the rules' own, on one job,
        # must not stop every other fax (see _cannot_judge).
        try:
            rule = first_match(policy.rules, seen)
        except Exception as error:
            verdicts.waits.append((job, _cannot_judge(job, error, now)))
            continue
        if rule is not None and rule.max_pages is not None and seen.pages is None:
            seen = _with_pages(seen, store.documents(job.id))
        source = seen.source
        limited = rule is not None and (rule.per_sender_hour or rule.per_sender_day)
        if limited and source and source not in used:
            used[source] = store.sent_by(source, now - DAY)
        use = SenderUse(used.get(source, ()))
        try:
            verdict = judge(seen, rule, now, use=use, fallback_zone=policy.unknown_zone)
        except Exception as error:
            verdict = _cannot_judge(job, error, now)
        if isinstance(verdict, Wait):
            verdicts.waits.append((job, verdict))
        elif isinstance(verdict, Refuse):
            verdicts.refusals.append((job, verdict))
        else:
            going.append((seen, rule))
            if source in used:
                used[source].append(now)
    verdicts.go = [by_id[seen.job_id] for seen in in_sending_order(going)]
    return verdicts


def _cannot_judge(job: Job, error: Exception, now: datetime) -> Wait:
    """A job the rules cannot judge (a bug meeting odd input) is not sent against a rule
    either: it waits a while, and says why."""
    log.error("cannot judge job=%s by the sending rules", job.id, exc_info=error)
    why = f"the sending rules could not judge it ({type(error).__name__}); judged again later"
    return Wait(now + JUDGE_AGAIN, why, "error")


def hold(store: Store, job: Job, wait: Wait, now: datetime) -> bool:
    """Keep a job queued until its moment, with why; False when it moved meanwhile."""
    try:
        store.update_fields(
            job.id,
            expect=JobState.QUEUED,
            now=now,
            not_before=wait.until,
            wait_kind=wait.kind,
            wait_reason=wait.why,
        )
    except (StaleState, JobNotFound):
        return False
    if job.wait_reason != wait.why:
        log.info("waiting job=%s until=%s: %s", job.id, wait.until.isoformat(), wait.why)
    return True


def count_pages(documents: Sequence[Document]) -> int | None:
    """The pages of a fax's documents, when each can be counted (a PDF's pages, an
    image's one); None when one cannot (a text or office file: the provider counts)."""
    total = 0
    for document in documents:
        if document.content_type in ("image/png", "image/jpeg", "image/gif"):
            total += 1
        elif document.content_type == "application/pdf":
            pages = _pdf_pages(document.path, document.sha256)
            if pages is None:
                return None
            total += pages
        else:
            return None
    return total


@functools.lru_cache(maxsize=4096)
def _pdf_pages(path: Path, sha256: str) -> int | None:
    """Counted once per document (a spooled file never changes; one letter to many
    numbers is one document): a cycle judges each waiting job again."""
    from pypdf import PdfReader  # only for rules that count pages

    del sha256  # part of the cache's key only

    try:
        return len(PdfReader(path, strict=False).pages)
    except Exception:  # pypdf's own errors on a damaged file: the provider judges
        return None


def _with_pages(seen: Candidate, documents: Sequence[Document]) -> Candidate:
    from dataclasses import replace

    return replace(seen, pages=count_pages(documents))
