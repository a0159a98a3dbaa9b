"""v3 error answers sorted into v1's classes, by what is safe to do next."""

from __future__ import annotations

import base64

import pytest

from faxgate.domain import provider as seam
from faxgate.dropbox_fax.errors import error_for_answer, scrubber
from tests.dropbox_fax.sources import EXAMPLE_API_KEY, example_text, without_trailing_commas

NOW = 1_750_000_000.0


def _body(name: str) -> bytes:
    return example_text(name).encode()


@pytest.mark.parametrize(
    ("status", "name", "kind", "words"),
    [
        (400, "Error400Response.json", seam.Refused, "the provider refused the request"),
        (401, "Error401Response.json", seam.Refused, "the provider refused the API key"),
        (402, "Error402Response.json", seam.Refused, "requires a payment"),
        (403, "Error403Response.json", seam.Refused, "a paid API plan may be required"),
        (404, "Error404Response.json", seam.Refused, "knows no such fax"),
        (410, "Error410Response.json", seam.Refused, "has deleted this fax"),
        (422, "Error422Response.json", seam.Refused, "could not process the request"),
        (429, "Error429Response.json", seam.RateLimited, "limiting the rate"),
    ],
)
def test_each_documented_error_sorts_into_v1s_class(
    status: int, name: str, kind: type[seam.ProviderError], words: str
) -> None:
    error = error_for_answer(status, _body(name), endpoint="get_fax", idempotent=True, now=NOW)

    assert type(error) is kind
    assert error.status == status
    assert error.endpoint == "get_fax"
    assert words in error.message


def test_a_message_carries_the_status_the_name_and_the_providers_words() -> None:
    error = error_for_answer(
        403, _body("Error403Response.json"), endpoint="send", idempotent=False, now=NOW
    )

    assert error.message == (
        "the provider refused access (a paid API plan may be required) (403 forbidden): "
        "A paid API plan is required to access this endpoint."
    )


def test_the_error_path_is_named() -> None:
    body = without_trailing_commas(example_text("Error4XXResponse.json")).encode()

    error = error_for_answer(400, body, endpoint="send", idempotent=False, now=NOW)

    assert error.message == (
        "the provider refused the request (400 bad_request): "
        "This value should not be blank [at cc_email_addresses[0]]"
    )


def test_an_error_body_with_a_trailing_comma_is_still_sorted_and_its_words_shown() -> None:
    # Not JSON, so not read as the envelope; the status sorts it and the raw words remain.
    error = error_for_answer(
        400, _body("Error4XXResponse.json"), endpoint="send", idempotent=False, now=NOW
    )

    assert type(error) is seam.Refused
    assert "This value should not be blank" in error.message


def test_a_conflict_on_a_send_is_ambiguous_never_failed_nor_sent_again() -> None:
    # "An identical request is already being processed": our own earlier send is still
    # under way and may yet fax the document. Failing the job would be false; sending again
    # later would send it twice. Reconcile finds the first one.
    error = error_for_answer(
        409, _body("Error409Response.json"), endpoint="send", idempotent=False, now=NOW
    )

    assert type(error) is seam.Ambiguous
    assert "An identical request is already being processed." in error.message


def test_a_conflict_on_a_read_is_only_unavailable() -> None:
    error = error_for_answer(
        409, _body("Error409Response.json"), endpoint="list_faxes", idempotent=True, now=NOW
    )

    assert type(error) is seam.Unavailable


def test_the_error_name_wins_over_an_odd_status() -> None:
    conflict = b'{"error": {"error_msg": "dup", "error_name": "Conflict"}}'
    rate = b'{"error": {"error_msg": "slow down", "error_name": "exceeded_rate"}}'

    assert type(error_for_answer(400, conflict, endpoint="send", idempotent=False, now=NOW)) is (
        seam.Ambiguous
    )
    assert type(error_for_answer(403, rate, endpoint="send", idempotent=False, now=NOW)) is (
        seam.RateLimited
    )


def test_a_429_waits_until_the_reset_header() -> None:
    headers = {
        "X-RateLimit-Limit": "100",
        "X-RateLimit-Remaining": "0",
        "X-Ratelimit-Reset": str(int(NOW) + 42),
    }

    error = error_for_answer(
        429,
        _body("Error429Response.json"),
        endpoint="send",
        idempotent=False,
        headers=headers,
        now=NOW,
    )

    assert isinstance(error, seam.RateLimited)
    assert error.retry_after == 42.0
    assert "Too many requests." in error.message


