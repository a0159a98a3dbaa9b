"""Which outbound faxes the provider removes, and when: the one place that holds this guess.

KNOWN (the provider's getting-started page, note D under step 8): faxes sent through the
API "are not stored on our servers once the fax has successfully been sent - they are
removed". REPORTED (a later help page): asking for such a transmission then answers
`404 {"status_code":404,"message":"Transmission not found or not accessible."}`.

GUESSED: when it happens (here: once the fax's callback was answered with 200, or given
up after the last retry; at once when the account has no outbound callback URL), and
whether failed faxes (E) go too (the page does not say: a switch). Removed faxes leave
GET and the list; the sandbox's inspection endpoint still sees them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

from faxgate.hellofax.sandbox.lifecycle import ERROR, SENT

# The provider's answer for a transmission it removed (or never had: it cannot tell them apart).
NOT_FOUND_MESSAGE: Final = "Transmission not found or not accessible."


class Removal(StrEnum):
    SENT = "sent"  # the provider's stated behaviour: a fax that reached S is removed
    SENT_AND_FAILED = "sent_and_failed"  # E ones too
    NOTHING = "nothing"  # every transmission stays readable (the sandbox before this rule)


def removes(mode: Removal, status: str) -> bool:
    """Whether an outbound transmission that ended with `status` is removed under `mode`."""
    if mode is Removal.SENT:
        return status == SENT
    if mode is Removal.SENT_AND_FAILED:
        return status in (SENT, ERROR)
    return False


def removed_at_once(outbound_callback_url: str | None) -> bool:
    """Without a callback to answer, a fax is removed as soon as it ends; with one, once
    the callback was answered (or given up)."""
    return not outbound_callback_url


def not_found() -> dict[str, Any]:
    """The body of the 404: the provider's own shape, not the sandbox's usual error shape."""
    return {"status_code": 404, "message": NOT_FOUND_MESSAGE}
