"""An async client for the Dropbox Fax API v3, behind the provider seam.

One `httpx.AsyncClient` per `DropboxFaxClient`: HTTP Basic with the API key as user name
and an empty password, answers read by the tolerant models in `models.py`, failures sorted
by `errors.py` into the seam's classes. Every request first takes its turn from one
`RateLimiter` (100 a minute, 10 in test mode), and every answer's rate limit headers (and
any 429) feed it back, so sends, polls and the CLI's calls of one daemon share one budget
and stay under the provider's rate by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, Unpack
from urllib.parse import quote

import httpx

from faxgate.domain.provider import (
    FaxLineInfo,
    FaxPage,
    FaxReport,
    OutgoingFax,
)
from faxgate.dropbox_fax.errors import error_for_answer, scrubber
from faxgate.dropbox_fax.models import (
    REFERENCE_PREFIX,
    Account,
    Fax,
    FaxAnswer,
    FaxLine,
    FaxLineAnswer,
    FaxLinePage,
    area_codes_from_api,
)
from faxgate.dropbox_fax.models import FaxPage as FaxListAnswer
from faxgate.dropbox_fax.ratelimit import RateLimiter, RateLimitHeaders, read_rate_headers
from faxgate.hellofax.http import ApiClient, RequestParts, upload_parts

__all__ = ["DEFAULT_BASE_URL", "DropboxFaxClient"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_BASE_URL: Final = "https://api.hellosign.com/v3"
MAX_PAGE_SIZE: Final = 100


class DropboxFaxClient(ApiClient):
    """The Dropbox Fax API v3 for one account, one API key (its requests counted as
    ApiClient says)."""

    name = "Dropbox Fax API v3"

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        test_mode: bool = False,
        removes_sent: bool = True,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: RateLimiter | None = None,
        rate_window: float | None = None,
        user_agent: str | None = None,
        on_request: Callable[[str, int | str], None] | None = None,
    ) -> None:
        if not api_key.strip():
            raise ValueError("the Dropbox Fax API key is empty")
        super().__init__(
            "Dropbox Fax",
            base_url,
            (api_key, ""),
            timeout=timeout,
            transport=transport,
            user_agent=user_agent,
            on_request=on_request,
        )
        self.test_mode = test_mode
        # Whether v3 removes a sent fax (a later get: 404) is not published; faxgate reads
        # it as v1 does unless the settings say the provider keeps its faxes.
        self.removes_sent = removes_sent
        self._scrubber = scrubber([api_key])
        # `rate_window`: a sandbox's shortened minute; the real provider's is 60 s.
        self._limiter = limiter or RateLimiter.for_mode(
            test_mode=test_mode, clock=time.time, window=rate_window or 60.0
        )

    def __repr__(self) -> str:
        return f"DropboxFaxClient(base_url={self._base!r}, test_mode={self.test_mode!r})"

    # --- faxes ----------------------------------------------------------------------------

    async def send(self, fax: OutgoingFax) -> FaxReport:
        """One fax to one number. An answer that cannot be read raises Ambiguous."""
        if not fax.to.strip():
            raise ValueError("a fax needs a destination number")
        cover = {
            "cover_page_to": fax.cover_to,
            "cover_page_from": fax.cover_from,
            "cover_page_message": fax.cover_message,
        }
        if not fax.files and not any(cover.values()):
            raise ValueError("a fax needs at least one file or a cover page")
        form = {"recipient": fax.to.strip().lstrip("+"), "test_mode": _flag(self.test_mode)}
        if fax.from_line:
            form["sender"] = fax.from_line
        if fax.reference:
            form["title"] = f"{REFERENCE_PREFIX}{fax.reference}"
        form.update({key: value for key, value in cover.items() if value})
        with contextlib.ExitStack() as opened:
            parts = upload_parts(fax.files, ["files[]"] * len(fax.files), opened)
            if parts:
                response = await self._call("send", "POST", "/fax/send", data=form, files=parts)
            else:  # a cover page alone: JSON, the other body the description takes
                body = form | {"test_mode": self.test_mode}
                response = await self._call("send", "POST", "/fax/send", json=body)
        return self._read("send", response, FaxAnswer.from_api).fax.report()

    async def get_fax(self, guid: str) -> FaxReport:
        return (await self.fax(guid)).report()

    async def fax(self, fax_id: str) -> Fax:
        """The fax as v3 writes it (its title, metadata, every transmission)."""
        response = await self._call("get_fax", "GET", f"/fax/{_segment(fax_id, 'fax id')}")
        return self._read("get_fax", response, FaxAnswer.from_api).fax

    async def list_faxes(self, page: int | None = None, page_size: int | None = None) -> FaxPage:
        number = max(page or 1, 1)
        size = min(max(page_size or 20, 1), MAX_PAGE_SIZE)
        params = {"page": number, "page_size": size}
        response = await self._call("list_faxes", "GET", "/fax/list", params=params)
        read = self._read("list_faxes", response, FaxListAnswer.from_api)
        info = read.list_info
        # The next page's number and size, as next_page() asks for it.
        following = None if info.is_last else f"{(info.page or number) + 1}:{size}"
        faxes = tuple(fax.report() for fax in read.faxes)
        return FaxPage(faxes, info.page or number, following)

    async def next_page(self, page: FaxPage) -> FaxPage | None:
        if page.next_page is None:
            return None
        number, _, size = page.next_page.partition(":")
        return await self.list_faxes(page=int(number), page_size=int(size or 0) or None)

    async def download(self, fax_id: str) -> bytes:
        """The fax's final PDF (Refused with 410 once the provider no longer keeps it)."""
        url = f"/fax/files/{_segment(fax_id, 'fax id')}"
        headers = {"Accept": "application/pdf"}
        response = await self._call("fax_files", "GET", url, headers=headers)
        return response.content

    async def delete_fax(self, fax_id: str) -> None:
        await self._call("delete_fax", "DELETE", f"/fax/{_segment(fax_id, 'fax id')}")

    # --- the account ----------------------------------------------------------------------

    async def account(self) -> Account:
        response = await self._call("get_account", "GET", "/account")
        return self._read("get_account", response, Account.from_api)

    async def set_callback_url(self, url: str) -> Account:
        """Where the provider posts the account's events (faxgate's events URL)."""
        body = {"callback_url": url}
        response = await self._call("update_account", "PUT", "/account", json=body)
        return self._read("update_account", response, Account.from_api)

    # --- fax lines ------------------------------------------------------------------------

    async def area_codes(self, state: str) -> list[str]:
        """Area codes of a US state with numbers free to buy (the seam's question)."""
        return await self.area_codes_in("US", state=state)

    async def area_codes_in(
        self,
        country: str,
        *,
        state: str | None = None,
        province: str | None = None,
        city: str | None = None,
    ) -> list[str]:
        """Area codes with numbers free to buy in a country (US, CA, UK)."""
        given = {"country": country, "state": state, "province": province, "city": city}
        params = {key: value.strip().upper() for key, value in given.items() if value}
        if "city" in params and city:
            params["city"] = city.strip()
        response = await self._call("area_codes", "GET", "/fax_line/area_codes", params=params)
        return self._read("area_codes", response, area_codes_from_api)

    async def create_line(
        self,
        area_code: str,
        *,
        country: str = "US",
        city: str | None = None,
        account_id: str | None = None,
    ) -> FaxLine:
        code = area_code.strip()
        if not code.isdigit():
            raise ValueError("an area code is needed to buy a fax line")
        body = _present({"area_code": int(code), "country": country, "city": city})
        body |= _present({"account_id": account_id})
        response = await self._call("create_fax_line", "POST", "/fax_line/create", json=body)
        return self._read("create_fax_line", response, FaxLineAnswer.from_api).fax_line

    async def buy_fax_line(self, area_code: str) -> FaxLineInfo:
        return _line_info(await self.create_line(area_code))

    async def fax_line(self, number: str) -> FaxLine:
        params = {"number": _digits(number)}
        response = await self._call("get_fax_line", "GET", "/fax_line", params=params)
        return self._read("get_fax_line", response, FaxLineAnswer.from_api).fax_line

    async def list_fax_lines(self) -> list[FaxLineInfo]:
        """Every line of the account, page after page."""
        lines: list[FaxLineInfo] = []
        for number in range(1, 1000):  # bounded: a provider bug cannot loop it forever
            params = {"page": number, "page_size": MAX_PAGE_SIZE}
            response = await self._call("list_fax_lines", "GET", "/fax_line/list", params=params)
            page = self._read("list_fax_lines", response, FaxLinePage.from_api)
            lines.extend(_line_info(line) for line in page.fax_lines)
            if page.list_info.is_last or not page.fax_lines:
                break
        return lines

    async def delete_fax_line(self, number: str) -> None:
        body = {"number": _digits(number)}
        await self._call("delete_fax_line", "DELETE", "/fax_line", json=body)

    async def add_user(
        self, number: str, *, account_id: str | None = None, email: str | None = None
    ) -> FaxLine:
        return await self._line_user("fax_line_add_user", number, account_id, email)

    async def remove_user(
        self, number: str, *, account_id: str | None = None, email: str | None = None
    ) -> FaxLine:
        return await self._line_user("fax_line_remove_user", number, account_id, email)

    async def _line_user(
        self, endpoint: str, number: str, account_id: str | None, email: str | None
    ) -> FaxLine:
        if not (account_id or email):
            raise ValueError("name the user by account id or email address")
        body = {"number": _digits(number)} | _present(
            {"account_id": account_id, "email_address": email}
        )
        path = "/fax_line/" + endpoint.removeprefix("fax_line_")
        response = await self._call(endpoint, "PUT", path, json=body)
        return self._read(endpoint, response, FaxLineAnswer.from_api).fax_line

    # --- plumbing -------------------------------------------------------------------------

    async def _call(
        self, endpoint: str, method: str, path: str, **parts: Unpack[RequestParts]
    ) -> httpx.Response:
        """One request in its turn; a failure becomes one of the seam's errors."""
        ticket = await self._take_turn()
        try:
            response = await self._send(endpoint, method, self._base + path, **parts)
        except BaseException:
            self._limiter.finish(ticket, RateLimitHeaders())  # it may have arrived
            raise
        self._limiter.finish(
            ticket, read_rate_headers(response.headers), rate_limited=response.status_code == 429
        )
        if response.is_success:
            return response
        raise error_for_answer(
            response.status_code,
            response.content,
            endpoint=endpoint,
            idempotent=method == "GET",
            headers=response.headers,
            now=time.time(),
            scrub=self._scrub,
        )

    async def _take_turn(self) -> int | None:
        """Wait until the limiter lets a request leave (another caller may take a slot
        freed meanwhile: then wait again); the request's ticket."""
        turn = self._limiter.take()
        while turn.wait > 0:
            await asyncio.sleep(turn.wait)
            turn = self._limiter.take()
        return turn.ticket

    def _scrub(self, text: str) -> str:
        return self._scrubber(text)


def _line_info(line: FaxLine) -> FaxLineInfo:
    return FaxLineInfo(line.number, line.model_dump(mode="json"))


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _present(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _digits(number: str) -> str:
    digits = number.strip().lstrip("+")
    if not digits:
        raise ValueError("a fax line number is needed")
    return digits


def _segment(value: str, what: str) -> str:
    """A value as one URL path segment: "../" and "?" cannot steer the request elsewhere."""
    value = value.strip()
    if not value:
        raise ValueError(f"the {what} is empty")
    return quote(value, safe="")
