"""The sandbox's pure rules: outcomes, timings, retry schedule, documents, paging, numbers."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest
from pydantic import ValidationError
from pypdf import PdfReader

from faxgate.hellofax.sandbox import SPEED_PRESETS, resolve_speed
from faxgate.sandbox.areacodes import first_free, is_sold, offered, pool
from faxgate.sandbox.documents import ReceivedPart, examine, render_received_fax
from faxgate.sandbox.faults import FaultInjector, FaultSettings
from faxgate.sandbox.forms import normalize_number
from faxgate.sandbox.lifecycle import (
    CALLBACK_RETRY_DELAYS,
    billed_pages,
    callback_retry_after,
    decide,
    plan,
)
from faxgate.sandbox.paging import Paging
from faxgate.sandbox.records import CoverPage, Step
from tests.conftest import pdf_document

# Outcomes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "status", "error_code"),
    [
        ("14155550001", "E", "B"),
        ("14155550002", "E", "N"),
        ("14155550003", "E", "A"),
        ("14155550004", "E", "D"),
        ("14155550005", "E", "L"),
        ("14155550006", "E", "U"),
        ("14155550007", "S", None),
        ("14155550008", "S", None),
        ("442071234567", "S", None),
    ],
)
def test_the_number_decides_the_outcome(to: str, status: str, error_code: str | None) -> None:
    outcome = decide(to, documents_readable=True, pages=1, confirmed=True)
    assert (outcome.status, outcome.error_code, outcome.transmits) == (status, error_code, True)


def test_the_rules_apply_in_order() -> None:
    busy = "14155550001"
    held = decide(busy, documents_readable=False, pages=500, confirmed=False)
    assert (held.status, held.error_code, held.transmits) == ("H", None, False)
    unreadable = decide(busy, documents_readable=False, pages=1, confirmed=True)
    assert (unreadable.status, unreadable.error_code, unreadable.transmits) == ("E", "U", False)
    too_long = decide("14155550123", documents_readable=True, pages=201, confirmed=True)
    assert (too_long.status, too_long.error_code, too_long.transmits) == ("E", "U", False)
    assert decide("14155550123", documents_readable=True, pages=200, confirmed=True).status == "S"


def test_a_plan_goes_through_t_scaled_by_speed() -> None:
    sent = decide("14155550123", documents_readable=True, pages=2, confirmed=True)
    assert plan(sent, 2, 1.0) == (Step("T", None, 12.0), Step("S", None, 100.0))
    assert plan(sent, 2, 0.5) == (Step("T", None, 6.0), Step("S", None, 50.0))
    slow = decide("14155550007", documents_readable=True, pages=2, confirmed=True)
    assert plan(slow, 2, 1.0)[1].after == 500.0
    failed = decide("14155550123", documents_readable=False, pages=2, confirmed=True)
    assert plan(failed, 2, 1.0) == (Step("E", "U", 12.0),)


def test_only_faxes_being_or_having_been_sent_bill_pages() -> None:
    assert [billed_pages(status, 3) for status in "PTSEH"] == [0, 3, 3, 0, 0]


def test_callback_retries_follow_the_providers_schedule() -> None:
    minutes = [callback_retry_after(n, 1.0) for n in range(1, 8)]
    assert minutes == list(CALLBACK_RETRY_DELAYS)
    assert [m / 60 for m in minutes if m is not None] == [15, 45, 90, 165, 240, 495, 990]
    assert callback_retry_after(1, 0.001) == pytest.approx(0.9)
    assert callback_retry_after(8, 1.0) is None  # given up after the last interval
    assert callback_retry_after(0, 1.0) is None


# Documents ---------------------------------------------------------------------------------


def tiff(pages: int) -> bytes:
    """A little-endian TIFF whose directory chain has `pages` entries (no image data)."""
    header = b"II*\x00" + struct.pack("<I", 8)
    body = b""
    offset = 8
    for page in range(pages):
        next_offset = 0 if page == pages - 1 else offset + 2 + 12 + 4
        body += struct.pack("<H", 1) + b"\x00" * 12 + struct.pack("<I", next_offset)
        offset += 18
    return header + body


def office(members: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "pages"),
    [
        ("three.pdf", pdf_document(3), 3),
        ("no-extension", pdf_document(2), 2),
        ("scan.tif", tiff(4), 4),
        ("scan.TIFF", tiff(1), 1),
        ("logo.png", b"\x89PNG\r\n\x1a\n rest", 1),
        ("photo.jpg", b"\xff\xd8\xff\xe0 rest", 1),
        ("anim.gif", b"GIF89a rest", 1),
        ("short.txt", b"one line\n", 1),
        ("long.txt", b"line\n" * 121, 3),
        ("page.html", b"<html><body>hi</body></html>", 1),
        ("letter.rtf", b"{\\rtf1 hello}", 1),
        ("old.doc", bytes.fromhex("d0cf11e0a1b11ae1") + b"rest", 1),
        (
            "report.docx",
            office({"word/document.xml": "<w/>", "docProps/app.xml": "<Pages>7</Pages>"}),
            7,
        ),
        ("sheet.xlsx", office({"xl/workbook.xml": "<w/>"}), 1),
        ("essay.odt", office({"content.xml": "<c/>", "meta.xml": 'meta:page-count="5"'}), 5),
    ],
)
def test_readable_documents_and_their_pages(name: str, content: bytes, pages: int) -> None:
    info = examine(name, content)
    assert (info.readable, info.pages) == (True, pages), info.reason


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.pdf", b""),
        ("broken.pdf", b"%PDF-1.4\nnot really\n"),
        ("truncated.pdf", pdf_document(2)[:200]),
        ("fake.png", b"not a png"),
        ("broken.tif", b"II*\x00" + struct.pack("<I", 9999)),
        ("short.tif", b"II*\x00"),
        ("report.docx", b"PK\x03\x04 not a zip"),
        ("report.docx", office({"other.xml": "<x/>"})),
        ("binary.txt", b"\x00\x01\x02"),
        ("blank.txt", b"   \n\n"),
        ("program.exe", b"MZ"),
        ("data.csv", b"a,b\n1,2\n"),
        ("mystery", b"\x00\x9f\x92\x96 binary"),
    ],
)
def test_what_is_no_readable_document(name: str, content: bytes) -> None:
    info = examine(name, content)
    assert (info.readable, info.pages) == (False, 0)
    assert info.reason


def test_a_received_fax_has_every_billed_page() -> None:
    parts = [
        ReceivedPart("a.pdf", pdf_document(2), examine("a.pdf", pdf_document(2))),
        ReceivedPart("b.txt", b"x\n" * 70, examine("b.txt", b"x\n" * 70)),
    ]
    document = render_received_fax(parts, CoverPage(to="Bob", message="Hi (there)"))
    reader = PdfReader(io.BytesIO(document))
    assert len(reader.pages) == 1 + 2 + 2
    assert "Hi (there)" in reader.pages[0].extract_text()
    assert "b.txt" in reader.pages[3].extract_text()


# Paging, numbers, area codes, settings, faults ------------------------------------------------


def test_paging_arithmetic() -> None:
    middle = Paging(page=1, page_size=20, total=45)
    assert (middle.num_pages, middle.start, middle.end, middle.last_page) == (3, 20, 40, 2)
    last = Paging(page=2, page_size=20, total=45)
    assert (last.start, last.end) == (40, 45)
    beyond = Paging(page=5, page_size=20, total=45)
    assert (beyond.start, beyond.end) == (100, 100)
    empty = Paging(page=0, page_size=20, total=0)
    assert (empty.num_pages, empty.start, empty.end) == (1, 0, 0)


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        ("14155550123", "14155550123"),
        ("+1 (415) 555-0123", "14155550123"),
        ("415.555.0123", "14155550123"),
        ("+44 20 7123 4567", "442071234567"),
        ("", None),
        ("fax", None),
        ("12345", None),
        ("1234567890123456", None),
        ("١٢٣٤٥٦٧٨", None),  # digits, but not ASCII ones
    ],
)
def test_numbers_are_digits_with_country_code(raw: str, number: str | None) -> None:
    assert normalize_number(raw) == number


def test_area_code_pools() -> None:
    numbers = pool(415)
    assert (len(numbers), numbers[0], numbers[-1]) == (100, "14155550100", "14155550199")
    assert first_free(415, ["14155550100", "14155550101"]) == "14155550102"
    assert first_free(415, numbers) is None
    assert is_sold(415)
    assert not is_sold(279)  # no numbers in this overlay
    assert not is_sold(999)  # no such area code
    assert offered("ak", []) == [907]
    assert offered("AK", pool(907)) == []
    assert offered("ZZ", []) is None


def test_speeds() -> None:
    assert resolve_speed("realistic") == 1.0
    assert resolve_speed("test") == SPEED_PRESETS["test"] < SPEED_PRESETS["quick"] < 1.0
    assert resolve_speed("0.5") == 0.5
    for bad in ("fast", "0", "-2"):
        with pytest.raises(ValueError, match="speed"):
            resolve_speed(bad)


def test_fault_settings_are_validated() -> None:
    with pytest.raises(ValidationError):
        FaultSettings(error_rate=1.5)
    settings = FaultSettings()
    with pytest.raises(ValidationError):
        settings.callback_copies = 0


def test_counted_faults_count_down() -> None:
    injector = FaultInjector(FaultSettings(rate_limit_next=2, drop_after_upload_next=1))
    assert [injector.take_rate_limit() for _ in range(3)] == [True, True, False]
    assert [injector.take_drop_after_upload() for _ in range(2)] == [True, False]
    assert injector.error_status(is_send=True) is None
