"""The IMAP intake's ledger on both backends: what was taken, read by UID or Message-ID;
a batch recorded with its jobs and replies in one transaction; and a message that two
takers record at once is kept by one only, the other's batch rolled back whole."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from faxgate.store import NewNotification, Store, TakenElsewhere, TakenMessage
from tests.store.backends import Location, open_store, raw
from tests.store.making import T0, new_job, table_counts

MAILBOX = "INBOX"


def processed(uid: int, uidvalidity: int = 7) -> TakenMessage:
    return TakenMessage(uidvalidity, uid, f"<m{uid}@example.com>", "processed")


def refused(uid: int, uidvalidity: int = 7) -> TakenMessage:
    return TakenMessage(uidvalidity, uid, f"<m{uid}@example.com>", "refused")


def reply(uid: int) -> NewNotification:
    return NewNotification(kind="imap_refusal", payload={"to": "a@example.org", "uid": uid})


def taken_rows(location: Location) -> int:
    with raw(location) as conn:
        return int(conn.one("SELECT count(*) FROM imap_taken"))


def test_what_was_taken_is_read_by_uid_and_by_message_id(store: Store) -> None:
    jobs = store.take_imap_messages(
        MAILBOX, [processed(1), refused(2)], [new_job(), new_job()], [reply(2)], now=T0
    )
    assert len(jobs) == 2
    store.take_imap_messages("Other", [processed(3)], [new_job()], now=T0)

    assert store.imap_outcomes(MAILBOX, 7, [1, 2, 3, 4]) == {
        1: ("processed", "<m1@example.com>"),
        2: ("refused", "<m2@example.com>"),
    }
    assert store.imap_outcomes(MAILBOX, 8, [1, 2]) == {}  # renumbered: other UIDs
    assert store.imap_outcomes(MAILBOX, 7, []) == {}
    assert store.imap_taken_by_message_id(MAILBOX, "<m2@example.com>") == "refused"
    assert store.imap_taken_by_message_id(MAILBOX, "<m3@example.com>") is None
    assert store.imap_taken_by_message_id("Other", "<m3@example.com>") == "processed"
    [owed] = store.pending_notifications(T0, 10)
    assert owed.kind == "imap_refusal"
    assert owed.payload["uid"] == 2


def test_a_long_list_of_uids_is_read_in_parts(store: Store) -> None:
    store.take_imap_messages(MAILBOX, [processed(uid) for uid in (5, 1_200)], [], now=T0)
    assert set(store.imap_outcomes(MAILBOX, 7, range(1, 1_500))) == {5, 1_200}


def test_a_message_taken_already_rolls_the_whole_batch_back(
    location: Location, store: Store
) -> None:
    store.take_imap_messages(MAILBOX, [processed(2)], [new_job()], now=T0)
    before = table_counts(location)

    with pytest.raises(TakenElsewhere) as lost:
        store.take_imap_messages(
            MAILBOX,
            [processed(1), processed(2), refused(3)],
            [new_job(), new_job()],
            [reply(3)],
            now=T0,
        )
    assert lost.value.uids == [2]
    assert table_counts(location) == before  # no job, no document, no reply
    assert taken_rows(location) == 1  # not even the batch's other messages
    # Taken afresh without the lost one, the others go in.
    store.take_imap_messages(MAILBOX, [processed(1), refused(3)], [new_job()], [reply(3)])
    assert taken_rows(location) == 3


@pytest.fixture
def second(location: Location) -> Iterator[Store]:
    """Another instance's store on the same database (or SQLite file)."""
    with open_store(location) as opened:
        yield opened


def test_two_takers_of_the_same_messages_at_once_keep_each_one_once(
    location: Location, store: Store, second: Store
) -> None:
    """Batches that overlap, written from two stores at once, many times: each message is
    recorded once with its jobs; every loser raises TakenElsewhere, never another error."""
    rounds, size = 12, 5
    outcomes: dict[str, list[str]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def take(name: str, taker: Store, shift: int) -> None:
        try:
            for round_ in range(rounds):
                uids = [round_ * 10 + shift + n for n in range(size)]
                start.wait(timeout=30)
                try:
                    taker.take_imap_messages(
                        MAILBOX,
                        [processed(uid) for uid in uids],
                        [new_job() for _ in uids],
                    )
                    outcomes[name].append("won")
                except TakenElsewhere:
                    outcomes[name].append("lost")
        except BaseException as exc:
            errors.append(exc)
            start.abort()

    threads = [
        threading.Thread(target=take, args=("a", store, 0)),
        threading.Thread(target=take, args=("b", second, 2)),  # overlaps by three
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    # The batches overlap: of each round's two, exactly one was kept.
    assert sorted(outcomes["a"] + outcomes["b"]) == ["lost"] * rounds + ["won"] * rounds
    with raw(location) as conn:
        recorded = conn.one("SELECT count(*) FROM imap_taken")
        jobs = conn.one("SELECT count(*) FROM jobs")
    assert recorded == jobs == rounds * size  # one message, one row, its jobs once
