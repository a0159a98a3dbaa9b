"""Settings that work but cost something the operator should know: said at every start and
by `faxgate config check`. Unlike preflight problems, these never stop faxgate."""

from __future__ import annotations

from faxgate.settings import Settings

NO_CALLBACKS = (
    "provider kind = hellofax without http.public_url: the provider cannot post its callbacks"
    " to faxgate, so no fax's outcome can be confirmed. HelloFax removes a fax once it is"
    " sent, so polling finds only that it is gone: such a fax ends presumed_sent (most"
    " probably sent, not confirmed), a failure the provider also removed looks the same, and"
    " a send whose answer was lost more often ends uncertain. Set http.public_url to the"
    " address where the provider reaches this faxgate (see docs/operations.md)."
)


NO_EVENTS = (
    "provider kind = dropbox_fax without http.public_url: the provider cannot post its events"
    " to faxgate, so every outcome waits for a poll (slower, and more requests under the"
    " provider's rate limit). Set http.public_url to the address where the provider reaches"
    " this faxgate, and its events URL on the provider's API settings page (see"
    " docs/providers.md)."
)


def setup_warnings(settings: Settings) -> list[str]:
    """What these settings cost, in plain words; [] when nothing."""
    found = []
    if settings.provider.kind == "hellofax" and not settings.http.public_url:
        found.append(NO_CALLBACKS)
    if settings.provider.kind == "dropbox_fax" and not settings.http.public_url:
        found.append(NO_EVENTS)
    return found
