"""After a soak run: what faxgate promised, checked against everything it left behind.

`gather` reads the evidence (blocking: run it in a thread, with the daemons stopped): the
jobs in the store (the one the daemons' settings name: an SQLite file, or the PostgreSQL
database several instances share) with their documents, outbox rows and events; the
replies in each instance's Maildir; the result and reason files of each hot folder and the
files still in them; every transmission and callback the sandbox saw. Each is traced back
to the copy (see soak_intake) whose document it carries.

`audit` checks the promises and counts the figures:
- every accepted message and file has exactly one job, and it ended (sent, presumed sent,
  failed or uncertain): nothing lost, nothing taken twice, nothing stuck;
- every job has exactly one report in the outbox, delivered, and exactly one
  notification: a reply mail (mail jobs) or a result file saying its outcome (folder jobs).
  A reply is known by its Message-ID (made from the outbox row, and the Maildir file is
  named after it): one daemon writing it again finds its copy and writes nothing, as a
  mail program folds two copies with one Message-ID into one. Copies of one reply in two
  instances' Maildirs (one killed after writing it, before marking it delivered) count as
  one reply, and are counted apart as repeats; two replies with different Message-IDs
  are a broken promise;
- the sandbox got each job's document no more often than the job made calls (a busy line
  is called again on purpose), except for jobs faxgate marked uncertain, which are
  counted; no fax at the sandbox without a job;
- each outcome agrees with the provider (sent: its transmission ended S; presumed sent:
  it ended S and the provider removed it; failed: E) and with the number's rule (a busy
  number fails after its tries, and so on; presumed sent counts as sent).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from soak_intake import Copy, Ledger, left_in
from soak_plan import KINDS, expected_calls

from faxgate.domain.jobs import Event, Intake, Job, JobState, Notification
from faxgate.hellofax.sandbox import CallbackAttempt, InspectedTransmission, Sandbox
from faxgate.store import Store

__all__ = [
    "Audit",
    "Evidence",
    "JobRecord",
    "Problem",
    "SandboxView",
    "audit",
    "gather",
    "job_story",
    "kind_rows",
    "records_by_job",
]

ENDED = frozenset({JobState.SENT, JobState.PRESUMED_SENT, JobState.FAILED, JobState.UNCERTAIN})
# Outcomes the provider settled (a presumed one: it removed the fax, which it does once sent).
SETTLED_BY_PROVIDER = frozenset({JobState.SENT, JobState.PRESUMED_SENT, JobState.FAILED})
_TAG = re.compile(r"(fax\d{4}-\d+)")
_RESULT = ".result.json"
_REASON = ".reason.txt"


@dataclass(frozen=True, slots=True)
class JobRecord:
    job: Job
    tags: list[str]  # the copies whose document it carries
    notifications: list[Notification]
    events: list[Event]


@dataclass(frozen=True, slots=True)
class Result:
    """A result file in sent/ or failed/."""

    tag: str
    where: str  # "sent" or "failed"
    outcome: str


@dataclass
class Evidence:
    jobs: list[JobRecord]
    replies: defaultdict[str, list[str]]  # tag -> reply mail files threaded under it
    stray_replies: list[str]  # reply files that name no copy
    reply_repeats: int  # copies of a reply (same Message-ID) in another instance's Maildir
    results: defaultdict[str, list[Result]]
    refused: set[str]  # tags of files refused (a reason file in failed/)
    left: set[str]  # tags of files still in the hot folder
    processing: list[str]  # status files left in processing/
    transmissions: list[InspectedTransmission]
    duplicates: int  # the sandbox's own count of (number, document) sent more than once
    callbacks: list[CallbackAttempt]


def _tag_in(text: str) -> str | None:
    found = _TAG.search(text)
    return found.group(1) if found else None


@dataclass(frozen=True, slots=True)
class SandboxView:
    """What the sandbox saw (read on the event loop's thread: its store is tied to it)."""

    transmissions: list[InspectedTransmission]
    duplicates: int
    callbacks: list[CallbackAttempt]

    @classmethod
    def of(cls, sandbox: Sandbox) -> SandboxView:
        return cls(
            transmissions=[t for t in sandbox.inspect() if not t.is_inbound],
            duplicates=len(sandbox.duplicates()),
            callbacks=[c for c in sandbox.callback_attempts() if c.kind == "outbound"],
        )


def gather(
    store: Store,
    maildirs: Sequence[Path],
    outboxes: Sequence[Path],
    sandbox: SandboxView,
    ledger: Ledger,
) -> Evidence:
    """Everything the run left behind (blocking): `maildirs` and `outboxes` (hot folders)
    of every instance."""
    records = []
    for job in store.jobs_in_states(JobState):
        documents = store.documents(job.id)
        tags = [ledger.by_sha256[d.sha256].tag for d in documents if d.sha256 in ledger.by_sha256]
        records.append(JobRecord(job, tags, store.notifications(job.id), store.events(job.id)))

    replies: defaultdict[str, list[str]] = defaultdict(list)
    stray = []
    repeats = 0
    parser = email.parser.BytesHeaderParser(policy=email.policy.default)
    for maildir in maildirs:
        for part in ("new", "cur"):
            folder = maildir / part
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                headers = parser.parsebytes(path.read_bytes())
                tag = _tag_in(str(headers.get("In-Reply-To", "")))
                if tag is None:
                    stray.append(path.name)
                elif path.name in replies[tag]:  # the name is the Message-ID's
                    repeats += 1
                else:
                    replies[tag].append(path.name)

    results: defaultdict[str, list[Result]] = defaultdict(list)
    refused: set[str] = set()
    left: set[str] = set()
    processing: list[str] = []
    for outbox in outboxes:
        for where in ("sent", "failed"):
            folder = outbox / where
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                if path.name.endswith(_RESULT):
                    document = json.loads(path.read_text())
                    tag = _tag_in(str(document.get("dropped_as", "")))
                    if tag is not None:
                        results[tag].append(Result(tag, where, str(document.get("outcome"))))
                elif path.name.endswith(_REASON) and (tag := _tag_in(path.name)) is not None:
                    refused.add(tag)
        left |= {tag for name in left_in(outbox) if (tag := _tag_in(name)) is not None}
        processing_dir = outbox / "processing"
        if processing_dir.is_dir():
            processing += sorted(os.listdir(processing_dir))

    return Evidence(
        jobs=records,
        replies=replies,
        stray_replies=stray,
        reply_repeats=repeats,
        results=results,
        refused=refused,
        left=left,
        processing=processing,
        transmissions=sandbox.transmissions,
        duplicates=sandbox.duplicates,
        callbacks=sandbox.callbacks,
    )


@dataclass(frozen=True, slots=True)
class Problem:
    promise: str  # which promise is broken, in a few words
    detail: str
    job: Job | None = None


@dataclass
class Audit:
    problems: list[Problem] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)  # by intake
    not_accepted: Counter[str] = field(default_factory=Counter)  # by why
    unanswered_tries: int = 0  # SMTP tries that got no answer (or a 4xx)
    stored_unanswered: int = 0  # ... of which faxgate had stored anyway
    outcomes: Counter[str] = field(default_factory=Counter)  # job state -> jobs
    by_kind: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    calls_by_kind: Counter[str] = field(default_factory=Counter)
    replies: int = 0
    results: int = 0
    sent_twice: int = 0  # jobs whose document the sandbox got more often than they called
    uncertain: list[tuple[str, int]] = field(default_factory=list)  # (job id, faxes sent)
    transmissions: int = 0
    retry_duplicates: int = 0  # (number, document) sent again on purpose: busy, no answer
    callbacks: Counter[str] = field(default_factory=Counter)  # by reason
    callbacks_unanswered: int = 0  # not answered 200 (the daemon was down, say)

    def broken(self, promise: str, detail: str, job: Job | None = None) -> None:
        self.problems.append(Problem(promise, detail, job))


