"""The confirmation report: one page of PDF per fax, as a fax machine prints its
transmission report. Pure: facts and a picture in, PDF bytes out; no IO.

What it says comes from the same reading of a job as the reply mail
(faxgate.notify.report_text): the outcome and its reason in the same words, the same
calls. The picture is the first page as sent, reduced (faxgate.notify.thumbnail draws it
in a worker); when there is none, a note in its place says why.

The PDF is drawn with fpdf2 and its built-in Helvetica, so no font file has to be found
on the machine; that font has only Latin-1, so other letters are written as their
nearest Latin form, or "?".
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from faxgate.domain.jobs import Document, Event, Job, JobState
from faxgate.domain.numbers import display_number
from faxgate.notify.report_text import _opening, calls, read_outcome

# Letter, in millimetres (fpdf2's unit here).
PAGE_WIDTH: Final = 215.9
PAGE_HEIGHT: Final = 279.4
MARGIN: Final = 15.0
# Where the first page's image goes: the right-hand column.
PICTURE_WIDTH: Final = 78.0
PICTURE_HEIGHT: Final = 101.0
PICTURE_X: Final = PAGE_WIDTH - MARGIN - PICTURE_WIDTH
PICTURE_Y: Final = 44.0
# Thumbnail pixels for that box, about 165 dpi: a fax's fine mode is 196.
PICTURE_PIXELS: Final = (510, 660)
MAX_TRIES_LISTED: Final = 12

_WORDS: Final[Mapping[JobState, str]] = {
    JobState.SENT: "SENT",
    JobState.PRESUMED_SENT: "PRESUMABLY SENT",
    JobState.FAILED: "FAILED",
    JobState.UNCERTAIN: "NOT SURE IT WAS SENT",
    JobState.CANCELLED: "CANCELLED",
}


@dataclass(frozen=True, slots=True)
class Try:
    number: int
    at: str
    outcome: str


@dataclass(frozen=True, slots=True)
class ReportFacts:
    """Everything a report prints but the picture; plain strings, ready to print."""

    number: str  # as people read it: "+1 415-555-0100"
    cover_name: str | None
    outcome: str  # "SENT", "FAILED", ...
    sent: bool
    sentence: str  # the outcome in plain words, as the reply mail opens
    reason: str | None
    pages: int | None
    tries: Sequence[Try]
    started: str | None
    ended: str | None
    documents: Sequence[str]
    job_id: str
    provider_id: str | None
    printed: str


@dataclass(frozen=True, slots=True)
class Picture:
    """The first page as sent (a PNG), or the note printed instead; `label` says which
    page it is."""

    png: bytes | None
    label: str
    note: str | None = None


def report_facts(
    job: Job,
    documents: Sequence[Document],
    events: Sequence[Event],
    payload: Mapping[str, Any],
    now: datetime,
) -> ReportFacts:
    """The facts of a job's report, read as the reply mail reads them."""
    outcome = read_outcome(job, events, payload)
    number = display_number(job.to_number)
    tries = [
        Try(
            call.number,
            _time(call.started_at),
            (call.ended.detail.strip() or call.ended.to_state.value)
            if call.ended
            else "no outcome recorded",
        )
        for call in calls(events)
    ]
    started = tries[0].at if tries else (_time(job.submitted_at) if job.submitted_at else None)
    return ReportFacts(
        number=number,
        cover_name=job.cover_to,
        outcome=_WORDS.get(outcome.state, outcome.state.value.upper()),
        sent=outcome.state is JobState.SENT,
        sentence=" ".join(_opening(number, outcome).split()),
        reason=None if outcome.state is JobState.SENT else outcome.reason,
        pages=outcome.pages,
        tries=tries,
        started=started,
        ended=_time(outcome.at) if outcome.at else None,
        documents=[document.name for document in documents],
        job_id=job.id,
        provider_id=outcome.provider_guid,
        printed=_time(now),
    )


