"""The sending policy's settings: one call at a time per number, and the rules by
destination and source (hours, pages, limits per sender, retries, priority)."""

from __future__ import annotations

import re
from datetime import time
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from faxgate.settings.fields import _Section, country_codes, each_matching

if TYPE_CHECKING:
    from faxgate.domain.sending_rules import Rule

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_PRIORITIES = {"urgent": 1, "normal": 0, "bulk": -1}


def _clock_time(hours: str, minutes: str) -> time:
    h, m = int(hours), int(minutes)
    if h == 24 and m == 0:  # "18:00-24:00": until midnight
        return time(0, 0)
    return time(h, m)


class RuleSettings(_Section):
    """One rule: which faxes it is for (every field given must fit; none: every fax) and
    what it asks of them."""

    name: str = Field(min_length=1, max_length=80)
    # Destinations: E.164 numbers or prefixes ("+1212"), two-letter country codes.
    numbers: list[str] = Field(default_factory=list)
    countries: list[str] = Field(default_factory=list)
    # Sources: mail senders ("bob@example.com") or domains ("@example.com"), hot folders
    # by their name.
    senders: list[str] = Field(default_factory=list)
    folders: list[str] = Field(default_factory=list)
    # When faxes may go, in the destination's time: "08:00-18:00" ("22:00-06:00" spans
    # midnight), on these days (the day a window opens on).
    hours: str = ""
    days: list[Weekday] = Field(default_factory=lambda: list(_WEEKDAYS))  # type: ignore[arg-type]
    # A fax with more pages is refused, with a report naming the rule.
    max_pages: int | None = Field(default=None, ge=1)
    # Faxes per sender (a mail sender, or a hot folder) sent in the last hour / day; more
    # wait for room.
    per_sender_hour: int | None = Field(default=None, ge=1)
    per_sender_day: int | None = Field(default=None, ge=1)
    # Calls again after a busy line or no answer (the [retry] settings otherwise).
    busy_retries: int | None = Field(default=None, ge=0, le=20)
    no_answer_retries: int | None = Field(default=None, ge=0, le=20)
    # "urgent", "normal" or "bulk": added to what a job asks for itself.
    priority: Literal["urgent", "normal", "bulk"] = "normal"

    @field_validator("numbers")
    @classmethod
    def _numbers(cls, value: list[str]) -> list[str]:
        return each_matching(value, r"\+\d{1,15}", 'E.164 numbers or prefixes such as "+1212"')

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        return country_codes(value)

    @field_validator("senders")
    @classmethod
    def _senders(cls, value: list[str]) -> list[str]:
        for sender in value:
            if "@" not in sender or sender.endswith("@"):
                raise ValueError('expected addresses or "@domain"s such as "@example.com"')
        return [sender.lower() for sender in value]

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        if not value:
            return value
        match = _HOURS.match(value)
        if not match:
            raise ValueError('expected "HH:MM-HH:MM", for example "08:00-18:00"')
        try:
            start = _clock_time(match[1], match[2])
            end = _clock_time(match[3], match[4])
        except ValueError:
            raise ValueError('expected "HH:MM-HH:MM" with real times of day') from None
        if start == end:
            raise ValueError("the window opens and closes at the same time")
        return value

    @model_validator(mode="after")
    def _days_with_hours(self) -> RuleSettings:
        if self.hours and not self.days:
            raise ValueError("allowed hours need at least one day")
        return self

    def rule(self) -> Rule:
        from faxgate.domain.sending_rules import Hours, Match, Rule

        hours = None
        if self.hours:
            match = _HOURS.match(self.hours)
            assert match is not None  # checked by the validator
            hours = Hours(
                _clock_time(match[1], match[2]),
                _clock_time(match[3], match[4]),
                frozenset(_WEEKDAYS.index(day) for day in self.days),
            )
        return Rule(
            name=self.name,
            match=Match(
                numbers=tuple(self.numbers),
                countries=tuple(self.countries),
                senders=tuple(self.senders),
                folders=tuple(self.folders),
            ),
            hours=hours,
            max_pages=self.max_pages,
            per_sender_hour=self.per_sender_hour,
            per_sender_day=self.per_sender_day,
            priority=_PRIORITIES[self.priority],
            busy_retries=self.busy_retries,
            no_answer_retries=self.no_answer_retries,
        )


class PolicySettings(_Section):
    """When, how often and in what order faxes go (docs/sending-policy.md)."""

    # At most this many calls at once to one number (a fax machine answers one at a
    # time); the others wait their turn in the order they came. 0: no limit.
    calls_per_number: int = Field(default=1, ge=0, le=200)
    # The time zone of a number phonenumbers cannot place in one (a toll-free number).
    unknown_zone: str = "UTC"
    # The rules, first match wins; a fax no rule matches has no limits but the above.
    rules: list[RuleSettings] = Field(default_factory=list)

    @field_validator("unknown_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError('expected a time zone such as "America/New_York"') from None
        return value

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, value: list[RuleSettings]) -> list[RuleSettings]:
        names = [rule.name for rule in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"rule names must differ: {', '.join(twice)}")
        return value

    def rules_in_order(self) -> tuple[Rule, ...]:
        return tuple(rule.rule() for rule in self.rules)
