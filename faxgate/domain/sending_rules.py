"""Sending rules: when, how often and in what order faxes may go. Pure rules, no IO.

A fax machine answers one call at a time, and offices have rules a fax gateway must keep:
no faxes to a practice at night, no 50-page fax to a number that only takes 10, a cap per
sender, urgent ones first. The rules are a list; the first whose match fits a job is the
job's rule (no match: no limits but the provider's room and one call per number).

Each due job is judged on its own (`judge`): sent, refused by its rule (with the reason
the reply or result file carries), or told to wait until a moment with the reason people
see ("waiting for 08:00 in America/New_York"). The jobs that may go are then put in the
order the provider's room is shared in (`in_sending_order`): higher priority first, and
within a priority the senders take turns, so one sender's batch of 1,000 does not hold
another's single fax behind it. The dispatcher keeps a waiting job out of the due set
until its moment (its `not_before`), so a cycle judges only the head of the queue and its
cost stays flat however long the queue grows.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import NumberParseException, timezone

__all__ = [
    "Candidate",
    "Hours",
    "Match",
    "Refuse",
    "Rule",
    "SenderUse",
    "Wait",
    "destination_zone",
    "first_match",
    "in_sending_order",
    "judge",
    "one_call_per_number",
]

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Hours:
    """When faxes may go, in the destination's local time. `end` before `start` spans
    midnight (22:00 to 06:00); `days` are the days a window opens on (Monday is 0)."""

    start: time
    end: time
    days: frozenset[int] = frozenset(range(7))

    def is_open(self, local: datetime) -> bool:
        moment, today = local.time(), local.weekday()
        if self.start <= self.end:
            return today in self.days and self.start <= moment < self.end
        yesterday = (today - 1) % 7  # after midnight, the window opened the day before
        return (today in self.days and moment >= self.start) or (
            yesterday in self.days and moment < self.end
        )

    def next_open(self, local: datetime) -> datetime:
        """The first opening after `local` (which is outside the window), in its zone."""
        zone = local.tzinfo
        for ahead in range(8):
            day: date = local.date() + timedelta(days=ahead)
            if day.weekday() not in self.days:
                continue
            opening = datetime.combine(day, self.start, tzinfo=zone)
            if opening > local:
                return opening
        raise ValueError("allowed hours that never open")  # `days` empty: refused by settings

    def describe(self) -> str:
        span = f"{self.start:%H:%M} to {self.end:%H:%M}"
        if len(self.days) == 7:
            return span
        return span + " on " + ", ".join(_WEEKDAYS[day] for day in sorted(self.days))


@dataclass(frozen=True, slots=True)
class Match:
    """Which jobs a rule is for; empty fields match everything. Numbers are E.164 numbers
    or prefixes ("+1212"); countries two-letter codes; senders an address or "@domain"."""

    numbers: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    senders: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()

    def fits(self, job: Candidate) -> bool:
        if self.numbers and not job.number.startswith(self.numbers):
            return False
        if self.countries and _country(job.number) not in self.countries:
            return False
        if self.senders and not _sender_fits(job.sender, self.senders):
            return False
        return not self.folders or _folder_fits(job.folder, self.folders)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    match: Match = Match()
    hours: Hours | None = None
    max_pages: int | None = None
    per_sender_hour: int | None = None
    per_sender_day: int | None = None
    priority: int = 0  # higher goes first; a job's own request (urgent, bulk) adds to it
    busy_retries: int | None = None  # calls again after a busy line (None: the default)
    no_answer_retries: int | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the rules read of a due job."""

    job_id: str
    number: str  # E.164
    sender: str | None = None  # the mail sender, or None (a hot folder, the CLI)
    folder: str | None = None  # the hot folder it came from
    pages: int | None = None  # None: not counted (yet)
    priority: int = 0  # asked for by the job: +1 urgent, -1 bulk

    @property
    def source(self) -> str:
        """Who takes turns with whom: a sender, a folder, or everyone else together."""
        return self.sender or (f"folder:{self.folder}" if self.folder else "")


@dataclass(frozen=True, slots=True)
class SenderUse:
    """Faxes a source has had sent: the times of those in the last day, oldest first."""

    sent_at: Sequence[datetime] = ()

    def within(self, now: datetime, span: timedelta) -> list[datetime]:
        return [moment for moment in self.sent_at if moment > now - span]


