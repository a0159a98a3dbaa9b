"""The HelloFax client as the settings describe it: the sandbox's or the real API's."""

from __future__ import annotations

from collections.abc import Callable

from faxgate.hellofax.client import HelloFaxClient
from faxgate.settings import Settings


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
