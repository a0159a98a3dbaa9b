"""What every channel's reporter is: one small Protocol the notifier calls.

A reporter tells one outbox row's news on its channel (a mail reply, a hot folder's
result, an inbound fax's delivery). It returns once that is done; it raises
NothingToDeliver when there is nobody to tell, PermanentFailure when it never can be done,
and anything else to be tried again later. Delivery is at least once, so a reporter is
idempotent.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from faxgate.domain.jobs import Job, Notification


class Reporter(Protocol):
    def __call__(self, notification: Notification, job: Job | None, /) -> Awaitable[None]: ...


class PermanentFailure(Exception):
    """Raised by a reporter: this notification can never be delivered; set it aside."""


class NothingToDeliver(Exception):
    """Raised by a reporter: there is nobody to tell; the notification is done."""
