from __future__ import annotations

import pytest

from faxgate.domain.documents import (
    MAX_FILES,
    MAX_TOTAL_BYTES,
    DocumentRefused,
    accepted_list,
    check_batch,
    check_document,
)


@pytest.mark.parametrize(
    ("name", "head", "content_type"),
    [
        ("contract.pdf", b"%PDF-1.7\n", "application/pdf"),
        ("SCAN.PDF", b"%PDF-1.4\n", "application/pdf"),
        ("page.tif", b"II*\x00rest", "image/tiff"),
        ("page.tiff", b"MM\x00*rest", "image/tiff"),
        ("logo.png", b"\x89PNG\r\n\x1a\nrest", "image/png"),
        ("photo.jpeg", b"\xff\xd8\xff\xe0", "image/jpeg"),
        ("anim.gif", b"GIF89a", "image/gif"),
        ("note.txt", b"hello", "text/plain"),
        (
            "letter.docx",
            b"PK\x03\x04",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        ("sheet.xls", b"\xd0\xcf\x11\xe0", "application/vnd.ms-excel"),
        ("page.html", b"<html>", "text/html"),
        ("memo.rtf", b"{\\rtf1", "application/rtf"),
        ("text.odt", b"PK\x03\x04", "application/vnd.oasis.opendocument.text"),
    ],
)
def test_accepted_documents(name: str, head: bytes, content_type: str) -> None:
    assert check_document(name, 100, head).content_type == content_type


@pytest.mark.parametrize(
    ("name", "head", "reason"),
    [
        ("archive.zip", b"PK\x03\x04", ".zip files cannot be faxed; accepted are PDF, TIFF"),
        ("setup.exe", b"MZ", ".exe files cannot be faxed"),
        ("README", b"hello", "files without an extension cannot be faxed"),
        ("fake.pdf", b"<html>", "does not look like a PDF"),
        ("fake.png", b"%PDF-", "does not look like a PNG"),
    ],
)
def test_refused_documents(name: str, head: bytes, reason: str) -> None:
    with pytest.raises(DocumentRefused, match=reason):
        check_document(name, 100, head)


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(DocumentRefused, match="empty"):
        check_document("blank.pdf", 0, b"")


def test_the_accepted_list_names_each_kind_once() -> None:
    kinds = accepted_list().split(", ")
    assert kinds[:3] == ["PDF", "TIFF", "PNG"]
    assert len(kinds) == len(set(kinds))
    assert "HTM" not in kinds


def test_batches_within_the_provider_limits() -> None:
    check_batch([1] * MAX_FILES)
    check_batch([MAX_TOTAL_BYTES])
    with pytest.raises(DocumentRefused, match="too many"):
        check_batch([1] * (MAX_FILES + 1))
    with pytest.raises(DocumentRefused, match="at most 30 MB"):
        check_batch([MAX_TOTAL_BYTES, 1])
    with pytest.raises(DocumentRefused, match="nothing to fax"):
        check_batch([])
