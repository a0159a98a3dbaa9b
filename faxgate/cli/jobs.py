"""Commands for faxgate's own queue: send, status, retry, cancel.

They work on the store directly, so they work whether or not the daemon runs; the daemon
picks up what they change.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from faxgate.cli import common
from faxgate.clock import utc_now
from faxgate.domain.jobs import (
    PRIORITIES,
    Intake,
    Job,
    JobState,
    can_cancel,
    can_retry,
    is_final,
    normalize_job_id,
    why_waiting,
)
from faxgate.store import DocumentsRemoved, Member, NewNotification, StaleState, Store, gone_after

# States where the story is told: a report went (or goes) out.
_SETTLED = {
    JobState.SENT,
    JobState.PRESUMED_SENT,
    JobState.FAILED,
    JobState.CANCELLED,
    JobState.UNCERTAIN,
}
# Exit 0: sent, or presumed sent (a failure code would invite sending it twice).
_SENT_ENOUGH = {JobState.SENT, JobState.PRESUMED_SENT}
_WAIT_HINT_AFTER = 10.0  # seconds in `queued` before --wait suggests the daemon is down


def register(subparsers: common.Subparsers) -> None:
    send = subparsers.add_parser("send", help="queue a fax of one or more files")
    send.add_argument("number", metavar="NUMBER", help="fax number, e.g. +1 415 555 0100")
    send.add_argument("files", metavar="FILE", nargs="+", type=Path, help="documents to fax")
    send.add_argument("--from", dest="from_line", metavar="LINE", help="send from this line")
    send.add_argument("--cover-to", metavar="NAME", help="cover page: to whom")
    send.add_argument("--cover-from", metavar="NAME", help="cover page: from whom")
    send.add_argument("--message", metavar="TEXT", help="cover page: the message")
    send.add_argument("--notify", metavar="EMAIL", help="email the outcome to this address")
    send.add_argument("--wait", action="store_true", help="show progress until the fax is done")
    send.add_argument(
        "--priority",
        choices=["urgent", "normal", "bulk"],
        default="normal",
        help="urgent faxes go before normal ones, bulk ones last",
    )
    common.add_json_flag(send)
    send.set_defaults(func=send_command)

    status = subparsers.add_parser("status", help="the queue and recent jobs, or one job")
    status.add_argument("job", metavar="JOB", nargs="?", help="show this job's full history")
    status.add_argument("--limit", type=int, default=20, help="recent jobs to list")
    common.add_json_flag(status)
    status.set_defaults(func=status_command)

    retry = subparsers.add_parser("retry", help="queue a failed or uncertain job again")
    retry.add_argument("job", metavar="JOB")
    retry.set_defaults(func=retry_command)

    cancel = subparsers.add_parser("cancel", help="cancel a job not yet handed to the provider")
    cancel.add_argument("job", metavar="JOB")
    cancel.set_defaults(func=cancel_command)


def _job_id(text: str) -> str:
    try:
        return normalize_job_id(text)
    except ValueError:
        raise common.CommandError(f"{text!r} is not a job id (see `faxgate status`)") from None


def _move_by_hand(
    store: Store,
    job: Job,
    to: JobState,
    *,
    detail: str,
    notify: NewNotification | None = None,
    **fields: Any,
) -> None:
    """Move a job a person asked to move, from the state they saw it in."""
    try:
        store.transition(job.id, to, expect=job.state, detail=detail, notify=notify, **fields)
    except StaleState as exc:
        raise common.CommandError(
            f"job {job.id} changed meanwhile (now {exc.actual.value}); not {to.value}"
        ) from None


def _find(store: Store, text: str) -> Job:
    job = store.get_job(_job_id(text))
    if job is None:
        raise common.CommandError(f"no job {text!r} (see `faxgate status`)")
    return job


@contextmanager
def _named_job(args: argparse.Namespace) -> Iterator[tuple[Store, Job]]:
    """The store, and the job the command line names in it."""
    with common.open_store(common.settings_from(args)) as store:
        yield store, _find(store, args.job)


def send_command(args: argparse.Namespace) -> int:
    # Here, not above: reading numbers and documents loads phonenumbers and pypdf, which
    # `status` and the rest do not need.
    from faxgate.domain.documents import DocumentRefused
    from faxgate.domain.numbers import NumberPolicy, NumberRefused, parse_fax_number
    from faxgate.intake.queue import FaxRequest, IncomingDocument, queue_fax
    from faxgate.store.spool import Spool

    settings = common.settings_from(args)
    policy = settings.numbers.policy()
    try:
        number = parse_fax_number(args.number, policy)
        from_line = (
            parse_fax_number(args.from_line, NumberPolicy(allow_premium=True)).provider_digits
            if args.from_line
            else None
        )
    except NumberRefused as exc:
        raise common.CommandError(f"{exc.text!r}: {exc.reason}") from None
    for path in args.files:
        if not path.is_file():
            raise common.CommandError(f"{path}: no such file")
    request = FaxRequest(
        numbers=[number],
        documents=[IncomingDocument(name=path.name, source=path) for path in args.files],
        intake=Intake.CLI,
        intake_ref={"files": [str(path.resolve()) for path in args.files]},
        from_line=from_line,
        cover_to=args.cover_to,
        cover_from=args.cover_from,
        cover_message=args.message,
        reply_to=args.notify,
        priority=PRIORITIES[args.priority],
    )
    with common.open_store(settings) as store:
        try:
            (job,) = queue_fax(store, Spool(settings.spool_dir), request)
        except DocumentRefused as exc:
            raise common.CommandError(str(exc)) from None
        if args.json and not args.wait:
            common.print_json(_job_summary(job))
            return common.EXIT_OK
        print(f"queued job {job.id}: fax to {number.display()}")
        if not args.wait:
            return common.EXIT_OK
        final = _follow(store, job.id)
    if args.json:
        common.print_json(_job_summary(final))
    return common.EXIT_OK if final.state in _SENT_ENOUGH else common.EXIT_FAILURE


def _follow(store: Store, job_id: str, interval: float = 0.5) -> Job:
    """Print each step the job takes until its story is told."""
    started = time.monotonic()
    last: tuple[JobState, str | None, int] | None = None
    hinted = False
    while True:
        job = store.get_job(job_id)
        assert job is not None
        step = (job.state, job.provider_status, job.attempt)
        if step != last:
            print(f"  {_progress_line(job)}", flush=True)
            last = step
        if job.state in _SETTLED:
            return job
        never_taken = job.state is JobState.QUEUED and job.attempt == 1 and not job.not_before
        if never_taken and time.monotonic() - started > _WAIT_HINT_AFTER and not hinted:
            print("  (still queued: is the daemon running? start it with `faxgate run`)")
            hinted = True
        time.sleep(interval)


def _progress_line(job: Job) -> str:
    if job.state is JobState.QUEUED and job.not_before is not None:
        return f"waiting to call again at {_local(job.not_before)} ({job.reason})"
    if job.state is JobState.SUBMITTED:
        return "submitted: the provider is preparing the fax" + _progress_detail(job)
    if job.state is JobState.TRANSMITTING:
        return "transmitting" + _progress_detail(job)
    return job.state.value + _progress_detail(job)


def _progress_detail(job: Job) -> str:
    parts = []
    if job.provider_guid:
        parts.append(f"provider GUID {job.provider_guid}")
    if job.pages:
        parts.append(f"{job.pages} pages")
    if job.reason:
        parts.append(job.reason)
    return f": {'; '.join(parts)}" if parts else ""


def status_command(args: argparse.Namespace) -> int:
    settings = common.settings_from(args)
    with common.open_store(settings) as store:
        if args.job:
            job = _find(store, args.job)
            per_number = settings.policy.calls_per_number or None
            waiting = why_waiting(
                job, utc_now(), ahead=store.ahead_in_line(job.id), per_number=per_number
            )
            return _show_job(store, job, as_json=args.json, waiting=waiting)
        counts = store.count_by_state()
        recent = store.recent_jobs(args.limit)
        # Instances sharing a PostgreSQL store: each alive (or gone), and what it holds.
        members = (
            store.cluster(utc_now(), gone_after(settings.store.lease))
            if settings.store.url
            else None
        )
    if args.json:
        shown: dict[str, object] = {
            "counts": {state.value: counts.get(state, 0) for state in JobState},
            "recent": [_job_summary(job) for job in recent],
        }
        if members is not None:
            shown["instances"] = [_member_summary(member) for member in members]
        common.print_json(shown)
        return common.EXIT_OK
    summary = ", ".join(f"{counts[state]} {state.value}" for state in JobState if counts.get(state))
    print(f"queue: {summary or 'empty'}")
    if members is not None:
        _print_cluster(members)
    if recent:
        print()
        common.print_table(
            ["job", "state", "to", "tries", "pages", "updated", "reason"],
            [
                [
                    job.id,
                    job.state.value,
                    job.to_number,
                    job.attempt,
                    job.pages,
                    _local(job.updated_at),
                    job.reason,
                ]
                for job in recent
            ],
        )
    return common.EXIT_OK


def _show_job(store: Store, job: Job, *, as_json: bool, waiting: str | None = None) -> int:
    documents = store.documents(job.id)
    events = store.events(job.id)
    if as_json:
        common.print_json(
            {
                **_job_summary(job),
                "waiting": waiting,
                "documents": [
                    {
                        "name": d.name,
                        "size": d.size,
                        "sha256": d.sha256,
                        "type": d.content_type,
                        "removed_at": d.removed_at.isoformat() if d.removed_at else None,
                    }
                    for d in documents
                ],
                "events": [
                    {
                        "at": event.at.isoformat(),
                        "from": event.from_state.value if event.from_state else None,
                        "to": event.to_state.value,
                        "detail": event.detail,
                        "data": dict(event.data),
                    }
                    for event in events
                ],
            }
        )
        return common.EXIT_OK
    common.print_table(
        ["job", job.id],
        [
            ["state", job.state.value],
            ["to", job.to_number],
            ["from line", job.from_line],
            ["came from", job.intake.value],
            ["report to", job.reply_to],
            ["tries", job.attempt],
            ["pages", job.pages],
            ["provider GUID", job.provider_guid],
            ["reason", job.reason],
            ["waiting", waiting],
            ["priority", _priority_name(job.priority)],
            ["created", _local(job.created_at)],
            ["updated", _local(job.updated_at)],
        ],
    )
    print("\ndocuments:")
    for document in documents:
        removed = f", removed on {document.removed_at:%Y-%m-%d}" if document.removed_at else ""
        print(f"  {document.seq + 1}. {document.name} ({document.size} bytes{removed})")
    print("\nhistory:")
    for event in events:
        origin = f"{event.from_state.value} -> " if event.from_state else ""
        print(f"  {_local(event.at)}  {origin}{event.to_state.value}: {event.detail}")
    return common.EXIT_OK


def retry_command(args: argparse.Namespace) -> int:
    settings = common.settings_from(args)
    with common.open_store(settings) as store:
        job = _find(store, args.job)
        if not can_retry(job.state):
            raise common.CommandError(
                f"job {job.id} is {job.state.value}; only failed, uncertain or presumed sent"
                " jobs can be retried"
            )
        try:
            _move_by_hand(
                store,
                job,
                JobState.QUEUED,
                detail="queued again by a person (faxgate retry)",
                attempt=job.attempt + 1,
                not_before=None,
                provider_guid=None,
                provider_status=None,
                provider_error=None,
                reason=None,
            )
        except DocumentsRemoved as exc:
            from faxgate.domain.retention import removed_words

            why = removed_words(exc.removed_at, settings.retention.documents)
            raise common.CommandError(f"job {job.id} cannot be sent again: {why}") from None
    print(f"job {job.id} queued again")
    return common.EXIT_OK


def cancel_command(args: argparse.Namespace) -> int:
    with _named_job(args) as (store, job):
        if not can_cancel(job.state):
            done = is_final(job.state) or job.state is JobState.PRESUMED_SENT
            why = "it is already done" if done else "the provider has it"
            raise common.CommandError(f"job {job.id} is {job.state.value}: cannot cancel, {why}")
        _move_by_hand(
            store,
            job,
            JobState.CANCELLED,
            detail="cancelled by a person",
            notify=_cancel_report(job),
            reason="cancelled by a person",
        )
    print(f"job {job.id} cancelled")
    return common.EXIT_OK


def _cancel_report(job: Job) -> NewNotification | None:
    """Whoever asked for the fax hears it was cancelled (the mail's sender, the folder's
    result file), unless an uncertain job's report has told them already."""
    if job.state is JobState.UNCERTAIN:
        return None
    from faxgate.domain.outcomes import report_payload  # the report's rules: only `cancel`

    return NewNotification(
        kind="report",
        payload=report_payload(
            job_id=job.id,
            state=JobState.CANCELLED,
            reason="cancelled by a person",
            status_code=None,
            error_code=None,
            pages=job.pages,
            attempts=job.attempt,
            provider_guid=None,
        ),
    )


