"""HelloFax v1 behind the provider seam (faxgate.domain.provider), and the v1 client as
the settings describe it: the sandbox's or the real API's."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from faxgate.domain.provider import Closing, FaxLineInfo, FaxPage, FaxReport, OutgoingFax
from faxgate.hellofax.client import HelloFaxClient
from faxgate.hellofax.models import Transmission
from faxgate.settings import Settings

__all__ = ["HelloFaxProvider", "open_client"]


class HelloFaxProvider(Closing):
    """The seam's calls over a HelloFaxClient; `client` keeps v1's own calls (the account)."""

    name = "HelloFax v1"

    def __init__(self, client: HelloFaxClient, *, removes_sent: bool = True) -> None:
        self.client = client
        self.removes_sent = removes_sent

    def __repr__(self) -> str:
        return f"HelloFaxProvider({self.client!r})"

    async def send(self, fax: OutgoingFax) -> FaxReport:
        # v1 has nowhere to carry the reference.
        sent = await self.client.send(
            fax.to, fax.files, from_line=fax.from_line, **fax.cover_page()
        )
        return _answer_for(sent, fax.to.strip().lstrip("+")).report()

    async def get_fax(self, guid: str) -> FaxReport:
        return (await self.client.get_transmission(guid)).report()

    async def list_faxes(self, page: int | None = None, page_size: int | None = None) -> FaxPage:
        return (await self.client.list_transmissions(page=page, page_size=page_size)).report()

    async def next_page(self, page: FaxPage) -> FaxPage | None:
        following = await self.client.next_page(page.next_page)
        return following.report() if following is not None else None

    async def list_fax_lines(self) -> list[FaxLineInfo]:
        return [line.info() for line in await self.client.list_fax_lines()]

    async def buy_fax_line(self, area_code: str) -> FaxLineInfo:
        return (await self.client.buy_fax_line(area_code)).info()

    async def delete_fax_line(self, number: str) -> None:
        await self.client.delete_fax_line(number)

    async def area_codes(self, state: str) -> list[str]:
        return await self.client.area_codes(state)

    async def aclose(self) -> None:
        await self.client.aclose()


def _answer_for(sent: Sequence[Transmission], digits: str) -> Transmission:
    """The transmission for our one number (a send answers with one per number)."""
    for tx in sent:
        if tx.to.strip().lstrip("+") == digits:
            return tx
    return sent[0]


def open_client(
    settings: Settings,
    base_url: str | None = None,
    on_request: Callable[[str, int | str], None] | None = None,
) -> HelloFaxClient:
    """`base_url` overrides the settings' (the built-in sandbox knows its bound port)."""
    account_guid, username, password = settings.provider_credentials()
    return HelloFaxClient(
        base_url or settings.provider_base_url(),
        account_guid,
        username,
        password,
        timeout=settings.provider.timeout,
        on_request=on_request,
    )
