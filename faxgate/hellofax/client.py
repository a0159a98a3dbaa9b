"""An async client for every endpoint of the HelloFax v1 API.

One `httpx.AsyncClient` per `HelloFaxClient`, HTTP basic auth, JSON answers read by the
tolerant models in `models.py`. Failures are raised as the classes in `errors.py`, chosen
by what the caller may safely do next; see there.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar, Unpack
from urllib.parse import quote

import httpx

from faxgate.domain.provider import Ambiguous, BadResponse
from faxgate.hellofax.errors import (
    error_for_status,
    provider_text,
)
from faxgate.hellofax.http import ApiClient, RequestParts, upload_parts
from faxgate.hellofax.models import (
    Account,
    FaxLine,
    Transmission,
    TransmissionPage,
    Upload,
    area_codes_from_api,
    fax_lines_from_api,
    transmissions_from_api,
)

__all__ = ["HelloFaxClient"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Secrets shorter than this are not scrubbed from text: it would garble every message.
_MIN_SCRUBBED = 4
_REDACTED = "***"


class HelloFaxClient(ApiClient):
    """The HelloFax v1 API for one account (its requests counted as ApiClient says)."""

    def __init__(
        self,
        base_url: str,
        account_guid: str,
        username: str,
        password: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str | None = None,
        on_request: Callable[[str, int | str], None] | None = None,
    ) -> None:
        super().__init__(
            "HelloFax",
            base_url,
            (username, password),
            timeout=timeout,
            transport=transport,
            user_agent=user_agent,
            on_request=on_request,
        )
        guid = account_guid.strip()
        if not guid:
            raise ValueError("the HelloFax account GUID is empty")
        self._account_guid = guid
        self._account_url = f"{self._base}/Accounts/{quote(guid, safe='')}"
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._secrets = tuple(
            secret for secret in (password, username, token) if len(secret) >= _MIN_SCRUBBED
        )

    @property
    def account_guid(self) -> str:
        return self._account_guid

    def __repr__(self) -> str:
        return f"HelloFaxClient(base_url={self._base!r}, account_guid={self._account_guid!r})"

    # --- account --------------------------------------------------------------------------

    async def get_account(self) -> Account:
        response = await self._call("get_account", "GET", self._account_url)
        return self._read("get_account", response, Account.from_api)

    async def update_account(
        self, *, inbound_url: str | None = None, outbound_url: str | None = None
    ) -> Account:
        """Set the default callback URLs; only the ones given change."""
        form = _given(
            {
                "DefaultInboundFaxCallbackUrl": inbound_url,
                "DefaultOutboundFaxCallbackUrl": outbound_url,
            }
        )
        if not form:
            raise ValueError("update_account needs an inbound or an outbound URL")
        response = await self._call("update_account", "POST", self._account_url, data=form)
        if not response.content.strip():
            # Nothing to read back: ask, rather than guess what the provider stored.
            return await self.get_account()
        return self._read("update_account", response, Account.from_api)

    # --- fax lines ------------------------------------------------------------------------

    async def list_fax_lines(self) -> list[FaxLine]:
        response = await self._call("list_fax_lines", "GET", f"{self._account_url}/FaxLines")
        return self._read("list_fax_lines", response, fax_lines_from_api)

    async def buy_fax_line(self, area_code: str | int) -> FaxLine:
        code = str(area_code).strip()
        if not code:
            raise ValueError("an area code is needed to buy a fax line")
        response = await self._call(
            "buy_fax_line", "POST", f"{self._account_url}/FaxLines", data={"AreaCode": code}
        )
        return self._read("buy_fax_line", response, FaxLine.from_api)

    async def delete_fax_line(self, number: str) -> None:
        url = f"{self._account_url}/FaxLines/{_segment(number, 'fax line number')}"
        await self._call("delete_fax_line", "DELETE", url)

    async def area_codes(self, state_code: str) -> list[str]:
        """Area codes of a US state (two letters) that have numbers free to buy."""
        state = state_code.strip().upper()
        if not state:
            raise ValueError("a state code is needed")
        response = await self._call(
            "area_codes", "GET", f"{self._base}/AreaCodes", params={"StateCode": state}
        )
        return self._read("area_codes", response, area_codes_from_api)

    # --- transmissions --------------------------------------------------------------------

    async def send(
        self,
        to: str | Sequence[str],
        files: Sequence[Upload],
        *,
        from_line: str | None = None,
        cover_to: str | None = None,
        cover_from: str | None = None,
        cover_message: str | None = None,
    ) -> list[Transmission]:
        """Send the files as one fax to each number; one transmission per number comes back.

        A Path upload is opened here (so a missing file fails before anything is sent) and
        streamed. A success status whose body cannot be read raises Ambiguous: the provider
        has taken the fax, but we cannot tell which transmission it became.
        """
        numbers = [to] if isinstance(to, str) else list(to)
        if not numbers or not all(number.strip() for number in numbers):
            raise ValueError("a fax needs at least one destination number")
        cover = {
            "CoverPageTo": cover_to,
            "CoverPageFrom": cover_from,
            "CoverPageMessage": cover_message,
        }
        if not files and not any(cover.values()):
            raise ValueError("a fax needs at least one file or a cover page")

        stripped = [number.strip() for number in numbers]
        form = dict(zip(_field_names("To", len(stripped)), stripped, strict=True))
        if from_line is not None:
            form["From"] = from_line
        form.update({key: value for key, value in cover.items() if value is not None})

        with contextlib.ExitStack() as opened:
            parts = upload_parts(files, _field_names("file", len(files)), opened)
            response = await self._call(
                "send",
                "POST",
                f"{self._account_url}/Transmissions",
                data=form,
                files=parts or None,
            )
        sent = self._read("send", response, transmissions_from_api)
        if not sent:
            raise Ambiguous(
                "the provider accepted the fax but named no transmission",
                status=response.status_code,
                endpoint="send",
            )
        return sent

    async def get_transmission(self, guid: str) -> Transmission:
        url = f"{self._account_url}/Transmissions/{_segment(guid, 'transmission GUID')}"
        response = await self._call("get_transmission", "GET", url)
        return self._read("get_transmission", response, Transmission.from_api)

    async def list_transmissions(
        self, page: int | None = None, page_size: int | None = None
    ) -> TransmissionPage:
        params = _given({"Page": page, "PageSize": page_size})
        return await self._get_page(f"{self._account_url}/Transmissions", params)

    async def next_page(self, page: TransmissionPage | str | None) -> TransmissionPage | None:
        """The page `page.next_page_uri` (or the link given) points to; None on the last page."""
        link = page.next_page_uri if isinstance(page, TransmissionPage) else page
        if link is None:
            return None
        return await self._get_page(_resolve(self._base, link))

    async def iter_transmissions(self, page_size: int | None = None) -> AsyncIterator[Transmission]:
        """Every transmission of the account, page after page, each once.

        Stops at a missing next link, and also at one already followed, an empty page or a
        page number that does not advance, so a provider bug cannot loop it forever.
        """
        page = await self.list_transmissions(page_size=page_size)
        followed: set[str] = set()
        yielded: set[str] = set()
        while True:
            for transmission in page.transmissions:
                if transmission.guid not in yielded:
                    yielded.add(transmission.guid)
                    yield transmission
            if page.next_page_uri is None or not page.transmissions:
                return
            url = _resolve(self._base, page.next_page_uri)
            if url in followed:
                return
            followed.add(url)
            following = await self._get_page(url)
            if _not_after(following.page, page.page):
                return
            page = following

    async def _get_page(self, url: str, params: dict[str, int] | None = None) -> TransmissionPage:
        response = await self._call("list_transmissions", "GET", url, params=params)
        return self._read("list_transmissions", response, TransmissionPage.from_api)

    # --- plumbing -------------------------------------------------------------------------

    async def _call(
        self, endpoint: str, method: str, url: str, **parts: Unpack[RequestParts]
    ) -> httpx.Response:
        """One request; a non-success answer or a transport failure becomes a HelloFaxError."""
        response = await self._send(endpoint, method, url, **parts)
        if response.is_success:
            return response
        text = provider_text(response.content, response.headers.get("content-type", ""))
        raise error_for_status(
            response.status_code,
            self._scrub(text),
            endpoint=endpoint,
            idempotent=method == "GET",
            retry_after=_retry_after(response),
        )

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text


def _resolve(base_url: str, uri: str) -> str:
    """A Uri field as an absolute URL: "/v1/..." is relative to the base URL's origin.

    Links to another scheme, host or port are refused: following them would hand the
    credentials to whoever wrote the link.
    """
    base = httpx.URL(base_url + "/")
    target = base.join(uri.strip())
    if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
        raise BadResponse(
            "the provider linked to another host; the link was not followed",
            endpoint="list_transmissions",
        )
    return str(target)


def _segment(value: str, what: str) -> str:
    """A value as one URL path segment: "../" and "?" cannot steer the request elsewhere."""
    value = value.strip()
    if not value:
        raise ValueError(f"the {what} is empty")
    return quote(value, safe="")


def _given(fields: dict[str, _T | None]) -> dict[str, _T]:
    """The fields whose value was given (is not None)."""
    return {name: value for name, value in fields.items() if value is not None}


def _not_after(page: int | None, previous: int | None) -> bool:
    """Whether a page number fails to advance (unknown numbers never stop the walk)."""
    return page is not None and previous is not None and page <= previous


def _field_names(name: str, count: int) -> list[str]:
    """One value as `name`, several as `name[0]`, `name[1]`, … (the provider's array form)."""
    if count == 1:
        return [name]
    return [f"{name}[{index}]" for index in range(count)]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None  # absent, or an HTTP date: leave the delay to the caller's policy
    return max(seconds, 0.0)
