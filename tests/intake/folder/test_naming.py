"""Hot folder names: what is looked at, where the number comes from, result names."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from faxgate.domain.numbers import NumberPolicy
from faxgate.intake.folder.naming import (
    NAME_MAX,
    Found,
    NotFound,
    NumberSource,
    find_number,
    fitting,
    is_ignored,
    is_plain_name,
    naming_help,
    number_in_name,
    numbered,
    sidecar_names,
    unique_name,
)

US = NumberPolicy(default_region="US")


@pytest.mark.parametrize(
    "name",
    [
        ".hidden.pdf",
        "~$letter.docx",
        "scan.pdf.tmp",
        "scan.PART",
        "download.pdf.crdownload",
        "upload.pdf.filepart",
        "letter.pdf.result.json",
        "letter.pdf.status.json",
        "letter.pdf.reason.txt",
        "Thumbs.db",
        "desktop.ini",
    ],
)
def test_names_never_taken(name: str) -> None:
    assert is_ignored(name)


@pytest.mark.parametrize("name", ["14155550100.pdf", "letter.pdf.json", "memo.txt", "a~b.pdf"])
def test_names_taken(name: str) -> None:
    assert not is_ignored(name)


def test_a_documents_sidecar_names() -> None:
    assert sidecar_names("contract.pdf") == ("contract.pdf.json", "contract.json")


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("14155550100.pdf", "14155550100"),
        ("14155550100_contract.pdf", "14155550100"),
        ("+44 20 7946 0958 - offer.pdf", "+44 20 7946 0958"),
        ("(415) 555-0100_scan_2.tif", "(415) 555-0100"),
        ("415.555.0100.pdf", "415.555.0100"),
        ("contract.pdf", None),
        ("invoice 4155550100.pdf", None),  # the number must come first
        ("2024-05-01 minutes.pdf", None),  # letters in the part taken
        ("_14155550100.pdf", None),
    ],
)
def test_the_part_of_a_name_that_is_the_number(name: str, number: str | None) -> None:
    assert number_in_name(name) == number


def test_the_file_name_gives_the_number() -> None:
    found = find_number("+44 20 7946 0958 - offer.pdf", None, US)
    assert isinstance(found, Found)
    assert found.source is NumberSource.NAME
    assert [n.e164 for n in found.numbers] == ["+442079460958"]


def test_a_number_folder_wins_over_the_name() -> None:
    found = find_number("14155550199_letter.pdf", "+14155550100", US)
    assert isinstance(found, Found)
    assert (found.source, found.numbers[0].e164) == (NumberSource.FOLDER, "+14155550100")


def test_a_folder_that_is_no_number_leaves_it_to_the_name() -> None:
    found = find_number("14155550199.pdf", "scans", US)
    assert isinstance(found, Found)
    assert found.source is NumberSource.NAME


def test_no_number_anywhere() -> None:
    assert find_number("contract.pdf", "scans", US) == NotFound(
        "no_number", "no fax number was found in its name or its folder's name, and no sidecar"
    )


def test_a_bad_number_says_why() -> None:
    found = find_number("12345_contract.pdf", None, US)
    assert isinstance(found, NotFound)
    assert found.code == "bad_number"
    assert "too short" in found.reason


def test_the_policy_applies_to_names() -> None:
    found = find_number("14155550100.pdf", None, NumberPolicy(allowed_countries=frozenset({"GB"})))
    assert isinstance(found, NotFound)
    assert "not allowed" in found.reason


def test_the_naming_help_shows_the_ways() -> None:
    text = naming_help("invoice.pdf")
    for way in ("14155550100_invoice.pdf", "+14155550100/invoice.pdf", "invoice.pdf.json"):
        assert way in text


@pytest.mark.parametrize(
    ("name", "n", "expected"),
    [
        ("invoice.pdf", 1, "invoice.pdf"),
        ("invoice.pdf", 2, "invoice (2).pdf"),
        ("archive.tar.gz", 3, "archive.tar (3).gz"),
        ("README", 2, "README (2)"),
    ],
)
def test_numbered_names(name: str, n: int, expected: str) -> None:
    assert numbered(name, n) == expected


def test_unique_names_skip_the_taken_ones() -> None:
    taken = {"invoice.pdf", "invoice (2).pdf"}
    assert unique_name("invoice.pdf", taken.__contains__) == "invoice (3).pdf"
    assert unique_name("other.pdf", taken.__contains__) == "other.pdf"


@pytest.mark.parametrize("name", ["a.pdf", "with space.pdf"])
def test_plain_names(name: str) -> None:
    assert is_plain_name(name)


@pytest.mark.parametrize("name", ["", "../a.pdf", "sub/a.pdf", "a\\b.pdf", ".hidden", " a.pdf"])
def test_names_that_are_not_plain(name: str) -> None:
    assert not is_plain_name(name)


def test_date_folders_are_local_days() -> None:
    from faxgate.intake.folder.naming import date_folder

    moment = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert date_folder(moment) == moment.astimezone().strftime("%Y-%m-%d")


def test_a_name_too_long_for_its_companions_is_cut_and_marked() -> None:
    long = "14155550100_" + "é" * 120 + ".pdf"  # 256 bytes in UTF-8
    short = numbered(long, 1)
    assert len((short + ".result.json").encode()) <= NAME_MAX
    assert short.startswith("14155550100_é")
    assert short.endswith(".pdf")
    assert short != numbered(long.replace(".pdf", "x.pdf"), 1)  # two long names stay two
    assert numbered(long, 1) == short  # and the same name always gets the same cut
    assert len(numbered(long, 2).encode()) <= NAME_MAX - len(".result.json")
    assert numbered("invoice.pdf", 1) == fitting("invoice.pdf") == "invoice.pdf"


def test_a_name_that_is_not_utf8_is_cut_by_its_bytes() -> None:
    raw = b"14155550100_" + b"\xff" * 250 + b".pdf"
    short = fitting(os.fsdecode(raw))
    assert len(os.fsencode(short)) <= NAME_MAX - len(".result.json")