@dataclass(frozen=True, slots=True)
class Wait:
    until: datetime
    why: str
    kind: str = "hours"  # for the metrics: "hours" or "sender_limit"


@dataclass(frozen=True, slots=True)
class Refuse:
    why: str


def first_match(rules: Iterable[Rule], job: Candidate) -> Rule | None:
    return next((rule for rule in rules if rule.match.fits(job)), None)


def judge(
    job: Candidate,
    rule: Rule | None,
    now: datetime,
    *,
    use: SenderUse = SenderUse(),
    fallback_zone: str = "UTC",
) -> Wait | Refuse | None:
    """None: the job may go now (its number's turn and the provider's room aside)."""
    if rule is None:
        return None
    if rule.max_pages is not None and job.pages is not None and job.pages > rule.max_pages:
        return Refuse(
            f"the rule {rule.name!r} allows at most {rule.max_pages} pages to this number;"
            f" this fax has {job.pages}"
        )
    if rule.hours is not None:
        zone = destination_zone(job.number, fallback_zone)
        local = now.astimezone(zone)
        if not rule.hours.is_open(local):
            opening = rule.hours.next_open(local)
            return Wait(
                opening.astimezone(UTC),
                f"waiting for {opening:%H:%M} in {zone.key} (the rule {rule.name!r} allows"
                f" {rule.hours.describe()})",
            )
    for limit, span, per in (
        (rule.per_sender_hour, HOUR, "an hour"),
        (rule.per_sender_day, DAY, "a day"),
    ):
        if limit is None:
            continue
        recent = use.within(now, span)
        if len(recent) >= limit:
            # When the oldest counted send leaves the span, there is room for one more.
            return Wait(
                recent[len(recent) - limit] + span,
                f"the sender limit of {limit} {per} is reached (rule {rule.name!r})",
                "sender_limit",
            )
    return None


def in_sending_order(jobs: Sequence[tuple[Candidate, Rule | None]]) -> list[Candidate]:
    """The jobs that may go, in the order the provider's room is given to them: higher
    priority first; within a priority each source's first job, then each one's second, and
    so on (each source's own jobs keep their queue order)."""
    turn: Counter[tuple[int, str]] = Counter()
    keyed = []
    for position, (job, rule) in enumerate(jobs):
        priority = job.priority + (rule.priority if rule else 0)
        keyed.append(((-priority, turn[priority, job.source], position), job))
        turn[priority, job.source] += 1
    return [job for _, job in sorted(keyed, key=lambda pair: pair[0])]


def one_call_per_number(
    jobs: Sequence[Candidate], in_flight: Mapping[str, int], per_number: int
) -> tuple[list[Candidate], dict[str, str]]:
    """The jobs whose number has a free line (`per_number` calls at once), in order; and
    for the others, why they wait ("behind 3 faxes to this number")."""
    taken: defaultdict[str, int] = defaultdict(int, in_flight)
    go: list[Candidate] = []
    behind: dict[str, str] = {}
    for job in jobs:
        ahead = taken[job.number]
        if ahead < per_number:
            go.append(job)
        else:
            behind[job.job_id] = f"behind {ahead} fax{'es' if ahead > 1 else ''} to this number"
        taken[job.number] += 1
    return go, behind


@functools.lru_cache(maxsize=4096)
def destination_zone(number: str, fallback: str = "UTC") -> ZoneInfo:
    """The number's time zone, when phonenumbers places it in one; else `fallback` (a
    number shared by several zones, such as a US toll-free one, cannot be placed)."""
    try:
        zones = timezone.time_zones_for_number(phonenumbers.parse(number))
    except NumberParseException:
        zones = ()
    name = zones[0] if len(zones) == 1 and zones[0] != "Etc/Unknown" else fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@functools.lru_cache(maxsize=4096)
def _country(number: str) -> str | None:
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(number))
    except NumberParseException:
        return None


def _folder_fits(folder: str | None, wanted: tuple[str, ...]) -> bool:
    """A hot folder by its path or by its own name ("outbox" for /srv/fax/outbox)."""
    if not folder:
        return False
    name = folder.rstrip("/").rpartition("/")[2]
    return folder in wanted or name in wanted


def _sender_fits(sender: str | None, wanted: tuple[str, ...]) -> bool:
    if not sender:
        return False
    sender = sender.lower()
    domain = "@" + sender.rpartition("@")[2]
    return any(item.lower() in (sender, domain) for item in wanted)
