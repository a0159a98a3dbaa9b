"""A page per job and a page per inbound fax: what the status list links to.

The job's page tells its whole story from the store: every event with its time, state,
try and the provider's status in plain words, its documents (each to download, and a
picture of its first page when a renderer is given), its number, cover page and where it
came from. An inbound fax's page says who sent it, to which number, when, how many pages,
and where it was delivered, with its PDF to download.

Ids come from the URL only to be looked up: a file is always the one the store names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from faxgate.domain.codes import ErrorCode, StatusCode, describe_outcome
from faxgate.domain.inbound import InboundDelivery, InboundFax
from faxgate.domain.jobs import (
    Document,
    Event,
    Job,
    JobState,
    is_final,
    normalize_job_id,
    why_waiting,
)
from faxgate.store import Store
from faxgate.web.markup import document_page, href, row, segment, size, table, text, time
from faxgate.web.statuspage import page_header

__all__ = [
    "FaxView",
    "JobReport",
    "JobView",
    "PageImage",
    "attempts_by_event",
    "document_path",
    "inbound_path",
    "read_fax",
    "read_job",
    "render_fax",
    "render_job",
    "valid_id",
]

# A PNG of a document's first page, given its file and content type; None when it cannot
# be drawn. Renderers run it away from the event loop themselves.
PageImage = Callable[[Path, str], Awaitable[bytes | None]]

# A job's confirmation report as a PDF (faxgate.notify.confirmation), made on request.
JobReport = Callable[[Job, Sequence[Document], Sequence[Event]], Awaitable[bytes]]

THUMBNAIL_WIDTH: Final = 200  # CSS pixels; the image keeps its own proportions


def valid_id(text_id: str) -> str | None:
    """The job or inbound fax id a URL names, or None when it names none."""
    try:
        return normalize_job_id(text_id)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class KeptDocument:
    document: Document
    kept: bool  # still in the spool, so it can be downloaded


@dataclass(frozen=True, slots=True)
class JobView:
    job: Job
    documents: Sequence[KeptDocument]
    events: Sequence[Event]
    group: Sequence[Job]  # the other jobs of the same message or drop
    ahead: int = 0  # queued: the faxes before it in its number's line, in flight included


@dataclass(frozen=True, slots=True)
class FaxView:
    fax: InboundFax
    kept: bool
    deliveries: Sequence[InboundDelivery]


def read_job(store: Store, job_id: str) -> JobView | None:
    """Blocking: call it in a thread."""
    job = store.get_job(job_id)
    if job is None:
        return None
    documents = [KeptDocument(d, d.path.is_file()) for d in store.documents(job.id)]
    group = [j for j in store.group_jobs(job.group_id) if j.id != job.id] if job.group_id else []
    ahead = store.ahead_in_line(job.id) if job.state is JobState.QUEUED else 0
    return JobView(job, documents, store.events(job.id), group, ahead)


def read_fax(store: Store, fax_id: str) -> FaxView | None:
    """Blocking: call it in a thread."""
    fax = store.get_inbound(fax_id)
    if fax is None:
        return None
    kept = fax.document is not None and fax.document.path.is_file()
    return FaxView(fax, kept, store.inbound_deliveries(fax.id))


async def read_job_async(store: Store, job_id: str) -> JobView | None:
    return await asyncio.to_thread(read_job, store, job_id)


async def read_fax_async(store: Store, fax_id: str) -> FaxView | None:
    return await asyncio.to_thread(read_fax, store, fax_id)


def attempts_by_event(events: Sequence[Event], attempt_now: int) -> list[int]:
    """The try each event belongs to, counted back from the job's current one: a move back
    to queued from anywhere but submitting starts a new call (a request that never left
    keeps its try)."""
    attempts = [0] * len(events)
    attempt = attempt_now
    for i in range(len(events) - 1, -1, -1):
        attempts[i] = max(1, attempt)
        event = events[i]
        if event.to_state is JobState.QUEUED and event.from_state not in (
            None,
            JobState.SUBMITTING,
        ):
            attempt -= 1
    return attempts


def _provider_status(data: Mapping[str, object]) -> str:
    """The provider's status code and, in plain words, what it means."""
    code = data.get("status")
    if not isinstance(code, str) or not code:
        return "–"
    error_code = data.get("error")
    try:
        status = StatusCode(code)
        error = ErrorCode(error_code) if isinstance(error_code, str) and error_code else None
    except ValueError:
        return text(code if not error_code else f"{code} ({error_code})")
    shown = f"{code}/{error_code}" if error is not None else code
    return f"{text(shown)}: {text(describe_outcome(status, error))}"


