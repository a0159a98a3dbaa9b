"""`faxgate contacts`: the address book listed and checked as the daemon reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faxgate.cli import main

pytestmark = pytest.mark.usefixtures("clean_environment")


def contacts_file(monkeypatch: pytest.MonkeyPatch, path: Path, text: str | bytes) -> None:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    monkeypatch.setenv("FAXGATE_ADDRESSING__CONTACTS_FILE", str(path))


def test_a_good_book_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    contacts_file(
        monkeypatch,
        tmp_path / "contacts.toml",
        '[contacts.drsmith]\nnumber = "+1 415 555 0100"\ncover = "Dr Smith"\n'
        '[groups]\npharmacies = ["drsmith", "+1 212 555 0199"]\n',
    )
    assert main(["contacts"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["drsmith@fax.local", "+1", "415-555-0100", "Dr", "Smith"]
    assert out[2].startswith("pharmacies@fax.local  +1 415-555-0100, +1 212-555-0199")
    assert out[2].endswith("group of 2")

    assert main(["contacts", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["contacts"] == {"drsmith": {"number": "+14155550100", "cover": "Dr Smith"}}
    assert data["groups"] == {"pharmacies": ["+14155550100", "+12125550199"]}
    assert data["problems"] == []


def test_problems_are_named_and_fail_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    contacts_file(
        monkeypatch,
        tmp_path / "contacts.csv",
        "name,number\r\ndrsmith,+1 415 555 0100\r\nbroken,555\r\n",
    )
    assert main(["contacts"]) == 1
    out = capsys.readouterr().out
    assert "drsmith@fax.local" in out
    assert "problem: line 3: its number:" in out


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("contacts.toml", "[contacts.x\n", "is not valid TOML"),
        ("contacts.csv", b"name,number\r\n\xff\xfe,1\r\n", "is not UTF-8 text"),
        ("missing.toml", None, "cannot read the contacts file"),
    ],
)
def test_an_unreadable_file_says_why(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str | bytes | None,
    said: str,
) -> None:
    path = tmp_path / name
    if text is None:
        monkeypatch.setenv("FAXGATE_ADDRESSING__CONTACTS_FILE", str(path))
    else:
        contacts_file(monkeypatch, path, text)
    assert main(["contacts"]) == 1
    assert said in capsys.readouterr().err


def test_without_a_contacts_file_it_says_which_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contacts"]) == 1
    assert "set [addressing] contacts_file" in capsys.readouterr().err
