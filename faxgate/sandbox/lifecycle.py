"""A fax's life at the provider: the outcome rules, the timings, the callback retry schedule.

Pure rules, no IO. Every timing is in realistic seconds and is multiplied by the sandbox's
speed. docs/sandbox.md repeats the rule table; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from faxgate.sandbox.limits import MAX_PAGES
from faxgate.sandbox.records import Step

PENDING = "P"  # converting
TRANSMITTING = "T"
SENT = "S"
ERROR = "E"
ON_HOLD = "H"
IN_FLIGHT = frozenset({PENDING, TRANSMITTING})
FINAL = frozenset({SENT, ERROR, ON_HOLD})


@dataclass(frozen=True)
class Outcome:
    status: str  # S, E or H
    error_code: str | None
    transmits: bool  # False: it ends straight after conversion
    transmit_seconds: float  # how long T lasts (0 when it does not transmit)
    rule: str  # which rule decided, for people reading the inspection


# Destination numbers ending in these digits fail in the documented ways, after dialling for
# the given time. Any other number is sent, except 0007 which takes five times as long.
NUMBER_ENDINGS: dict[str, tuple[str, float]] = {
    "0001": ("B", 25.0),  # busy
    "0002": ("N", 75.0),  # no answer: it rang out
    "0003": ("A", 8.0),  # unallocated number
    "0004": ("D", 30.0),  # disconnected or unreachable
    "0005": ("L", 3.0),  # blacklisted
    "0006": ("U", 45.0),  # unknown: a human answered
}
SLOW_ENDING = "0007"
SLOW_FACTOR = 5.0

CONVERSION_BASE = 8.0
CONVERSION_PER_PAGE = 2.0
TRANSMISSION_BASE = 20.0  # dialling and handshake
TRANSMISSION_PER_PAGE = 40.0

# After a callback answered anything but 200: wait this long before the next try, then
# the next delay, and so on; after the last one the callback is abandoned.
CALLBACK_RETRY_DELAYS: tuple[float, ...] = (
    15 * 60.0,
    45 * 60.0,
    90 * 60.0,
    165 * 60.0,
    240 * 60.0,
    495 * 60.0,
    990 * 60.0,
)


def decide(to: str, *, documents_readable: bool, pages: int, confirmed: bool) -> Outcome:
    """The outcome of an outbound fax, by the first rule that applies."""
    if not confirmed:
        return Outcome(ON_HOLD, None, False, 0.0, "account unconfirmed: on hold after P")
    if not documents_readable:
        return Outcome(ERROR, "U", False, 0.0, "a document is not readable: E/U after P")
    if pages > MAX_PAGES:
        return Outcome(ERROR, "U", False, 0.0, f"more than {MAX_PAGES} pages: E/U after P")
    ending = NUMBER_ENDINGS.get(to[-4:])
    if ending is not None:
        code, seconds = ending
        return Outcome(ERROR, code, True, seconds, f"number ends {to[-4:]}: E/{code} after T")
    seconds = TRANSMISSION_BASE + TRANSMISSION_PER_PAGE * pages
    if to.endswith(SLOW_ENDING):
        return Outcome(SENT, None, True, seconds * SLOW_FACTOR, "number ends 0007: slow S")
    return Outcome(SENT, None, True, seconds, "sent")


def line_in_use() -> Outcome:
    """A fax to a number another fax is still being sent to (the one_call_per_line fault):
    the line is busy, as a fax machine answers one call at a time."""
    code, seconds = NUMBER_ENDINGS["0001"]
    return Outcome(ERROR, code, True, seconds, "line in use by another fax: E/B after T")


def plan(outcome: Outcome, pages: int, speed: float) -> tuple[Step, ...]:
    """The moves after P (the status a fax is created with), delays scaled by speed."""
    conversion = (CONVERSION_BASE + CONVERSION_PER_PAGE * pages) * speed
    if not outcome.transmits:
        return (Step(outcome.status, outcome.error_code, conversion),)
    return (
        Step(TRANSMITTING, None, conversion),
        Step(outcome.status, outcome.error_code, outcome.transmit_seconds * speed),
    )


def billed_pages(status: str, pages: int) -> int:
    """Pages are counted once converted, and billed only if sent (a failure bills 0)."""
    return pages if status in (TRANSMITTING, SENT) else 0


def callback_retry_after(attempts_made: int, speed: float) -> float | None:
    """Seconds until the next try after `attempts_made` failed ones; None to give up."""
    if attempts_made < 1 or attempts_made > len(CALLBACK_RETRY_DELAYS):
        return None
    return CALLBACK_RETRY_DELAYS[attempts_made - 1] * speed
