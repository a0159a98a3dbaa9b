"""The IMAP intake: watches a mailbox and takes each message as the SMTP listener would.

One thread holds the connection (imaplib blocks). Each pass: list the mailbox's messages;
move those the store says were taken already (a stop between a commit and its move);
take the others (faxgate.intake.imap.taking), a few at a time, and move each batch to the
processed or refused folder once every message of it is committed. Then wait: IDLE when
the server has it (renewed every imap.idle_renewal), else imap.poll_interval.

A lost connection, a server that restarts or refuses a login is logged and tried again,
waiting longer each time (up to a minute). The daemon goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Final

from faxgate.domain.jobs import Job
from faxgate.intake.imap.session import ImapError, ImapSession, LoginRefused, tls_context
from faxgate.intake.imap.taking import (
    Ledger,
    MessageTaker,
    Outcome,
    Place,
    Prepared,
    Taken,
    read_message_id,
)
from faxgate.intake.smtp.listener import SmtpSetupError, handler_config
from faxgate.settings import Settings
from faxgate.store import Store, TakenElsewhere
from faxgate.store.spool import Spool

log = logging.getLogger("faxgate.imap")

BATCH: Final = 20  # messages fetched and taken before their move
WRITERS: Final = 4  # messages of a batch whose files are written at once
FIRST_RETRY: Final = 1.0
LAST_RETRY: Final = 60.0
STOP_GRACE: Final = 35.0  # a command under way may take up to session.TIMEOUT


class StoreTrouble(Exception):
    """Nothing of a batch was kept: the messages stay in the mailbox for a later pass."""


class ImapSetupError(Exception):
    """The intake cannot start with these settings; the message says why."""


def setup_problem(settings: Settings) -> str | None:
    """Why the IMAP intake must not start, or None."""
    imap = settings.imap
    if not imap.host or not imap.username:
        return "the IMAP intake needs imap.host and imap.username"
    if not imap.oauth2_token_file and not imap.password.get_secret_value():
        return "the IMAP intake needs imap.password or imap.oauth2_token_file"
    if not settings.smtp.allowed_senders and not imap.trusted:
        # Anyone on the internet can put mail into a mailbox: without the list it would
        # fax for anyone, an open relay to paid fax lines.
        return (
            "the IMAP intake would fax mail from anyone who writes to the mailbox: set "
            "smtp.allowed_senders, or imap.trusted = true if only trusted people can put "
            "mail into it"
        )
    return None


class ImapIntake:
    def __init__(
        self,
        settings: Settings,
        taker: MessageTaker,
        *,
        on_accept: Callable[[list[Job]], None] = lambda _jobs: None,
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings.imap
        self.taker = taker
        self.ledger = Ledger(taker.store)
        self._context = tls_context(self.settings)
        self._on_accept = on_accept
        self._on_refused = on_refused
        self._stop = threading.Event()
        self._writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="imap-spool")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = threading.Event()  # for tests and the status
        self.passes = 0  # mailbox passes done; for tests
        self.lost = 0  # messages another instance took first; for tests
        # For tests: called between a batch's commit and its move.
        self.before_move: Callable[[], None] = lambda: None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="imap-intake", daemon=True)
        self._thread.start()
        log.info(
            "imap watching host=%s port=%d tls=%s mailbox=%s",
            self.settings.host,
            self.settings.port,
            self.settings.tls,
            self.settings.mailbox,
        )

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, STOP_GRACE)
        self._writers.shutdown(wait=False)  # a thread past its grace must not block the loop
        log.info("imap intake stopped")

    # -- the thread

    def _run(self) -> None:
        delay = FIRST_RETRY
        while not self._stop.is_set():
            session = ImapSession(self.settings, self._context)
            try:
                session.connect()
                delay = FIRST_RETRY
                self._watch(session)
            except LoginRefused as exc:
                log.error("imap %s; trying again in %.0fs", exc, delay)
            except StoreTrouble as exc:
                # Logged where it happened (a full disk in plain words); nothing was kept.
                log.warning("imap %s; they stay in the mailbox, tried again in %.0fs", exc, delay)
            except Exception as exc:
                if self._stop.is_set():
                    break
                log.warning("imap connection lost: %s; trying again in %.0fs", exc, delay)
            finally:
                self.connected.clear()
                session.close()
            self._stop.wait(delay)
            delay = min(delay * 2, LAST_RETRY)

    def _watch(self, session: ImapSession) -> None:
        s = self.settings
        uidvalidity, (processed, refused) = session.open(
            s.mailbox, [s.processed_folder, s.refused_folder]
        )
        folders = {Outcome.PROCESSED: processed, Outcome.REFUSED: refused}
        self.connected.set()
        log.info("imap connected mailbox=%s idle=%s", s.mailbox, session.can_idle)
        while not self._stop.is_set():
            self.passes += 1
            if self._pass(session, uidvalidity, folders):
                # Mail that came meanwhile was announced in the answers to this pass's
                # commands, not at the next IDLE: look again until the mailbox is empty.
                continue
            if session.can_idle:
                session.idle(s.idle_renewal.total_seconds(), self._stop)
            else:
                self._stop.wait(s.poll_interval.total_seconds())

    def _pass(self, session: ImapSession, uidvalidity: int, folders: dict[Outcome, str]) -> int:
        """Take or move every message in the mailbox; how many there were."""
        mailbox = self.settings.mailbox
        session.forget_updates()
        uids = session.uids()
        if not uids:
            return 0
        earlier = self.ledger.outcomes(mailbox, uidvalidity, uids)
        if earlier:
            self._finish_moves(session, uidvalidity, folders, earlier)
        left = [uid for uid in uids if uid not in earlier]
        for at in range(0, len(left), BATCH):
            if self._stop.is_set():
                break
            taken = self._take_batch(mailbox, uidvalidity, session.fetch(left[at : at + BATCH]))
            self._tell(
                [job for _, done in taken for job in done.jobs],
                any(done.replied for _, done in taken),
            )
            self.before_move()
            if not taken:
                continue  # lost to another instance whole: the next pass moves it
            with self._moving():
                for outcome, folder in folders.items():
                    session.move([uid for uid, done in taken if done.outcome is outcome], folder)
        return len(uids)

    def _moving(self) -> AbstractContextManager[object]:
        """Moves of this mailbox's messages in turn with other instances' (see
        Store.imap_moves_in_turn)."""
        return self.taker.store.imap_moves_in_turn(self.settings.mailbox)

    def _finish_moves(
        self,
        session: ImapSession,
        uidvalidity: int,
        folders: dict[Outcome, str],
        earlier: dict[int, tuple[Outcome, str | None]],
    ) -> None:
        """Messages taken before a stop, or by another instance: moved now, never taken
        again. A move cut short may have left its copy in the folder already (MOVE need
        not be atomic): those are only removed from the mailbox, so that the folder holds
        each message once. One moved meanwhile by another instance is gone: its move
        does nothing (ImapSession.move)."""
        mailbox = self.settings.mailbox
        log.info("imap moving messages taken already count=%d", len(earlier))
        for outcome, folder in folders.items():
            mine = {uid: found for uid, (done, found) in earlier.items() if done is outcome}
            if not mine:
                continue
            with self._moving():
                copied = session.holding(folder, {m for m in mine.values() if m})
                if session.open(mailbox, [])[0] != uidvalidity:
                    raise ImapError(f"the mailbox {mailbox} was renumbered meanwhile")
                session.delete([uid for uid, found in mine.items() if found in copied])
                session.move([uid for uid, found in mine.items() if found not in copied], folder)

    def _take_batch(
        self, mailbox: str, uidvalidity: int, fetched: Iterable[tuple[int, bytes]]
    ) -> list[tuple[int, Taken]]:
        """Each message's outcome, committed together: read and judged one by one, their
        files written a few at once (each write waits for the disk), one transaction."""
        taken: list[tuple[int, Taken]] = []
        batch: list[Prepared] = []
        for uid, raw in fetched:
            found = read_message_id(raw)
            earlier = self.ledger.by_message_id(mailbox, found) if found else None
            if earlier is not None:  # taken under an earlier UIDVALIDITY
                log.info("imap message taken before message_id=%s", found)
                taken.append((uid, Taken(earlier, again=True)))
            else:
                batch.append(self.taker.decide(Place(mailbox, uidvalidity, uid), raw))
        self.taker.limit(batch)
        try:
            spooled = list(self._writers.map(self.taker.spool_files, batch))
            outcomes = self.taker.commit(spooled)
        except TakenElsewhere as lost:
            # No failure: another instance recorded some of these messages first, and
            # nothing of this batch was kept. The next pass, at once, finds those taken
            # (moving them, or finding them moved) and takes the batch's others.
            self.taker.discard(batch)
            log.info("imap %s; this batch is taken again without them", lost)
            self.lost += len(lost.uids)
            return taken
        except Exception as exc:
            self.taker.discard(batch)  # those spooled before the failure
            raise StoreTrouble(f"messages not stored: {exc}") from None
        taken += [(p.place.uid, done) for p, done in zip(spooled, outcomes, strict=True)]
        return taken

    def _tell(self, jobs: list[Job], replied: bool) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if jobs:
            loop.call_soon_threadsafe(self._on_accept, jobs)
        if replied:
            loop.call_soon_threadsafe(self._on_refused)


async def start_imap(
    settings: Settings,
    store: Store,
    *,
    on_accept: Callable[[list[Job]], None] = lambda _jobs: None,
    on_refused: Callable[[], None] = lambda: None,
) -> ImapIntake | None:
    """The running intake, or None when imap.enabled is off; ImapSetupError when it
    cannot start with these settings."""
    if not settings.imap.enabled:
        return None
    try:
        config = await handler_config(settings, setup_problem(settings))
    except SmtpSetupError as exc:
        raise ImapSetupError(str(exc)) from None
    taker = MessageTaker(
        config,
        store,
        Spool(settings.spool_dir),
        max_size=settings.smtp.max_message_size,
    )
    try:
        intake = ImapIntake(settings, taker, on_accept=on_accept, on_refused=on_refused)
    except (OSError, ssl.SSLError) as exc:
        raise ImapSetupError(f"cannot read imap.ca_file {settings.imap.ca_file}: {exc}") from None
    intake.start()
    return intake
