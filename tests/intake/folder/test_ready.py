"""When a dropped file is complete: inotify signals and listings in, ready files out."""

from __future__ import annotations

from faxgate.intake.folder.ready import CREATED_GRACE, Readiness, Signal, Signature, Taken

SIG = Signature(size=100, mtime_ns=1, inode=7)
GROWN = Signature(size=200, mtime_ns=2, inode=7)


def paths(taken: list[Taken]) -> list[str]:
    return [t.path for t in taken]


def test_a_file_is_ready_when_closed_after_writing() -> None:
    ready = Readiness(stable_for=3)
    ready.signal("a.pdf", Signal.CREATED, 0)
    ready.signal("a.pdf", Signal.OPENED, 0)
    ready.signal("a.pdf", Signal.MODIFIED, 0.1)
    assert ready.take(100, 10) == [], "open for writing: it waits, however long"
    assert ready.pending() == {"a.pdf"}
    ready.signal("a.pdf", Signal.CLOSED, 101)
    assert paths(ready.take(101, 10)) == ["a.pdf"]
    assert "a.pdf" not in ready, "taken files leave the tracker"


def test_a_file_moved_in_is_ready_at_once() -> None:
    ready = Readiness(stable_for=3)
    ready.signal("b.pdf", Signal.MOVED_IN, 5)
    assert ready.next_deadline() == 5
    assert paths(ready.take(5, 10)) == ["b.pdf"]


def test_a_name_made_without_an_open_is_complete_after_the_grace() -> None:
    ready = Readiness(stable_for=3)
    ready.signal("link.pdf", Signal.CREATED, 0)
    assert ready.take(CREATED_GRACE / 2, 10) == []
    assert ready.next_deadline() == CREATED_GRACE
    assert paths(ready.take(CREATED_GRACE, 10)) == ["link.pdf"]


def test_readers_opening_a_file_do_not_make_it_a_write() -> None:
    ready = Readiness(stable_for=3)
    ready.signal("a.pdf", Signal.MOVED_IN, 0)
    ready.signal("a.pdf", Signal.OPENED, 0.1)
    assert paths(ready.take(0.2, 10)) == ["a.pdf"]


def test_a_listed_file_must_stay_unchanged_for_a_while() -> None:
    ready = Readiness(stable_for=3)
    ready.listed("a.pdf", SIG, 0)
    assert ready.due_checks(2) == []
    assert ready.due_checks(3) == ["a.pdf"]
    ready.listed("a.pdf", GROWN, 3)  # it grew: start again
    assert ready.take(3, 10) == []
    ready.listed("a.pdf", GROWN, 5.9)
    assert ready.take(5.9, 10) == []
    ready.listed("a.pdf", GROWN, 6)
    (taken,) = ready.take(6, 10)
    assert (taken.path, taken.signature, taken.ready_since) == ("a.pdf", GROWN, 6)


def test_without_stable_for_a_listed_file_is_ready_at_once() -> None:
    ready = Readiness(stable_for=0)
    ready.listed("a.pdf", SIG, 0)
    assert paths(ready.take(0, 10)) == ["a.pdf"]


def test_events_know_better_than_listings() -> None:
    ready = Readiness(stable_for=0)
    ready.signal("a.pdf", Signal.MODIFIED, 0)
    ready.listed("a.pdf", SIG, 10)
    assert ready.take(10, 10) == [], "still open for writing"


def test_after_an_overflow_writers_wait_for_a_stable_listing() -> None:
    ready = Readiness(stable_for=1)
    ready.signal("a.pdf", Signal.MODIFIED, 0)  # its close may be lost
    ready.reset_writing(5)
    assert ready.due_checks(6) == ["a.pdf"]
    ready.listed("a.pdf", SIG, 6)  # first sighting after the reset
    ready.listed("a.pdf", SIG, 7)
    assert paths(ready.take(7, 10)) == ["a.pdf"]


def test_held_files_come_back_later_or_when_their_folder_changes() -> None:
    ready = Readiness(stable_for=3)
    ready.signal("a.pdf", Signal.CLOSED, 0)
    ready.signal("sub/b.pdf", Signal.CLOSED, 0)
    a, b = ready.take(0, 10)
    ready.hold(a, until=10)
    ready.hold(b, until=None)
    assert ready.take(5, 10) == []
    assert ready.next_deadline() == 10
    ready.signal("sub/b.pdf.json", Signal.CLOSED, 6)  # its sidecar came
    assert sorted(paths(ready.take(6, 10))) == ["sub/b.pdf", "sub/b.pdf.json"]
    assert paths(ready.take(10, 10)) == ["a.pdf"]


def test_a_newer_sighting_wins_over_a_hold() -> None:
    ready = Readiness(stable_for=3)
    ready.signal("a.pdf", Signal.CLOSED, 0)
    (a,) = ready.take(0, 10)
    ready.signal("a.pdf", Signal.MODIFIED, 1)  # written again meanwhile
    ready.hold(a, until=2)
    assert ready.take(5, 10) == []


def test_a_changed_file_waits_to_be_stable_again() -> None:
    ready = Readiness(stable_for=1)
    ready.recheck("a.pdf", 0)
    assert ready.due_checks(1) == ["a.pdf"]
    ready.listed("a.pdf", SIG, 1)
    ready.listed("a.pdf", SIG, 2)
    assert paths(ready.take(2, 10)) == ["a.pdf"]


def test_moves_and_removals() -> None:
    ready = Readiness(stable_for=1)
    ready.listed("a.pdf", SIG, 0)
    ready.listed("b.pdf", SIG, 0)
    ready.signal("a.pdf", Signal.GONE, 0.5)
    ready.signal("d.pdf", Signal.CLOSED, 2)  # told of after the listing began
    ready.forget_missing(["c.pdf"], lambda path: "/" not in path, began=1)
    assert paths(ready.take(5, 10)) == ["d.pdf"]
    ready.vanished("d.pdf", 3)
    assert len(ready) == 0


def test_a_listing_older_than_an_event_changes_nothing() -> None:
    ready = Readiness(stable_for=1)
    ready.signal("a.pdf", Signal.CLOSED, 5)
    ready.listed("a.pdf", SIG, 4)  # began before the close: the file may have grown since
    (taken,) = ready.take(5, 10)
    assert taken.signature is None


def test_take_respects_the_limit_oldest_first() -> None:
    ready = Readiness(stable_for=1)
    for n in range(5):
        ready.signal(f"{n}.pdf", Signal.CLOSED, n)
    assert paths(ready.take(10, 3)) == ["0.pdf", "1.pdf", "2.pdf"]
    assert paths(ready.take(10, 3)) == ["3.pdf", "4.pdf"]


def test_a_file_given_back_after_its_folder_changed_is_offered_at_once() -> None:
    ready = Readiness(stable_for=3)
    ready.signal("a.pdf.json", Signal.CLOSED, 0)
    (sidecar,) = ready.take(0, 10)  # being looked at when its document comes
    ready.signal("a.pdf", Signal.CLOSED, 1)
    ready.hold(sidecar, until=None)
    assert sorted(paths(ready.take(1, 10))) == ["a.pdf", "a.pdf.json"]