def audit(
    evidence: Evidence,
    ledger: Ledger,
    busy_retries: int,
    no_answer_retries: int,
    killed: Mapping[int, float],
) -> Audit:
    """`killed`: the pid of each daemon killed, and when (seconds into the run)."""
    found = Audit()
    jobs_by_tag: defaultdict[str, list[JobRecord]] = defaultdict(list)
    for record in evidence.jobs:
        if not record.tags:
            found.broken("a job from nowhere", "its documents match no copy", record.job)
        for tag in record.tags:
            jobs_by_tag[tag].append(record)
    sends_by_tag = _sends_by_tag(evidence.transmissions, ledger, found)
    found.transmissions = len(evidence.transmissions)

    for copy in ledger.copies.values():
        _check_intake(copy, jobs_by_tag[copy.tag], evidence, found)
    handed = {c.plan.index for c in ledger.of_intake("mail") if c.state in ("accepted", "refused")}
    for copy in ledger.of_intake("mail"):
        if copy.plan.index not in handed:
            handed.add(copy.plan.index)
            found.not_accepted["mail given up: no answer to any try"] += 1
    for record in evidence.jobs:
        if record.tags:
            copy = ledger.copies[record.tags[0]]
            sends = sends_by_tag.get(copy.tag, [])
            _check_job(record, copy, sends, evidence, found, busy_retries, no_answer_retries)
            _check_replies(record, copy, evidence, found, killed)
    for tag in sends_by_tag.keys() - jobs_by_tag.keys():
        found.broken("a fax without a job", f"the sandbox got copy {tag}, no job carries it")
    for name in evidence.stray_replies:
        found.broken("one notification each", f"reply mail {name} answers no message")
    for name in evidence.processing:
        found.broken("nothing stuck", f"status file processing/{name} left behind")

    found.retry_duplicates = evidence.duplicates - found.sent_twice
    for callback in evidence.callbacks:
        found.callbacks[callback.reason] += 1
        found.callbacks_unanswered += callback.status != 200
    return found