def layout_report(facts: ReportFacts, picture: Picture | None) -> bytes:
    """The one-page report as PDF bytes. Without a picture (the report is asked for
    without the page's image) the right-hand column is left out."""
    from fpdf import FPDF

    pdf = FPDF(orientation="portrait", unit="mm", format="letter")
    pdf.set_auto_page_break(auto=False)
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    pdf.set_title(_latin(f"Fax transmission report: {facts.number}"))
    pdf.set_creator("faxgate")
    pdf.set_creation_date(datetime.strptime(facts.printed, _TIME_FORMAT).replace(tzinfo=UTC))
    pdf.add_page()

    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 9, "FAX TRANSMISSION REPORT", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    pdf.cell(0, 5, _latin(f"faxgate, printed {facts.printed}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_line_width(0.6)
    pdf.line(MARGIN, pdf.get_y() + 2, PAGE_WIDTH - MARGIN, pdf.get_y() + 2)
    pdf.set_y(pdf.get_y() + 6)

    text_width = (PICTURE_X - MARGIN - 6) if picture else (PAGE_WIDTH - 2 * MARGIN)
    pdf.set_font("Helvetica", "B", 22)
    pdf.cell(text_width, 11, _latin(facts.outcome), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    pdf.multi_cell(text_width, 5, _latin(_clip(facts.sentence, 400)), align="L", new_x="LMARGIN")
    pdf.set_y(pdf.get_y() + 3)

    rows = [
        ("To", facts.number),
        ("Cover page to", facts.cover_name),
        ("Result", facts.outcome.lower()),
        ("Reason", facts.reason),
        ("Pages", str(facts.pages) if facts.pages else None),
        ("Tries", str(len(facts.tries))),
        ("Start", facts.started),
        ("End", facts.ended),
        ("Documents", ", ".join(facts.documents) or None),
        ("Job", facts.job_id),
        ("Provider ID", facts.provider_id),
    ]
    label_width = 28.0
    for label, value in rows:
        if not value:
            continue
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(label_width, 6, _latin(label), new_x="RIGHT", new_y="TOP")
        # A 40-character provider ID fits on one line at 8 points.
        pdf.set_font("Helvetica", "", 8 if label == "Provider ID" else 10)
        # Clipped: provider text and file names have no length limit, the page has.
        value = _clip(value, 240)
        pdf.multi_cell(text_width - label_width, 6, _latin(value), align="L", new_x="LMARGIN")

    if picture is not None:
        _picture(pdf, picture)

    pdf.set_y(max(pdf.get_y() + 6, PICTURE_Y + PICTURE_HEIGHT + 14 if picture else 0))
    _tries(pdf, facts.tries)
    return bytes(pdf.output())


_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S UTC"
# Letters and marks outside Latin-1 that have a plain form NFKD does not give.
_PLAIN: Final = str.maketrans(
    {"–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "…": "...", "Ł": "L", "ł": "l"}
)


def _picture(pdf: Any, picture: Picture) -> None:
    pdf.set_font("Helvetica", "B", 9)
    pdf.set_xy(PICTURE_X, PICTURE_Y - 6)
    pdf.cell(PICTURE_WIDTH, 5, _latin(_clip(picture.label, 60)), align="C")
    pdf.set_line_width(0.3)
    pdf.rect(PICTURE_X, PICTURE_Y, PICTURE_WIDTH, PICTURE_HEIGHT)
    if picture.png is not None:
        width, height = _png_size(picture.png)
        scale = min((PICTURE_WIDTH - 2) / width, (PICTURE_HEIGHT - 2) / height)
        w, h = width * scale, height * scale
        x = PICTURE_X + (PICTURE_WIDTH - w) / 2
        y = PICTURE_Y + (PICTURE_HEIGHT - h) / 2
        pdf.image(io.BytesIO(picture.png), x=x, y=y, w=w, h=h)
    if picture.note:
        pdf.set_font("Helvetica", "I", 9)
        if picture.png is None:
            pdf.set_xy(PICTURE_X + 4, PICTURE_Y + PICTURE_HEIGHT / 2 - 10)
            pdf.multi_cell(PICTURE_WIDTH - 8, 4.5, _latin(picture.note), align="C")
        else:
            pdf.set_xy(PICTURE_X, PICTURE_Y + PICTURE_HEIGHT + 1)
            pdf.multi_cell(PICTURE_WIDTH, 4, _latin(picture.note), align="C")


def _tries(pdf: Any, tries: Sequence[Try]) -> None:
    pdf.set_x(MARGIN)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, "Tries", new_x="LMARGIN", new_y="NEXT")
    if not tries:
        pdf.set_font("Helvetica", "", 10)
        pdf.cell(0, 6, "No call was made.", new_x="LMARGIN", new_y="NEXT")
        return
    shown = list(tries)[-MAX_TRIES_LISTED:]
    pdf.set_font("Helvetica", "B", 9)
    pdf.cell(10, 6, "#", border="B")
    pdf.cell(48, 6, "Time", border="B")
    pdf.cell(0, 6, "Outcome", border="B", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    if len(shown) < len(tries):
        pdf.cell(0, 5, f"({len(tries) - len(shown)} earlier tries left out)")
        pdf.ln(5)
    outcome_width = PAGE_WIDTH - 2 * MARGIN - 58
    for attempt in shown:
        if pdf.get_y() > PAGE_HEIGHT - MARGIN - 10:
            break  # one page, always
        pdf.cell(10, 5, str(attempt.number))
        pdf.cell(48, 5, _latin(attempt.at))
        pdf.multi_cell(
            outcome_width, 5, _latin(_clip(attempt.outcome, 300)), align="L", new_x="LMARGIN"
        )


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header (IHDR comes first)."""
    if len(png) < 24 or png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _latin(text: str) -> str:
    """What Helvetica can print: Latin-1, without control characters."""
    out = []
    for char in " ".join(text.split()).translate(_PLAIN):
        if ord(char) < 256:
            out.append(char)
            continue
        plain = unicodedata.normalize("NFKD", char).encode("latin-1", "ignore").decode("latin-1")
        out.append(plain or "?")
    return "".join(out)


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 3] + "..."


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime(_TIME_FORMAT)
