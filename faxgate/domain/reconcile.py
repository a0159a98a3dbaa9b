"""Did the provider take a fax whose request may or may not have reached it?

Pure rules, no IO. A request to send a fax can end without telling us its fate: a timeout
or a dropped connection after the upload, a gateway error, or a crash of faxgate between
committing `submitting` and hearing the answer. Sending again on a guess could fax the
same document twice (and pay twice); giving up on a guess could leave a fax unsent while
its owner believes it went. So the job is compared with what the provider lists, and the
comparison says one of four things:

- `Found(tx)`: the provider has it. Exactly one unclaimed transmission to the job's
  number was created within the match window around `submitted_at` (by default from
  2 minutes before to 10 minutes after: our clock and the provider's may disagree, and
  the provider records a fax while it answers the request), its pages agree with the
  job's where both are known, and no other unsettled job could own it.
- `NotThere`: the provider never took it, so sending it is safe. The list was read back
  past the caution horizon (15 minutes before `submitted_at` by default), it was read
  after the match window closed, no unclaimed transmission that could be this job's is
  in it or among the kept callbacks, and either the provider keeps the faxes it sent
  (the sandbox with removal switched off) or a fax it took would surely have left a
  record we hold (`absence_proves_from`: callbacks reached faxgate all along, so its
  callback would have been kept). A provider that removes a fax once it is sent
  (HelloFax does) makes absence alone no proof: the fax may have been taken, sent and
  removed before the list was read. Then the answer is `CannotTell`.
- `TryLater`: nothing can be decided yet, but time will tell: the match window is still
  open (the provider may still be recording a request it received), or the candidates
  differ only in pages the provider has not counted yet (it counts them once the
  documents are converted).
- `CannotTell`: time will not tell: several candidates that pages cannot tell apart, a
  candidate that another unsettled job to the same number could own, a transmission to
  the number whose pages disagree, or a list that could not be read back far enough.
  The job becomes `uncertain` and a person decides; it is never sent again on a guess.

Why each rule leans the way it does. The two mistakes do not cost the same: calling a
fax "not there" when it is there sends it twice, so `NotThere` needs the strongest
evidence and every doubt blocks it:
- any unclaimed outbound transmission whose number might be the job's (same digits, or
  one a suffix of the other: a national form, a `00` or `011` prefix) created after the
  caution horizon blocks it, not only those in the match window;
- pages never dismiss a transmission into `NotThere`: the provider may bill a cover
  page, or count pages its own way; a mismatch only makes it `CannotTell`;
- the list must be read after the match window closed, so a request the provider was
  still working on has been recorded.
`Found` needs a strict match (the same digits, in the match window) and uniqueness.

Evidence besides the list. Callbacks for GUIDs no job holds are kept for a while
(`Listing.reported`): the provider posts one when a fax reaches S or E, before it removes
it, so a kept callback may be the only record left of a fax whose send's answer was lost.
They count as transmissions in every rule above except coverage (how far back the list
was read): a callback for a fax to this number from that time is a suspect like a listed
one, and a strict, unique match is `Found`.

Claims. A transmission whose GUID another job holds (or this job held for an earlier
call) is not this job's and is ignored; the caller looks these up. A job that has no GUID
yet but may own one (another job in `submitting` or `uncertain` to the same number, a
"rival") makes any transmission it could own ambiguous: two such faxes with the same
pages are indistinguishable, and picking one would be a guess.

Limits. The provider's v1 list says nothing of the documents themselves, only the number,
the time and the pages billed. A fax sent to the same number at the same time from
outside faxgate (the web interface, another program on the account) can still be taken
for this job's; it makes `Found` wrong only if this job's own request did not arrive.
Transmissions are told apart by pages only once the provider has counted them (status
T or S with NumPagesBilled above 0); pending (P) and failed ones bill 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol

from faxgate.domain.codes import StatusCode

__all__ = [
    "CALLBACK_RETRIES",
    "DEFAULT_WINDOW",
    "CannotTell",
    "Found",
    "ListedFax",
    "Listing",
    "NotThere",
    "Outcome",
    "Sought",
    "TryLater",
    "Window",
    "callback_wait",
    "covers",
    "might_be_for",
    "reconcile",
]


class ListedFax(Protocol):
    """A fax as the provider's list of transmissions shows it: what reconciling reads.
    faxgate.domain.provider.FaxReport has these."""

    @property
    def guid(self) -> str: ...
    @property
    def to(self) -> str: ...
    @property
    def is_inbound(self) -> bool: ...
    @property
    def status_code(self) -> StatusCode | None: ...
    @property
    def created_at(self) -> datetime | None: ...
    @property
    def num_pages_billed(self) -> int | None: ...
    @property
    def reference(self) -> str | None:
        """The job id the fax carries, where the provider can carry one (v3's title)."""
        ...


# Shorter than this, a string of digits is too easily the tail of an unrelated number.
_MIN_SUFFIX_DIGITS: Final = 7
_INTERNATIONAL_PREFIXES: Final = ("00", "011")
# Statuses whose NumPagesBilled counts every page of the fax.
_COUNTED: Final = frozenset({StatusCode.TRANSMITTING, StatusCode.SENT})


# When the provider tries a callback again after a failed one, counted from the first
# attempt (15 min, then 45 min later, ...); after the last it gives up (CONFIRMED, the
# provider's getting-started page, step 10).
CALLBACK_RETRIES: Final = tuple(timedelta(minutes=m) for m in (15, 60, 150, 315, 555, 1050, 2040))


def callback_wait(downtime: timedelta, scale: float = 1.0) -> timedelta | None:
    """How long after coming back a callback posted while faxgate was down surely had one
    more try: the longest gap of the retry schedule that such a callback may be in. None
    when faxgate was down longer than the provider retries."""
    offsets = [offset * scale for offset in CALLBACK_RETRIES]
    if downtime > offsets[-1]:
        return None
    wait = offsets[0]
    for earlier, later in itertools.pairwise(offsets):
        if earlier < downtime:
            wait = max(wait, later - earlier)
    return wait


@dataclass(frozen=True, slots=True)
class Window:
    """The times around `submitted_at` that matter; see the module's docstring."""

    before: timedelta = timedelta(minutes=2)
    after: timedelta = timedelta(minutes=10)
    caution: timedelta = timedelta(minutes=15)

    def __post_init__(self) -> None:
        if min(self.before, self.after) < timedelta(0) or self.caution < self.before:
            raise ValueError("a window needs before, after >= 0 and caution >= before")


DEFAULT_WINDOW: Final = Window()


@dataclass(frozen=True, slots=True)
class Sought:
    """A fax whose fate is unknown, as far as the provider's list can show it."""

    job_id: str
    to_number: str  # E.164, "+14155550100"
    submitted_at: datetime  # when the request left (our clock)
    # Pages of each document, None for one that could not be counted; None: not known.
    document_pages: tuple[int | None, ...] | None = None
    cover_page: bool = False

    @property
    def digits(self) -> str:
        return _digits(self.to_number)

    def acceptable_pages(self) -> frozenset[int] | None:
        """The page counts the provider may bill for this fax, or None when unknown."""
        if self.document_pages is None or any(p is None for p in self.document_pages):
            return None
        total = sum(p for p in self.document_pages if p is not None)
        # Whether the provider bills its generated cover page is not documented.
        return frozenset({total, total + 1}) if self.cover_page else frozenset({total})

    def match_start(self, window: Window) -> datetime:
        return self.submitted_at - window.before

    def match_end(self, window: Window) -> datetime:
        return self.submitted_at + window.after

    def horizon(self, window: Window) -> datetime:
        """How far back the list must be read: older transmissions cannot matter."""
        return self.submitted_at - window.caution


@dataclass(frozen=True, slots=True)
class Listing:
    """What was read of the provider's transmission list."""

    transmissions: Sequence[ListedFax]  # newest first, as read; repeats are harmless
    listed_at: datetime  # our clock, when the first page was asked for
    complete: bool  # the last page was read: there is nothing older
    # Kept callbacks for GUIDs no job holds: faxes the list may no longer show.
    reported: Sequence[ListedFax] = ()


@dataclass(frozen=True, slots=True)
class Found:
    transmission: ListedFax
    reason: str


@dataclass(frozen=True, slots=True)
class NotThere:
    reason: str


@dataclass(frozen=True, slots=True)
class TryLater:
    reason: str


@dataclass(frozen=True, slots=True)
class CannotTell:
    reason: str


Outcome = Found | NotThere | TryLater | CannotTell


# ---------------------------------------------------------------------------- the decision


def reconcile(
    sought: Sought,
    listing: Listing,
    *,
    claimed: Collection[str] = (),
    rivals: Sequence[Sought] = (),
    window: Window = DEFAULT_WINDOW,
    provider_removes: bool = True,
    absence_proves_from: datetime | None = None,
) -> Outcome:
    """Decide what became of `sought`, from the list and the GUIDs other jobs hold.

    `claimed`: GUIDs of transmissions known not to be this call's (held by other jobs,
    or by this job's earlier calls). `rivals`: other jobs without a GUID that may own a
    transmission to the same number (in `submitting` or `uncertain`).
    `provider_removes`: the provider removes a fax once it is sent (HelloFax does), so
    absence from its list proves nothing by itself. `absence_proves_from`: with such a
    provider, from when on a fax it took would surely have left a record we hold (its
    callback, kept), so that absence from both proves it was not taken; None: never.
    """
    every = _unique([*listing.transmissions, *listing.reported])
    carrying = {tx.guid: tx for tx in every if tx.reference == sought.job_id}
    unclaimed = [tx for guid, tx in carrying.items() if guid not in claimed]
    if len(unclaimed) == 1 and not unclaimed[0].is_inbound:
        return Found(unclaimed[0], "the provider's fax carries this job's id")
    if not covers(listing, sought.horizon(window)):
        return CannotTell(
            "the provider's list of transmissions could not be read back to the time "
            "the fax was sent"
        )
    others = [r for r in rivals if r.job_id != sought.job_id]
    # A fax that carries another job's id is that job's.
    suspects = [
        tx
        for tx in every
        if tx.guid not in claimed
        and tx.reference in (None, sought.job_id)
        and might_be_for(sought, tx, window)
    ]
    window_open = listing.listed_at < sought.match_end(window)
    if not suspects:
        if window_open:
            return TryLater("nothing yet; the provider may still be recording the request")
        if provider_removes and absence_proves_from is None:
            return CannotTell(
                "the provider shows no fax to this number from that time, but it removes "
                "faxes once they are sent, and no callback reported one"
            )
        if provider_removes and absence_proves_from is not None:
            if listing.listed_at < absence_proves_from:
                return TryLater("a callback for it may still come; the provider retries them")
            return NotThere(
                "the provider has no transmission to this number from that time, and no "
                "callback reported one while callbacks reached faxgate"
            )
        return NotThere("the provider has no transmission to this number from that time")

    acceptable = sought.acceptable_pages()
    possible = [tx for tx in suspects if _pages_agree(acceptable, tx)]
    if not possible:
        return CannotTell(
            "the provider has a fax to this number from that time, but its page count "
            "does not match"
        )
    if len(possible) == 1 and not _is_match(sought, possible[0], window):
        return CannotTell(
            "the provider has a fax to a number like this one from about that time, "
            "but not one that surely matches"
        )
    owned_by_rival = any(_could_own(rival, tx, window) for rival in others for tx in possible)
    if len(possible) == 1 and not owned_by_rival:
        return Found(possible[0], "the only transmission to this number from that time")
    # Pages the provider has not counted yet may still single one out.
    if window_open and acceptable is not None and any(_billed(tx) is None for tx in possible):
        return TryLater("the candidates wait for the provider to count their pages")
    if len(possible) > 1:
        return CannotTell(
            f"the provider has {len(possible)} faxes to this number from that time "
            "that cannot be told apart"
        )
    return CannotTell(
        "the provider has one fax to this number from that time, but another job "
        "to the same number may own it"
    )


def covers(listing: Listing, since: datetime) -> bool:
    """Whether the list was read back past `since` (or to its end)."""
    return listing.complete or any(
        tx.created_at is not None and tx.created_at < since for tx in listing.transmissions
    )


def might_be_for(sought: Sought, tx: ListedFax, window: Window = DEFAULT_WINDOW) -> bool:
    """Whether `tx` could be this fax's, leniently: the transmissions whose claims matter."""
    if tx.is_inbound or not _may_be_number(sought.digits, tx.to):
        return False
    return tx.created_at is None or tx.created_at >= sought.horizon(window)


# ---------------------------------------------------------------------------- the rules


def _is_match(sought: Sought, tx: ListedFax, window: Window) -> bool:
    """A strict match: the same number, created within the match window."""
    return (
        _same_number(sought.digits, tx.to)
        and tx.created_at is not None
        and sought.match_start(window) <= tx.created_at <= sought.match_end(window)
    )


def _could_own(rival: Sought, tx: ListedFax, window: Window) -> bool:
    """Whether a rival job could be the owner of `tx`, leniently in every respect."""
    if not _may_be_number(rival.digits, tx.to) or not _pages_agree(rival.acceptable_pages(), tx):
        return False
    if tx.created_at is None:
        return True
    latest = rival.match_end(window) + window.caution
    return rival.horizon(window) <= tx.created_at <= latest


def _billed(tx: ListedFax) -> int | None:
    """The pages of a transmission, once the provider has counted them."""
    pages = tx.num_pages_billed
    if tx.status_code in _COUNTED and pages is not None and pages > 0:
        return pages
    return None


def _pages_agree(acceptable: frozenset[int] | None, tx: ListedFax) -> bool:
    billed = _billed(tx)
    return acceptable is None or billed is None or billed in acceptable


def _digits(text: str) -> str:
    return "".join(char for char in text if char in "0123456789")


def _international_forms(reported: str) -> set[str]:
    digits = _digits(reported)
    forms = {digits}
    for prefix in _INTERNATIONAL_PREFIXES:
        if digits.startswith(prefix):
            forms.add(digits.removeprefix(prefix))
    return forms


def _same_number(e164_digits: str, reported: str) -> bool:
    """The same number, allowing for `+`, separators and an international prefix."""
    return bool(e164_digits) and e164_digits in _international_forms(reported)


def _may_be_number(e164_digits: str, reported: str) -> bool:
    """Possibly the same number: also a national form, or a longer form ending in it."""
    if _same_number(e164_digits, reported):
        return True
    digits = _digits(reported)
    if len(digits) < _MIN_SUFFIX_DIGITS or not e164_digits:
        return False
    return e164_digits.endswith(digits) or digits.endswith(e164_digits)


def _unique(transmissions: Iterable[ListedFax]) -> list[ListedFax]:
    """Each GUID once: pages read while new faxes arrive repeat an item at their edge."""
    seen: set[str] = set()
    unique = []
    for tx in transmissions:
        if tx.guid not in seen:
            seen.add(tx.guid)
            unique.append(tx)
    return unique
