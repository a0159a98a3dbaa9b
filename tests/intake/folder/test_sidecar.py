"""Sidecars: the JSON beside a dropped document that says where it goes."""

from __future__ import annotations

import json

import pytest

from faxgate.domain.numbers import NumberPolicy
from faxgate.intake.folder.sidecar import (
    MAX_SIDECAR_BYTES,
    SidecarError,
    parse_sidecar,
    sidecar_from_line,
    sidecar_numbers,
)

US = NumberPolicy(default_region="US")


def test_every_field() -> None:
    sidecar = parse_sidecar(
        json.dumps(
            {
                "to": ["+14155550100", "415 555 0101"],
                "from": "+1 415 555 0199",
                "cover_to": "Legal",
                "cover_from": "Front desk",
                "message": "Please sign.",
                "notify": "me@example.com",
                "files": ["letter.pdf", "annex.pdf"],
            }
        ).encode()
    )
    assert [n.e164 for n in sidecar_numbers(sidecar, US)] == ["+14155550100", "+14155550101"]
    assert sidecar_from_line(sidecar, US) == "14155550199"
    assert (sidecar.cover_to, sidecar.cover_from) == ("Legal", "Front desk")
    assert (sidecar.message, sidecar.notify) == ("Please sign.", "me@example.com")
    assert sidecar.files == ["letter.pdf", "annex.pdf"]


def test_one_number_as_text_or_as_a_json_number() -> None:
    assert parse_sidecar(b'{"to": "+14155550100"}').to == ["+14155550100"]
    assert parse_sidecar(b'{"to": 14155550100}').to == ["14155550100"]
    assert parse_sidecar(b'\xef\xbb\xbf{"to": "1"}').to == ["1"], "a BOM is allowed"


def test_a_number_twice_is_faxed_once() -> None:
    sidecar = parse_sidecar(b'{"to": ["+14155550100", "(415) 555-0100"]}')
    assert len(sidecar_numbers(sidecar, US)) == 1


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"{nope", "not valid JSON (line 1, column 2)"),
        (b"\xff\xfe", "not UTF-8"),
        (b'["+14155550100"]', "must be a JSON object"),
        (b"{}", '"to" is missing'),
        (b'{"to": []}', '"to"'),
        (b'{"to": "1", "tos": "2"}', '"tos" is not a sidecar key'),
        (b'{"to": "1", "notify": "not an address"}', "one plain email address"),
        (b'{"to": "1", "notify": "a@b.c, d@e.f"}', "one plain email address"),
        (b'{"to": "1", "files": ["../secret.pdf"]}', "not a file beside the sidecar"),
        (b'{"to": "1", "files": ["sub/a.pdf"]}', "not a file beside the sidecar"),
        (b'{"to": "1", "files": [".hidden.pdf"]}', "not a file beside the sidecar"),
        (b'{"to": "1", "files": ["a.pdf", "a.pdf"]}', "listed twice"),
        (b'{"to": "1", "files": []}', '"files"'),
    ],
)
def test_bad_sidecars_say_why(data: bytes, says: str) -> None:
    with pytest.raises(SidecarError, match=None) as caught:
        parse_sidecar(data)
    assert says in str(caught.value)


def test_a_huge_sidecar_is_refused_unread() -> None:
    with pytest.raises(SidecarError, match="larger than"):
        parse_sidecar(b" " * (MAX_SIDECAR_BYTES + 1))


def test_a_bad_number_is_named() -> None:
    sidecar = parse_sidecar(b'{"to": ["+14155550100", "12345"]}')
    with pytest.raises(SidecarError, match="'12345': the fax number is too short"):
        sidecar_numbers(sidecar, US)


def test_the_policy_applies() -> None:
    sidecar = parse_sidecar(b'{"to": "+44 20 7946 0958"}')
    with pytest.raises(SidecarError, match="not allowed"):
        sidecar_numbers(sidecar, NumberPolicy(allowed_countries=frozenset({"US"})))


def test_a_bad_sending_line() -> None:
    sidecar = parse_sidecar(b'{"to": "+14155550100", "from": "letters"}')
    with pytest.raises(SidecarError, match='"from"'):
        sidecar_from_line(sidecar, US)
    assert sidecar_from_line(parse_sidecar(b'{"to": "1"}'), US) is None