def document_path(job_id: str, seq: int) -> str:
    return f"/jobs/{segment(job_id)}/documents/{seq:d}"


def inbound_path(fax_id: str) -> str:
    return f"/inbound/{segment(fax_id)}"


def _fields(table_id: str, pairs: Sequence[tuple[str, str]]) -> str:
    rows = "\n".join(f"<tr><th>{text(name)}</th><td>{value}</td></tr>" for name, value in pairs)
    return f'<table id="{table_id}" class="fields">\n<tbody>\n{rows}\n</tbody>\n</table>'


def _state(state: JobState) -> str:
    return f'<span class="state {text(state.value)}">{text(state.value)}</span>'


# What an intake records about where a fax came from, in the order people want it.
_INTAKE_FIELDS: Final = (
    ("sender", "sender"),
    ("login", "login"),
    ("via", "via"),
    ("subject", "subject"),
    ("message_id", "Message-ID"),
    ("folder", "hot folder"),
    ("drop", "dropped"),
    ("files", "files"),
    ("sidecar", "sidecar"),
    ("number_from", "number from"),
    ("recipient", "addressed to"),
    ("skipped", "not faxed"),
    ("no_reply", "no reply because"),
)


def _intake_value(value: object) -> str:
    if isinstance(value, list):
        return text(", ".join(str(item) for item in value))
    if isinstance(value, dict):
        return text(", ".join(f"{k}: {v}" for k, v in value.items()))
    return text(value)


def _image(src: str, alt: str) -> str:
    return f'<img class="page" src="{href(src)}" alt="{text(alt)}" width="{THUMBNAIL_WIDTH}">'


def report_path(job_id: str) -> str:
    return f"/jobs/{segment(job_id)}/report.pdf"


def render_job(
    view: JobView,
    now: datetime,
    *,
    thumbnails: bool = False,
    report: bool = False,
    per_number: int | None = 1,
) -> str:
    job = view.job
    summary = _fields(
        "job",
        [
            ("job", text(job.id)),
            ("state", _state(job.state)),
            ("reason", text(job.reason)),
            ("waiting", text(why_waiting(job, now, ahead=view.ahead, per_number=per_number))),
            ("number", text(job.to_number)),
            ("from line", text(job.from_line)),
            ("tries", text(job.attempt)),
            ("pages", text(job.pages)),
            ("provider id", text(job.provider_guid)),
            (
                "provider status",
                _provider_status(
                    {"status": job.provider_status or "", "error": job.provider_error or ""}
                ),
            ),
            ("report to", text(job.reply_to)),
            ("created", time(job.created_at)),
            ("not before", time(job.not_before)),
            ("submitted", time(job.submitted_at)),
            ("finished", time(job.finished_at)),
            ("updated", time(job.updated_at)),
        ],
    )
    cover = _fields(
        "cover",
        [
            ("to", text(job.cover_to)),
            ("from", text(job.cover_from)),
            ("message", text(job.cover_message)),
        ],
    )
    intake_pairs = [("came from", text(job.intake.value))] + [
        (label, _intake_value(job.intake_ref[key]))
        for key, label in _INTAKE_FIELDS
        if job.intake_ref.get(key) not in (None, "", [], {})
    ]
    intake = _fields("intake", intake_pairs)

    doc_rows = []
    for kept in view.documents:
        doc = kept.document
        link = document_path(job.id, doc.seq)
        name = (
            f'<a href="{href(link)}" download>{text(doc.name)}</a>' if kept.kept else text(doc.name)
        )
        cells = [text(doc.seq + 1), name, size(doc.size), text(doc.content_type)]
        if doc.removed_at is not None:
            cells.append(text(f"removed on {doc.removed_at:%Y-%m-%d} ([retention] documents)"))
        elif not kept.kept:
            cells.append("no longer kept")
        elif thumbnails:
            cells.append(_image(f"{link}/page1.png", f"first page of {doc.name}"))
        else:
            cells.append("")
        doc_rows.append(row(cells, f' data-seq="{doc.seq:d}"'))
    documents = table(
        "documents", ("#", "name", "size", "type", "first page"), doc_rows, "no documents"
    )

    attempts = attempts_by_event(view.events, job.attempt)
    history_rows = [
        row(
            (
                time(event.at),
                (f"{text(event.from_state.value)} → " if event.from_state else "")
                + _state(event.to_state),
                text(attempt),
                _provider_status(event.data),
                text(event.detail),
            ),
            f' data-event="{event.id:d}"',
        )
        for event, attempt in zip(view.events, attempts, strict=True)
    ]
    history = table(
        "history", ("time", "state", "try", "provider status", "reason"), history_rows, "no events"
    )

    group = ""
    if view.group:
        group_rows = [
            row(
                (
                    f'<a href="{href("/jobs/" + segment(other.id))}">{text(other.id)}</a>',
                    _state(other.state),
                    text(other.to_number),
                )
            )
            for other in view.group
        ]
        group = "<h2>Same message to other numbers</h2>\n" + table(
            "group", ("job", "state", "number"), group_rows, ""
        )

    body = "\n".join(
        (
            page_header(now),
            f"<h2>Fax {text(job.id)} to {text(job.to_number)}: {_state(job.state)}</h2>",
            summary,
            _report_link(job) if report else "",
            "<h2>Documents</h2>",
            documents,
            "<h2>History</h2>",
            history,
            "<h2>Cover page</h2>",
            cover,
            "<h2>Where it came from</h2>",
            intake,
            group,
        )
    )
    return document_page(f"faxgate: job {job.id}", body)


