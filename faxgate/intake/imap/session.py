"""One IMAP connection, blocking, on the standard library's imaplib (see docs/email.md for
why): TLS from the start (993) or STARTTLS (143), a password or SASL XOAUTH2, the mailbox
and its two folders, and IDLE (RFC 2177).

imaplib (before Python 3.14) has no IDLE. It is a few lines here: IDLE is sent and every
line up to the end of the IDLE is read straight from the TLS socket, in short slices so
that a stop is noticed, then imaplib carries on (nothing is left unread between commands).
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final

from faxgate.settings import ImapSettings

TIMEOUT: Final = 30.0  # seconds any one command may take
_SLICE: Final = 0.25  # seconds between looks at the stop flag during IDLE
_UID: Final = re.compile(rb"UID (\d+)")
_LIST_DELIMITER: Final = re.compile(rb'\([^)]*\) (?:"((?:[^"\\]|\\.)*)"|NIL)')


class ImapError(Exception):
    """The server refused something or broke the protocol; the message says what."""


class LoginRefused(ImapError):
    pass


def tls_context(settings: ImapSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.ca_file or None)


def xoauth2(username: str, token: str) -> bytes:
    """The SASL XOAUTH2 initial response (Google's and Microsoft's)."""
    return f"user={username}\x01auth=Bearer {token}\x01\x01".encode()


def read_token(path: str) -> str:
    """The access token, read afresh: the tool that refreshes it rewrites the file."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise LoginRefused(f"cannot read imap.oauth2_token_file {path}: {exc.strerror}") from None
    if not token or any(ch.isspace() for ch in token):
        raise LoginRefused(f"imap.oauth2_token_file {path} does not hold one token")
    return token


def quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapSession:
    def __init__(self, settings: ImapSettings, context: ssl.SSLContext) -> None:
        self.settings = settings
        self._context = context
        self._imap: imaplib.IMAP4 | None = None
        self._idle_tags = 0

    # -- connecting

    def connect(self) -> None:
        s = self.settings
        if s.tls == "implicit":
            imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                s.host, s.port, ssl_context=self._context, timeout=TIMEOUT
            )
        else:
            imap = imaplib.IMAP4(s.host, s.port, timeout=TIMEOUT)
            try:
                imap.starttls(ssl_context=self._context)
            except BaseException:
                with contextlib.suppress(Exception):
                    imap.shutdown()
                raise
        self._imap = imap
        try:
            self._login(imap)
        except imaplib.IMAP4.error as exc:
            raise LoginRefused(f"the server refused the login of {s.username}: {exc}") from None
        # What the server has once logged in (MOVE, UIDPLUS): imaplib keeps what it said
        # before, and Dovecot, Gmail and Microsoft name more after (RFC 9051, 6.1.1).
        imap._get_capabilities()

    def _login(self, imap: imaplib.IMAP4) -> None:
        s = self.settings
        if s.oauth2_token_file:
            initial = xoauth2(s.username, read_token(s.oauth2_token_file))
            imap.authenticate("XOAUTH2", lambda _challenge: initial)
        else:
            imap.login(s.username, s.password.get_secret_value())

    def close(self) -> None:
        imap, self._imap = self._imap, None
        if imap is None:
            return
        with contextlib.suppress(Exception):
            imap.sock.settimeout(2.0)
            imap.logout()
        with contextlib.suppress(Exception):
            imap.shutdown()

    @property
    def imap(self) -> imaplib.IMAP4:
        if self._imap is None:
            raise ImapError("not connected")
        return self._imap

    @property
    def can_idle(self) -> bool:
        return "IDLE" in self.imap.capabilities

    @property
    def can_move(self) -> bool:
        """MOVE (RFC 6851), else COPY and EXPUNGE."""
        return "MOVE" in self.imap.capabilities

    # -- folders

    def open(self, mailbox: str, folders: Sequence[str]) -> tuple[int, list[str]]:
        """Select the mailbox, making `folders` first when missing; its UIDVALIDITY and
        the folders' names as the server spells them (its own hierarchy delimiter)."""
        delimiter = self._delimiter()
        names = [folder.replace("/", delimiter) if delimiter else folder for folder in folders]
        for name in names:
            self._ensure(name)
        status, data = self.imap.select(quoted(mailbox))
        _ok(status, data, f"cannot open the mailbox {mailbox}")
        _, values = self.imap.response("UIDVALIDITY")
        if not values or values[0] is None:
            raise ImapError(f"the server gave no UIDVALIDITY for {mailbox}")
        return int(values[0]), names

    def _delimiter(self) -> str:
        status, data = self.imap.list('""', '""')
        if status == "OK" and data and isinstance(data[0], bytes):
            found = _LIST_DELIMITER.match(data[0])
            if found and found.group(1):
                return found.group(1).decode()
        return ""

    def _ensure(self, name: str) -> None:
        status, data = self.imap.list('""', quoted(name))
        if status == "OK" and data and data[0] is not None:
            return
        status, data = self.imap.create(quoted(name))
        if status != "OK":  # made meanwhile by someone else?
            status2, data2 = self.imap.list('""', quoted(name))
            if not (status2 == "OK" and data2 and data2[0] is not None):
                _ok(status, data, f"cannot create the folder {name}")

    # -- messages

    def forget_updates(self) -> None:
        """Drop the untagged answers imaplib keeps (EXISTS, EXPUNGE, ...): a pass reads the
        mailbox afresh, and a long run would otherwise pile them up."""
        self.imap.untagged_responses.clear()

    def uids(self) -> list[int]:
        status, data = self.imap.uid("SEARCH", "UNDELETED")
        _ok(status, data, "cannot search the mailbox")
        return sorted(int(uid) for uid in (data[0] or b"").split())

    def fetch(self, uids: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        """Each message's UID and whole content; leaves it unread (BODY.PEEK)."""
        if not uids:
            return
        status, data = self.imap.uid("FETCH", _set(uids), "(UID BODY.PEEK[])")
        _ok(status, data, "cannot fetch messages")
        pending: bytes | None = None  # a content whose UID comes after it
        for item in data:
            if isinstance(item, tuple) and len(item) == 2:
                found = _UID.search(item[0])
                if found:
                    yield int(found.group(1)), bytes(item[1])
                else:
                    pending = bytes(item[1])
            elif isinstance(item, bytes) and pending is not None:
                found = _UID.search(item)
                if found:
                    yield int(found.group(1)), pending
                pending = None

    def holding(self, folder: str, message_ids: Iterable[str]) -> set[str]:
        """Which of `message_ids` `folder` holds. It selects `folder`: select the mailbox
        again after."""
        imap = self.imap
        found: set[str] = set()
        status, data = imap.select(quoted(folder), readonly=True)
        _ok(status, data, f"cannot open the folder {folder}")
        for message_id in message_ids:
            status, data = imap.uid("SEARCH", "HEADER", "Message-ID", quoted(message_id))
            if status == "OK" and data and data[0] and data[0].split():
                found.add(message_id)
        return found

    def delete(self, uids: Sequence[int]) -> None:
        """Remove messages from the mailbox (their copy is in a folder already)."""
        if not uids:
            return
        imap = self.imap
        status, data = imap.uid("STORE", _set(uids), "+FLAGS.SILENT", r"(\Deleted)")
        if status != "OK":
            left = self._still_here(uids)
            if not left:
                return  # removed meanwhile (another instance moved them)
            status, data = imap.uid("STORE", _set(left), "+FLAGS.SILENT", r"(\Deleted)")
            _ok(status, data, "cannot mark messages deleted")
            uids = left
        if "UIDPLUS" in imap.capabilities:
            status, data = imap.uid("EXPUNGE", _set(uids))
        else:
            status, data = imap.expunge()
        _ok(status, data, "cannot expunge messages")

    def move(self, uids: Sequence[int], folder: str) -> None:
        """Move messages to `folder`. Those gone from the mailbox meanwhile (another
        instance moved them) are passed over: the server answers OK for nothing, or NO
        ([EXPUNGEISSUED], Dovecot's answer) when the session has not yet heard of it."""
        if not uids:
            return
        imap = self.imap
        command = "MOVE" if self.can_move else "COPY"
        status, data = imap.uid(command, _set(uids), quoted(folder))
        if status != "OK":
            left = self._still_here(uids)
            if left == sorted(uids):
                _ok(status, data, f"cannot move messages to {folder}")
            self.move(left, folder)  # fewer each time: the others are gone
            return
        if command == "COPY":
            self.delete(uids)

    def _still_here(self, uids: Sequence[int]) -> list[int]:
        """Which of `uids` the mailbox still holds, not marked deleted (NOOP first: the
        server tells of messages removed by another session)."""
        imap = self.imap
        imap.noop()
        status, data = imap.uid("SEARCH", "UID", _set(uids), "UNDELETED")
        _ok(status, data, "cannot search the mailbox")
        return sorted(int(uid) for uid in (data[0] or b"").split())

    # -- waiting

    def idle(self, seconds: float, stop: threading.Event) -> bool:
        """IDLE until the server tells of a change, `seconds` pass or `stop` is set; True
        when the mailbox changed."""
        imap = self.imap
        sock = imap.sock
        self._idle_tags += 1
        tag = b"FXIDLE%d" % self._idle_tags
        imap.send(tag + b" IDLE\r\n")
        lines = _Lines(sock)
        first = lines.next(TIMEOUT, None)
        if first is None or not first.startswith(b"+"):
            raise ImapError(f"the server refused IDLE: {first!r}")
        changed = False
        deadline = time.monotonic() + seconds
        try:
            while not stop.is_set() and not changed:
                line = lines.next(min(_SLICE, max(0.0, deadline - time.monotonic())), stop)
                if line is None:
                    if time.monotonic() >= deadline:
                        break
                    continue
                if line.startswith(b"* BYE"):
                    raise ImapError(f"the server ended the connection: {line!r}")
                if line.startswith(b"* ") and (b"EXISTS" in line or b"RECENT" in line):
                    changed = True
        finally:
            if not stop.is_set():
                imap.send(b"DONE\r\n")
                while True:
                    line = lines.next(TIMEOUT, None)
                    if line is None:
                        raise ImapError("the server did not end IDLE")
                    if line.startswith(tag + b" "):
                        break
            sock.settimeout(TIMEOUT)
        return changed


class _Lines:
    """Lines read straight from the socket, waiting at most a given time for each."""

    def __init__(self, sock: object) -> None:
        self._sock = sock
        self._buffer = b""

    def next(self, seconds: float, stop: threading.Event | None) -> bytes | None:
        deadline = time.monotonic() + seconds
        while b"\r\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or (stop is not None and stop.is_set()):
                return None
            self._sock.settimeout(left)  # type: ignore[attr-defined]
            try:
                chunk = self._sock.recv(65536)  # type: ignore[attr-defined]
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            if not chunk:
                raise ImapError("the server closed the connection")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line


def _set(uids: Sequence[int]) -> str:
    return ",".join(str(uid) for uid in uids)


def _ok(status: str, data: object, what: str) -> None:
    if status != "OK":
        raise ImapError(f"{what}: {status} {data!r}")
