"""What a soak run will do, drawn from one seed: the faxes, the kills, the fault weather.

Pure rules, no IO: the same seed gives the same faxes (numbers, intakes, outcome kinds),
the same kill triggers and the same sequence of fault changes.

Most faxes go to a number of their own (area code and exchange set by the index), a few
to the number of an earlier fax; every fax has a document of its own, so the sandbox's
duplicate check (same document to the same number) names one fax. The last four digits
choose the sandbox's outcome (docs/sandbox.md, "the outcome rules").
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "KINDS",
    "FaxPlan",
    "KillTrigger",
    "Kind",
    "WeatherChange",
    "expected_calls",
    "kill_triggers",
    "plan_faxes",
    "schedule",
    "weather",
]

IntakeName = Literal["mail", "folder"]


@dataclass(frozen=True, slots=True)
class Kind:
    """One outcome the sandbox's number rules produce."""

    name: str
    suffix: str | None  # the number's last four digits; None: any that ends in success
    state: str  # the job state faxgate should end in
    retry: Literal["busy", "no_answer"] | None = None  # faxgate calls again after it
    weight: float = 0.0


KINDS: Final = (
    Kind("delivered", None, "sent", weight=0.60),
    Kind("delivered slowly", "0007", "sent", weight=0.06),
    Kind("busy", "0001", "failed", retry="busy", weight=0.09),
    Kind("no answer", "0002", "failed", retry="no_answer", weight=0.07),
    Kind("unallocated", "0003", "failed", weight=0.045),
    Kind("disconnected", "0004", "failed", weight=0.045),
    Kind("blacklisted", "0005", "failed", weight=0.045),
    Kind("a human answered", "0006", "failed", weight=0.045),
)
_AREA_CODES: Final = ("415", "510", "650", "408", "212", "646", "718", "305")
_EXCHANGES: Final = 800  # 200 to 999 within each area code


@dataclass(frozen=True, slots=True)
class FaxPlan:
    index: int
    intake: IntakeName
    kind: Kind
    digits: str  # the number as the provider writes it: 1 and ten digits

    @property
    def name(self) -> str:
        """The fax's name in tags, file names and Message-IDs."""
        return f"fax{self.index:04d}"


def _number(index: int, kind: Kind, rand: random.Random) -> str:
    area = _AREA_CODES[index // _EXCHANGES % len(_AREA_CODES)]
    exchange = 200 + index % _EXCHANGES
    # Any other ending is a success: 1000 and up is never one of the rules' 0001-0007.
    line = kind.suffix if kind.suffix is not None else f"{rand.randrange(1000, 10000):04d}"
    return f"1{area}{exchange:03d}{line}"


def plan_faxes(
    count: int, seed: int, mail_share: float = 0.5, shared_share: float = 0.06
) -> list[FaxPlan]:
    """`count` faxes, shuffled between the two intakes, each to a number of its own but
    for `shared_share` of them: those go to the number of a fax a little earlier (the same
    recipient again), so that two calls to one number may be at the provider at once and
    reconciling cannot always tell them apart."""
    if count > _EXCHANGES * len(_AREA_CODES):
        raise ValueError(f"at most {_EXCHANGES * len(_AREA_CODES)} faxes")
    rand = random.Random(f"faxes-{seed}")
    weights = [kind.weight for kind in KINDS]
    plans: list[FaxPlan] = []
    for index in range(count):
        (kind,) = rand.choices(KINDS, weights)
        intake: IntakeName = "mail" if rand.random() < mail_share else "folder"
        digits = _number(index, kind, rand)
        if plans and rand.random() < shared_share:
            earlier = rand.choice(plans[-10:])
            kind, digits = earlier.kind, earlier.digits
        plans.append(FaxPlan(index, intake, kind, digits))
    return plans


def schedule(plans: list[FaxPlan], rate: float, seed: int) -> dict[int, float]:
    """When each fax is handed over, in seconds from the start: one every 1/rate seconds
    in plan order, except that files come in bursts (a scanner's batch, a program's run):
    a burst's files all go at its first file's turn."""
    rand = random.Random(f"schedule-{seed}")
    offsets: dict[int, float] = {}
    burst_left, burst_at = 0, 0.0
    for plan in plans:
        own = plan.index / rate
        if plan.intake == "mail":
            offsets[plan.index] = own
            continue
        if burst_left == 0:
            burst_left, burst_at = rand.randrange(1, 16), own
        offsets[plan.index] = burst_at
        burst_left -= 1
    return offsets


def expected_calls(kind: Kind, busy_retries: int, no_answer_retries: int) -> int:
    """How many calls faxgate makes for a fax of this kind."""
    if kind.retry == "busy":
        return 1 + busy_retries
    if kind.retry == "no_answer":
        return 1 + no_answer_retries
    return 1


@dataclass(frozen=True, slots=True)
class KillTrigger:
    """Kill once the run's progress (0 to 1) reaches `progress`, `jitter` seconds later."""

    progress: float
    jitter: float


def kill_triggers(kills: int, seed: int) -> list[KillTrigger]:
    """`kills` moments spread at random over the run, in order."""
    rand = random.Random(f"kills-{seed}")
    moments = sorted(rand.uniform(0.03, 0.9) for _ in range(kills))
    return [KillTrigger(moment, rand.uniform(0.0, 0.4)) for moment in moments]


@dataclass(frozen=True, slots=True)
class WeatherChange:
    """Fault switches to merge into the sandbox's, kept for `lasts` seconds."""

    name: str  # what it is, for the figures
    switches: dict[str, Any]
    lasts: float


# Always on: a share of 5xx answers, dropped connections after upload, and callbacks
# posted twice, shuffled, some late.
STEADY_FAULTS: Final[dict[str, Any]] = {
    "error_rate": 0.04,
    "error_statuses": [500, 502, 503],
    "drop_after_upload_rate": 0.03,
    "callback_copies": 2,
    "callback_shuffle": True,
    "callback_shuffle_window": 0.3,
    "callback_late_copy_after": 1.5,
    "callback_delay": 0.05,
}


def weather(seed: int) -> Iterator[WeatherChange]:
    """Endless spells on top of the steady faults: slow answers (some longer than the
    client's timeout), 429 storms (every send refused while one lasts, as when the
    provider is full), and calm."""
    rand = random.Random(f"weather-{seed}")
    while True:
        roll = rand.random()
        if roll < 0.3:
            slow = round(rand.uniform(0.3, 3.0), 2)
            switches: dict[str, Any] = {"delay": slow, "rate_limit_next": 0}
            yield WeatherChange("slow answers", switches, rand.uniform(1.0, 3.0))
        elif roll < 0.5:
            switches = {"delay": 0.0, "rate_limit_next": 1_000_000}
            yield WeatherChange("429 storm", switches, rand.uniform(0.5, 2.0))
        else:
            switches = {"delay": 0.0, "rate_limit_next": 0}
            yield WeatherChange("calm", switches, rand.uniform(1.0, 4.0))
