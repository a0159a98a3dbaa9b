"""What went wrong talking to HelloFax, sorted by what the caller may safely do next.

The classes are the provider seam's (faxgate.domain.provider), so whatever decides what
happens to a job after a failure reads every provider alike; this module sorts v1's
answers and transport failures into them.

Messages are meant for a person and carry the provider's own words, trimmed. They never
carry credentials: the client scrubs every message before it is raised.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from faxgate.domain.provider import (
    Ambiguous,
    BadResponse,
    NotSent,
    ProviderError,
    RateLimited,
    Refused,
    Unavailable,
    error_for_server_status,
)

__all__ = [
    "HelloFaxError",
    "error_for_status",
    "error_for_transport",
    "provider_text",
    "read_answer",
]

PROVIDER_TEXT_LIMIT = 300

_T = TypeVar("_T")


# v1's name for the base class, kept for its callers.
HelloFaxError = ProviderError


# --- the provider's own words -------------------------------------------------------------

# Keys seen in error bodies of APIs of that era, in order of preference.
_MESSAGE_KEYS = ("error", "message", "Message", "ErrorMessage", "error_message", "Error", "detail")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def provider_text(body: bytes, content_type: str = "", limit: int = PROVIDER_TEXT_LIMIT) -> str:
    """The message a provider's error body carries, on one line and at most `limit` chars."""
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if parsed is not None:
        found = _message_in(parsed)
        text = found if found is not None else json.dumps(parsed, separators=(",", ":"))
    elif "html" in content_type.lower() or text.lstrip().startswith("<"):
        title = _TITLE.search(text)
        text = html.unescape(title.group(1) if title else _TAG.sub(" ", text))
    return _trim(text, limit)


def _message_in(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        for key in _MESSAGE_KEYS:
            if key in value:
                found = _message_in(value[key])
                if found:
                    return found
    if isinstance(value, list) and value:
        return _message_in(value[0])
    return None


def _trim(text: str, limit: int) -> str:
    text = _SPACE.sub(" ", "".join(c if c.isprintable() else " " for c in text)).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --- classification -----------------------------------------------------------------------

_REFUSALS: Mapping[int, str] = {
    400: "the provider refused the request",
    401: "the provider refused the credentials",
    403: "the provider refused access to the account",
    413: "the provider refused the upload as too large",
}

# A 404 names what was not found, which depends on what was asked.
_NOT_FOUND: Mapping[str, str] = {
    "get_transmission": "the provider knows no such transmission on this account",
    "delete_fax_line": "the provider knows no such fax line on this account",
    "area_codes": "the provider knows no such state code",
}
_UNKNOWN_ACCOUNT = "the provider knows no such account"


def error_for_status(
    status: int,
    text: str,
    *,
    endpoint: str,
    idempotent: bool,
    retry_after: float | None = None,
) -> HelloFaxError:
    """The error for a non-success HTTP status; `text` is the provider's (scrubbed) words."""

    def said(plain: str) -> str:
        return f"{plain} ({status}): {text}" if text else f"{plain} ({status})"

    if status == 429:
        return RateLimited(
            said("the provider is limiting the rate"),
            status=status,
            endpoint=endpoint,
            retry_after=retry_after,
        )
    if 400 <= status < 500:
        if status == 404:
            plain = _NOT_FOUND.get(endpoint, _UNKNOWN_ACCOUNT)
        else:
            plain = _REFUSALS.get(status, "the provider refused the request")
        return Refused(said(plain), status=status, endpoint=endpoint)
    return error_for_server_status(status, said, endpoint=endpoint, idempotent=idempotent)


# These fail before a byte of the request reaches the provider.
_NEVER_LEFT: tuple[type[httpx.RequestError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)


def error_for_transport(
    exc: httpx.RequestError,
    *,
    endpoint: str,
    idempotent: bool,
    scrub: Callable[[str], str] = lambda text: text,
) -> HelloFaxError:
    """The error for a request that got no HTTP answer.

    Anything after the connection was made (a write or read timeout, a dropped connection,
    a broken response) may have come after the provider received the whole request.
    """
    detail = scrub(_trim(f"{type(exc).__name__}: {exc}", PROVIDER_TEXT_LIMIT))
    if isinstance(exc, _NEVER_LEFT):
        return NotSent(f"could not reach the provider ({detail})", endpoint=endpoint)
    if idempotent:
        return Unavailable(f"the provider did not answer ({detail})", endpoint=endpoint)
    return Ambiguous(
        f"the connection failed after the request was sent; it may have been acted on ({detail})",
        endpoint=endpoint,
    )


def read_answer(
    endpoint: str, response: httpx.Response, parse: Callable[[Any], _T], scrub: Callable[[str], str]
) -> _T:
    """Parse a success answer; an unreadable one is a fault (or, after a change, Ambiguous)."""
    try:
        return parse(response.json())
    except (ValueError, TypeError) as exc:
        why = scrub(_why_unreadable(exc, response))
        error: ProviderError
        if response.request.method == "GET":
            error = BadResponse(
                f"the provider's answer could not be read: {why}",
                status=response.status_code,
                endpoint=endpoint,
            )
        else:
            error = Ambiguous(
                f"the provider accepted the request but its answer could not be read: {why}",
                status=response.status_code,
                endpoint=endpoint,
            )
        raise error from exc


def _why_unreadable(exc: Exception, response: httpx.Response) -> str:
    if isinstance(exc, ValidationError):
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)[:3]
        ]
        return "; ".join(problems)
    try:
        response.json()
    except ValueError:
        return f"not JSON: {provider_text(response.content, limit=120) or 'an empty body'}"
    return provider_text(str(exc).encode(), limit=120)