def _priority_name(priority: int) -> str:
    return {1: "urgent", 0: "normal", -1: "bulk"}.get(priority, str(priority))


def _job_summary(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state.value,
        "to": job.to_number,
        "intake": job.intake.value,
        "attempt": job.attempt,
        "pages": job.pages,
        "provider_guid": job.provider_guid,
        "provider_status": job.provider_status,
        "reason": job.reason,
        "priority": _priority_name(job.priority),
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
    }


def _member_summary(member: Member) -> dict[str, object]:
    return {
        "instance": member.owner,
        "alive": member.alive,
        "host": member.host,
        "pid": member.pid,
        "version": member.version,
        "started_at": _iso(member.started_at),
        "last_seen": _iso(member.last_seen),
        "sending": member.sending,
        "claimed": member.claimed,
        "notifications": member.notifications,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _print_cluster(members: list[Member]) -> None:
    alive = [member for member in members if member.alive]
    gone = len(members) - len(alive)
    print(f"instances: {len(alive)} alive" + (f", {gone} gone" if gone else ""))
    if not members:
        return
    common.print_table(
        ["instance", "state", "host", "pid", "version", "started", "last seen", "holds"],
        [
            [
                member.owner,
                "alive" if member.alive else "gone",
                member.host or "?",
                "?" if member.pid is None else str(member.pid),
                member.version or "?",
                "?" if member.started_at is None else _local(member.started_at),
                "?" if member.last_seen is None else _local(member.last_seen),
                f"{member.sending} sending, {member.claimed} claimed,"
                f" {member.notifications} notifications",
            ]
            for member in members
        ],
    )


def _local(moment: Any) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""
