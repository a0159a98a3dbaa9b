"""A failed Dropbox Fax API v3 request, sorted into the same classes as v1's.

The classes are v1's own (`faxgate.hellofax.errors`), so whatever decides what happens to a
job after a failure reads both providers alike:

- `Refused`: the provider said no to this request (400, 401, 402, 403, 404, 410, 422);
  the same request will fail the same way.
- `RateLimited`: 429 `exceeded_rate`; nothing was done. `retry_after` comes from
  Retry-After, else from X-Ratelimit-Reset (Unix time).
- `Ambiguous`: 409 `conflict` ("An identical request is already being processed.") to a
  request that changes something. An identical request is one we sent before, most likely
  a send whose answer we never read; it is still under way and may yet fax the document.
  Reporting the job failed would be false, and sending again once the first one finishes
  would send it twice, so the job goes to reconcile, which finds that first fax.
  A gateway failure (502, 504) to such a request is ambiguous too, as on v1.
- `Unavailable`: 409 to a read, harmless to ask again later.
- `ProviderFault`: any other 5xx.
- `BadResponse`: a status that is neither success nor error.

Messages are for a person: plain words, the status and `error_name`, then the provider's
`error_msg` (and `error_path`), trimmed to one line. Credentials never appear: `scrub`
(see `scrubber`) runs over the provider's words before they are trimmed, so no part of a
secret survives a cut.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from faxgate.domain.provider import (
    Ambiguous,
    BadResponse,
    NotSent,
    ProviderError,
    ProviderFault,
    RateLimited,
    Refused,
    Unavailable,
    error_for_server_status,
)
from faxgate.dropbox_fax.models import ApiError
from faxgate.dropbox_fax.ratelimit import read_rate_headers
from faxgate.hellofax.errors import (
    PROVIDER_TEXT_LIMIT,
    error_for_transport,
    provider_text,
)

__all__ = [
    "Ambiguous",
    "BadResponse",
    "NotSent",
    "ProviderError",
    "ProviderFault",
    "RateLimited",
    "Refused",
    "Unavailable",
    "error_for_answer",
    "error_for_transport",
    "scrubber",
]

# Secrets shorter than this are not scrubbed from text: it would garble every message.
_MIN_SCRUBBED = 4
_REDACTED = "***"

CONFLICT: Final = "conflict"
EXCEEDED_RATE: Final = "exceeded_rate"

# The description's error names, each with its status, in plain words.
_BY_NAME: Final[Mapping[str, str]] = {
    "bad_request": "the provider refused the request",
    "unauthorized": "the provider refused the API key",
    "payment_required": "the provider requires a payment on the account",
    "forbidden": "the provider refused access (a paid API plan may be required)",
    "not_found": "the provider found no such thing on this account",
    "deleted": "the provider has deleted it",
    "unprocessable_entity": "the provider could not process the request",
}
_BY_STATUS: Final[Mapping[int, str]] = {
    400: _BY_NAME["bad_request"],
    401: _BY_NAME["unauthorized"],
    402: _BY_NAME["payment_required"],
    403: _BY_NAME["forbidden"],
    404: _BY_NAME["not_found"],
    410: _BY_NAME["deleted"],
    413: "the provider refused the upload as too large",
    422: _BY_NAME["unprocessable_entity"],
}
# A 404 or 410 names what is gone, which depends on what was asked.
_NOT_FOUND: Final[Mapping[str, str]] = {
    "get_fax": "the provider knows no such fax on this account",
    "delete_fax": "the provider knows no such fax on this account",
    "fax_files": "the provider knows no such fax on this account",
    "get_fax_line": "the provider knows no such fax line on this account",
    "delete_fax_line": "the provider knows no such fax line on this account",
    "fax_line_add_user": "the provider knows no such fax line or user",
    "fax_line_remove_user": "the provider knows no such fax line or user",
}
_DELETED: Final[Mapping[str, str]] = {
    "get_fax": "the provider has deleted this fax",
    "delete_fax": "the provider has deleted this fax",
    "fax_files": "the provider no longer keeps this fax's files",
}


def error_for_answer(
    status: int,
    body: bytes,
    *,
    endpoint: str,
    idempotent: bool,
    headers: Mapping[str, str] | None = None,
    now: float,
    scrub: Callable[[str], str] = lambda text: text,
) -> ProviderError:
    """The error for a non-success answer: its status, its body (the error envelope, or
    anything else a proxy may have said), and its headers (for the rate limit).

    `idempotent`: the request changes nothing (a GET). `now`: the current Unix time, to
    turn X-Ratelimit-Reset into a delay.
    """
    name, words = _provider_words(body, headers, scrub)
    key = name.lower()

    def said(plain: str) -> str:
        label = f"{status} {name}" if name else f"{status}"
        return f"{plain} ({label}): {words}" if words else f"{plain} ({label})"

    if 400 <= status < 500:
        if status == 429 or key == EXCEEDED_RATE:
            return RateLimited(
                said("the provider is limiting the rate"),
                status=status,
                endpoint=endpoint,
                retry_after=read_rate_headers(headers or {}).wait_from(now),
            )
        if status == 409 or key == CONFLICT:
            if idempotent:
                return Unavailable(
                    said("the provider is busy with an identical request"),
                    status=status,
                    endpoint=endpoint,
                )
            return Ambiguous(
                said(
                    "the provider is still processing an identical earlier request, "
                    "which may yet take effect"
                ),
                status=status,
                endpoint=endpoint,
            )
        return Refused(said(_refusal(status, key, endpoint)), status=status, endpoint=endpoint)
    return error_for_server_status(status, said, endpoint=endpoint, idempotent=idempotent)


def _refusal(status: int, name: str, endpoint: str) -> str:
    if status == 404 or name == "not_found":
        return _NOT_FOUND.get(endpoint, _BY_NAME["not_found"])
    if status == 410 or name == "deleted":
        return _DELETED.get(endpoint, _BY_NAME["deleted"])
    return _BY_NAME.get(name) or _BY_STATUS.get(status, "the provider refused the request")


def _provider_words(
    body: bytes, headers: Mapping[str, str] | None, scrub: Callable[[str], str]
) -> tuple[str, str]:
    """(error_name, the provider's words on one line); from the error envelope when the
    body is one, else whatever the body says (a proxy's HTML page, plain text)."""
    text = scrub(body.decode("utf-8", errors="replace"))
    try:
        error = ApiError.from_api(text)
    except ValueError:
        content_type = _header(headers, "content-type")
        return "", provider_text(text.encode(), content_type)
    words = error.error_msg
    if error.error_path:
        words = f"{words} [at {error.error_path}]" if words else f"at {error.error_path}"
    return _one_line(error.error_name, 60), _one_line(words, PROVIDER_TEXT_LIMIT)


def _header(headers: Mapping[str, str] | None, name: str) -> str:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return ""


_SPACE = re.compile(r"\s+")


def _one_line(text: str, limit: int) -> str:
    text = _SPACE.sub(" ", "".join(c if c.isprintable() else " " for c in text)).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def scrubber(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function that blanks out each secret, and the Basic credentials made of it (the
    API key as user name, an empty password), from text."""
    forms: set[str] = set()
    for secret in secrets:
        if len(secret) < _MIN_SCRUBBED:
            continue
        forms.add(secret)
        forms.add(base64.b64encode(f"{secret}:".encode()).decode("ascii"))
    ordered = sorted(forms, key=len, reverse=True)  # a longer form first, whole

    def scrub(text: str) -> str:
        for form in ordered:
            text = text.replace(form, _REDACTED)
        return text

    return scrub