def test_a_429_prefers_retry_after_and_never_waits_a_negative_time() -> None:
    explicit = error_for_answer(
        429,
        b"",
        endpoint="send",
        idempotent=False,
        headers={"retry-after": "7", "x-ratelimit-reset": str(int(NOW) + 42)},
        now=NOW,
    )
    past = error_for_answer(
        429,
        b"",
        endpoint="send",
        idempotent=False,
        headers={"X-Ratelimit-Reset": str(int(NOW) - 5)},
        now=NOW,
    )
    unknown = error_for_answer(429, b"", endpoint="send", idempotent=False, now=NOW)

    assert [type(error) for error in (explicit, past, unknown)] == [seam.RateLimited] * 3
    assert [getattr(error, "retry_after", "?") for error in (explicit, past, unknown)] == [
        7.0,
        0.0,
        None,
    ]


@pytest.mark.parametrize(
    ("status", "idempotent", "kind"),
    [
        (500, False, seam.ProviderFault),
        (503, False, seam.ProviderFault),
        (502, False, seam.Ambiguous),
        (504, False, seam.Ambiguous),
        (502, True, seam.ProviderFault),
        (504, True, seam.ProviderFault),
        (302, True, seam.BadResponse),
    ],
)
def test_server_faults_as_on_v1(
    status: int, idempotent: bool, kind: type[seam.ProviderError]
) -> None:
    error = error_for_answer(status, b"", endpoint="send", idempotent=idempotent, now=NOW)

    assert type(error) is kind
    assert error.message.endswith(f"({status})")


def test_a_proxys_html_page_gives_its_title() -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"

    error = error_for_answer(
        502,
        page,
        endpoint="get_fax",
        idempotent=True,
        headers={"Content-Type": "text/html"},
        now=NOW,
    )

    assert error.message == "the provider failed (502): 502 Bad Gateway"


def test_a_404_names_what_was_asked_for() -> None:
    body = _body("Error404Response.json")

    line = error_for_answer(404, body, endpoint="get_fax_line", idempotent=True, now=NOW)
    other = error_for_answer(404, body, endpoint="area_codes", idempotent=True, now=NOW)
    files = error_for_answer(410, b"", endpoint="fax_files", idempotent=True, now=NOW)

    assert line.message.startswith("the provider knows no such fax line on this account")
    assert other.message.startswith("the provider found no such thing on this account")
    assert files.message.startswith("the provider no longer keeps this fax's files")


def test_a_long_message_is_one_trimmed_line() -> None:
    words = "word\n" * 200
    body = '{"error": {"error_msg": "' + words.replace("\n", "\\n") + '", "error_name": "x"}}'

    error = error_for_answer(400, body.encode(), endpoint="send", idempotent=False, now=NOW)

    assert "\n" not in error.message
    assert error.message.endswith("…")
    assert len(error.message) < 400


def test_the_api_key_never_appears_in_a_message() -> None:
    basic = base64.b64encode(f"{EXAMPLE_API_KEY}:".encode()).decode()
    # The key placed so that trimming would cut it: scrubbing must come first.
    words = "x" * 280 + f" key {EXAMPLE_API_KEY} auth Basic {basic}"
    body = f'{{"error": {{"error_msg": "{words}", "error_name": "unauthorized"}}}}'.encode()
    scrub = scrubber([EXAMPLE_API_KEY, ""])

    enveloped = error_for_answer(401, body, endpoint="send", idempotent=False, now=NOW, scrub=scrub)
    plain = error_for_answer(
        401,
        f"bad key {EXAMPLE_API_KEY} / {basic}".encode(),
        endpoint="send",
        idempotent=False,
        now=NOW,
        scrub=scrub,
    )

    for error in (enveloped, plain):
        assert EXAMPLE_API_KEY[:12] not in error.message
        assert basic[:12] not in error.message
    assert plain.message.endswith("bad key *** / ***")


def test_a_short_secret_is_not_scrubbed() -> None:
    assert scrubber(["abc"])("abcdef") == "abcdef"