def _report_link(job: Job) -> str:
    if not is_final(job.state):
        return "<p>The confirmation report can be had once the fax has ended.</p>"
    link = href(report_path(job.id))
    return f'<p><a href="{link}" download>Confirmation report (PDF)</a></p>'


def _delivery_rows(deliveries: Sequence[InboundDelivery]) -> list[str]:
    return [
        row(
            (
                text(d.kind),
                text(d.target),
                text(d.state),
                time(d.delivered_at),
                text(d.detail or d.last_error),
            )
        )
        for d in deliveries
    ]


def render_fax(view: FaxView, now: datetime, *, thumbnails: bool = False) -> str:
    fax = view.fax
    doc = fax.document
    if doc is None:
        document = '<p id="document" class="none">No document came with this fax.</p>'
    elif fax.removed_at is not None:
        removed = f"The document was removed on {fax.removed_at:%Y-%m-%d} ([retention] documents)."
        document = f'<p id="document" class="none">{text(removed)}</p>'
    elif not view.kept:
        document = '<p id="document" class="none">The document is no longer kept.</p>'
    else:
        link = f"{inbound_path(fax.id)}/document"
        image = _image(f"{inbound_path(fax.id)}/page1.png", "first page") if thumbnails else ""
        document = (
            f'<p id="document"><a href="{href(link)}" download>the fax as received</a>'
            f" ({size(doc.size)}, {text(doc.content_type)})</p>{image}"
        )
    summary = _fields(
        "fax",
        [
            ("fax", text(fax.id)),
            ("from", text(fax.from_number)),
            ("to", text(fax.to_number)),
            ("when", time(fax.when)),
            ("pages", text(fax.pages)),
            ("route", text(fax.route)),
            ("note", text(fax.note)),
            ("provider id", text(fax.provider_guid)),
            ("stored", time(fax.received_at)),
        ],
    )
    deliveries = table(
        "deliveries",
        ("kind", "to", "state", "delivered", "detail"),
        _delivery_rows(view.deliveries),
        "not delivered anywhere",
    )
    body = "\n".join(
        (
            page_header(now),
            f"<h2>Fax {text(fax.id)} from {text(fax.from_number)}</h2>",
            summary,
            "<h2>Document</h2>",
            document,
            "<h2>Deliveries</h2>",
            deliveries,
        )
    )
    return document_page(f"faxgate: fax in {fax.id}", body)