def _sends_by_tag(
    transmissions: Iterable[InspectedTransmission], ledger: Ledger, found: Audit
) -> dict[str, list[InspectedTransmission]]:
    sends: defaultdict[str, list[InspectedTransmission]] = defaultdict(list)
    for tx in transmissions:
        copies = [ledger.by_sha256[f.sha256] for f in tx.files if f.sha256 in ledger.by_sha256]
        if not copies:
            found.broken("a fax without a job", f"sandbox transmission {tx.guid} carries no copy")
            continue
        sends[copies[0].tag].append(tx)
    return sends


def _check_intake(copy: Copy, jobs: Sequence[JobRecord], evidence: Evidence, found: Audit) -> None:
    intake = copy.plan.intake
    if intake == "mail":
        accepted = copy.state == "accepted"
        if copy.state == "unanswered":
            found.unanswered_tries += 1
            found.stored_unanswered += bool(jobs)
        elif copy.state == "refused":
            found.not_accepted[f"mail refused: {copy.detail[:60]}"] += 1
    else:
        accepted = copy.tag not in evidence.left and copy.tag not in evidence.refused
        if copy.tag in evidence.left:
            found.not_accepted["file never taken from the folder"] += 1
            found.broken("nothing lost", f"file of {copy.tag} still in the hot folder")
        elif copy.tag in evidence.refused:
            found.not_accepted["file refused (reason file)"] += 1
    if accepted:
        found.accepted[intake] += 1
        if not jobs:
            found.broken("nothing lost", f"{intake} {copy.tag} was accepted and has no job")
    if len(jobs) > 1:
        ids = ", ".join(r.job.id for r in jobs)
        found.broken("taken once", f"{intake} {copy.tag} made {len(jobs)} jobs: {ids}", jobs[0].job)


def _check_job(
    record: JobRecord,
    copy: Copy,
    sends: Sequence[InspectedTransmission],
    evidence: Evidence,
    found: Audit,
    busy_retries: int,
    no_answer_retries: int,
) -> None:
    job = record.job
    state = job.state
    kind = copy.plan.kind
    found.outcomes[state.value] += 1
    found.by_kind[kind.name][state.value] += 1
    found.calls_by_kind[kind.name] += job.attempt
    if state not in ENDED:
        found.broken("nothing stuck", f"job of {copy.tag} is still {state.value}", job)

    reports = [n for n in record.notifications if n.kind == "report"]
    if len(reports) != 1:
        found.broken("one notification each", f"{len(reports)} reports in the outbox", job)
    elif reports[0].delivered_at is None:
        error = reports[0].last_error or "not tried yet"
        found.broken("one notification each", f"report not delivered: {error}", job)

    if job.intake is Intake.FOLDER:
        results = evidence.results.get(copy.tag, [])
        found.results += len(results)
        if state in ENDED and len(results) != 1:
            found.broken("one notification each", f"{len(results)} result files", job)
        for result in results:
            if result.outcome != state.value:
                detail = f"result file says {result.outcome} in {result.where}/"
                found.broken("one notification each", detail, job)

    own = [tx for tx in sends if tx.to == job.to_number.lstrip("+")]
    if state is JobState.UNCERTAIN:
        found.uncertain.append((job.id, len(own)))
    elif len(own) > job.attempt:
        found.sent_twice += 1
        guids = ", ".join(tx.guid[:10] for tx in own)
        detail = f"the sandbox got it {len(own)} times for {job.attempt} calls ({guids})"
        found.broken("never sent twice", detail, job)
    elif state in SETTLED_BY_PROVIDER and len(own) < job.attempt:
        detail = f"{job.attempt} calls counted, the sandbox got {len(own)}"
        found.broken("outcome matches the provider", detail, job)

    if state in SETTLED_BY_PROVIDER:
        _check_outcome(job, own, evidence, found)
        want = expected_calls(kind, busy_retries, no_answer_retries)
        as_rule = JobState.SENT.value if state is JobState.PRESUMED_SENT else state.value
        if as_rule != kind.state or job.attempt != want:
            detail = (
                f"number rule '{kind.name}' means {kind.state} after {want} calls;"
                f" the job is {state.value} after {job.attempt}: {job.reason}"
            )
            found.broken("outcome matches the number's rule", detail, job)


