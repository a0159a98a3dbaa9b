"""The HelloFax client as the settings describe it: the sandbox's or the real API's."""

from __future__ import annotations

from faxgate.hellofax.client import HelloFaxClient
from faxgate.settings import Settings


def open_client(settings: Settings) -> HelloFaxClient:
    account_guid, username, password = settings.provider_credentials()
    return HelloFaxClient(
        settings.provider_base_url(),
        account_guid,
        username,
        password,
        timeout=settings.provider.timeout,
    )
