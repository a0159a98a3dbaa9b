"""Which outbound faxes the provider removes, and when: the one place that holds this guess.

KNOWN (HelloFax's getting-started page, note D under step 8): faxes sent through the
API "are not stored on our servers once the fax has successfully been sent - they are
removed". REPORTED (a later help page): asking for such a transmission then answers 404
(each face answers in its own error shape).

GUESSED: when it happens (here: once the fax's callback was answered with 200, or given
up after the last retry; at once when the account has no outbound callback URL), and
whether failed faxes (E) go too (the page does not say: a switch). Removed faxes leave
GET and the list; the sandbox's inspection endpoint still sees them.
"""

from __future__ import annotations

from enum import StrEnum

from faxgate.sandbox.lifecycle import ERROR, SENT


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