_WRITER = re.compile(r"P(\d+)Q")  # the writing process in a Maildir file name


def _check_replies(
    record: JobRecord, copy: Copy, evidence: Evidence, found: Audit, killed: Mapping[int, float]
) -> None:
    """One reply mail per mail job (none when no reply may go); a doubled one says which
    processes wrote it, and whether the first was killed before it could mark the report
    delivered."""
    job = record.job
    if job.intake is not Intake.SMTP:
        return
    files = evidence.replies.get(copy.tag, [])
    found.replies += len(files)
    wanted = 1 if job.reply_to else 0
    if job.state not in ENDED or len(files) == wanted:
        return
    writers = []
    for name in files:
        match = _WRITER.search(name)
        pid = int(match.group(1)) if match else 0
        fate = f", killed at {killed[pid]:.1f}s" if pid in killed else ""
        writers.append(f"pid {pid}{fate}")
    detail = f"{len(files)} reply mails for {copy.tag}, written by " + "; ".join(writers)
    if len(files) > 1 and all(_writer_killed(name, killed) for name in files[:-1]):
        detail += (
            " (the reply was written, then the daemon was killed before the outbox row was"
            " marked delivered; the next start wrote it again)"
        )
    found.broken("one notification each", detail, job)


def _writer_killed(name: str, killed: Mapping[int, float]) -> bool:
    match = _WRITER.search(name)
    return match is not None and int(match.group(1)) in killed


def _check_outcome(
    job: Job, own: Sequence[InspectedTransmission], evidence: Evidence, found: Audit
) -> None:
    final = {JobState.SENT: "S", JobState.PRESUMED_SENT: "S", JobState.FAILED: "E"}[job.state]
    mine = [tx for tx in own if tx.guid == job.provider_guid]
    if job.provider_guid is None or not mine:
        other = [tx for tx in evidence.transmissions if tx.guid == job.provider_guid]
        where = "carries another fax's document" if other else "is not at the sandbox"
        detail = f"its transmission {job.provider_guid} {where}"
        found.broken("outcome matches the provider", detail, job)
    elif mine[0].status != final:
        detail = f"job {job.state.value}, its transmission {mine[0].status}/{mine[0].error_code}"
        found.broken("outcome matches the provider", detail, job)
    elif job.state is JobState.PRESUMED_SENT and not mine[0].removed:
        detail = "presumed sent, but the provider still shows its transmission"
        found.broken("outcome matches the provider", detail, job)


def kind_rows(found: Audit) -> list[list[object]]:
    """The outcomes by the number's rule: jobs, sent, presumed, failed, uncertain, other,
    calls."""
    rows: list[list[object]] = []
    for kind in KINDS:
        states = found.by_kind.get(kind.name, Counter())
        jobs = sum(states.values())
        if not jobs:
            continue
        other = (
            jobs - states["sent"] - states["presumed_sent"] - states["failed"] - states["uncertain"]
        )
        calls = found.calls_by_kind[kind.name] / jobs
        rows.append(
            [
                f"{kind.name} ({kind.suffix or 'other'})",
                jobs,
                states["sent"],
                states["presumed_sent"],
                states["failed"],
                states["uncertain"],
                other,
                f"{calls:.2f}",
                kind.state,
            ]
        )
    return rows


def job_story(record: JobRecord | None, log_lines: Sequence[str]) -> list[str]:
    """A job's events and the daemon's log lines about it, for a problem's report."""
    if record is None:
        return []
    lines = [f"    job {record.job.id} ({record.job.intake.value}, to {record.job.to_number}):"]
    for event in record.events:
        source = event.from_state.value if event.from_state else "-"
        data = json.dumps(dict(event.data), sort_keys=True) if event.data else ""
        lines.append(
            f"      {event.at:%H:%M:%S.%f} {source} -> {event.to_state.value}: {event.detail}"
            f" {data}".rstrip()
        )
    for row in record.notifications:
        lines.append(
            f"      outbox #{row.id} {row.kind} attempts={row.attempts}"
            f" delivered={row.delivered_at is not None} error={row.last_error}"
        )
    lines.extend(f"      log: {line}" for line in log_lines)
    return lines


def records_by_job(evidence: Evidence) -> dict[str, JobRecord]:
    return {record.job.id: record for record in evidence.jobs}
