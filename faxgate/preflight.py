"""Before anything starts: can faxgate work with these settings on this machine?

`preflight(settings)` looks at everything a start needs and returns every problem it finds,
each in plain words, so that one failed start names them all instead of the first:

- the state directory, the spool, the Maildir (when no relay is set), the inbound uploads,
  every hot folder with its sent/, failed/ and processing/ folders, and every inbound
  output folder: each exists or can be made, and a file can really be written in it and
  removed (a probe file, not os.access, which answers yes to root on a read-only mount);
- the store, when it exists: a database this faxgate can read and write;
- no other faxgate uses the state directory;
- the listen addresses are free (and not the same twice);
- settings that only mean something on this machine: the SMTP listener's exposure, its
  TLS files, the inbound routes' numbers.

A full disk is no reason not to start: it is logged, and faxgate answers 451 and leaves
dropped files in place until there is room. Whether a hot folder is on the spool's file
system needs no check: claiming moves files by hard link where it can and copies them
(flushed, then the original removed) where it cannot (see folder_claims).

Blocking IO: the daemon calls it from a worker thread, before it starts anything.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import pwd
import secrets
import socket
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from faxgate.inbound.receiver import UPLOAD_DIR_NAME, routing_from_settings
from faxgate.intake.folder.claims import CLAIMS_DIR
from faxgate.intake.folder.status import Places
from faxgate.intake.smtp.listener import SmtpSetupError, tls_context
from faxgate.intake.smtp.policy import exposure_problem
from faxgate.settings import FolderSettings, ListenAddress, Settings
from faxgate.store import MIGRATIONS
from faxgate.store.spool import FULL_ERRNOS, disk_trouble

log = logging.getLogger("faxgate")

PORT_IN_USE: Final = "the port is in use (another program, or another faxgate, listens there)"
LOCK_NAME: Final = "faxgate.lock"  # app._single_instance holds it while faxgate runs
# Hidden, and shaped like the temporary files the hot folder sweeps at start
# (folder_files.sweep_temporaries), so that even a probe a crash left behind goes.
_PROBE: Final = ".faxgate-probe.{}.tmp"


def preflight(settings: Settings) -> list[str]:
    """Every problem that stops faxgate from working with these settings; [] to go."""
    found = _Found()
    if not _usable_dir(found, settings.state_dir, "the state directory (state_dir)"):
        # Nothing under it can be right; the folders elsewhere still can be checked.
        _check_folders(found, settings)
        return found.done()
    running = another_faxgate(settings.state_dir)
    if running:
        return [running]  # its listeners and files are in use, by faxgate itself
    for path, what in _state_folders(settings):
        _usable_dir(found, path, what)
    if settings.store.url:
        found += filter(None, [postgres_store_problem(settings)])
    else:
        found += filter(None, [store_problem(settings.database_path)])
    _check_folders(found, settings)
    found += _listen_problems(settings)
    found += settings_problems(settings)
    return found.done()


def summary(problems: Sequence[str]) -> str:
    """One message for a StartupError: the problem, or every problem numbered."""
    if len(problems) == 1:
        return problems[0]
    numbered = "; ".join(f"({n}) {text}" for n, text in enumerate(problems, start=1))
    return f"faxgate cannot start, for {len(problems)} reasons: {numbered}"


def folder_problems(settings: Settings) -> list[str]:
    """What keeps faxgate from writing in its folders: the state directory and those under
    it, the hot folders, the inbound output folders (each made when missing, then probed)."""
    found = _Found()
    if _usable_dir(found, settings.state_dir, "the state directory (state_dir)"):
        for path, what in _state_folders(settings):
            _usable_dir(found, path, what)
    _check_folders(found, settings)
    return found.done()


def hot_folder_problems(folder: FolderSettings) -> list[str]:
    """What keeps one hot folder from being used (also for a folder added by a reload)."""
    found = _Found()
    _check_hot_folder(found, folder)
    return found.done()


class _Found(list[str]):
    """The problems found so far, and the folders found on a full disk."""

    def __init__(self) -> None:
        super().__init__()
        self.full: list[Path] = []

    def done(self) -> list[str]:
        if self.full:
            # A full disk is said once, however many folders are on it.
            log.warning(
                "folders on a full disk, where faxgate takes no mail or files until space "
                "is freed: %s",
                ", ".join(str(path) for path in self.full),
            )
        return list(dict.fromkeys(self))


# ---------------------------------------------------------------------------- folders


def _state_folders(settings: Settings) -> list[tuple[Path, str]]:
    """The folders under the state directory faxgate writes in."""
    folders = [
        (settings.spool_dir, "the spool"),
        (settings.state_dir / UPLOAD_DIR_NAME, "the folder for inbound uploads"),
    ]
    if settings.folders:
        folders.append((settings.spool_dir / CLAIMS_DIR, "the spool's hot folder claims"))
    if not settings.mail.relay:
        maildir = settings.maildir
        folders.append((maildir, "the Maildir for outgoing mail (mail.relay is empty)"))
        # Made with the Maildir; a person may have emptied it since.
        folders += [(maildir / part, "the Maildir") for part in ("tmp", "new") if maildir.exists()]
    if settings.provider.kind == "sandbox" and not settings.provider.base_url:
        folders.append((settings.sandbox_state_dir, "the built-in sandbox's folder"))
    return folders


def _check_hot_folder(found: _Found, folder: FolderSettings) -> None:
    places = Places.of(folder)
    if not places.folder.is_dir():
        found.append(f"the hot folder {places.folder} does not exist (or is not a folder)")
    elif _usable_dir(found, places.folder, "the hot folder", create=False):
        for path, name in (
            (places.sent, "sent_dir"),
            (places.failed, "failed_dir"),
            (places.processing, "processing_dir"),
        ):
            _usable_dir(found, path, f"the {name} of the hot folder {places.folder}")


def _check_folders(found: _Found, settings: Settings) -> None:
    """The hot folders and the inbound output folders."""
    for folder in settings.folders:
        _check_hot_folder(found, folder)
    inbound = settings.inbound
    targets = {inbound.default_folder: "[inbound] default_folder"} if inbound.default_folder else {}
    for n, route in enumerate(inbound.routes, start=1):
        if route.folder:
            targets.setdefault(route.folder, f"the folder of inbound route {route.name or n!r}")
    for target, what in targets.items():
        _usable_dir(found, Path(target), what)


def _usable_dir(found: _Found, path: Path, what: str, *, create: bool = True) -> bool:
    """Whether `path` is a folder faxgate can write in (made when missing and `create`);
    if not, why is added to `found`."""
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        if not path.is_dir():
            found.append(f"{what} {path} is not a folder")
            return False
    except FileExistsError:
        found.append(f"{what} {path} is not a folder")
        return False
    except OSError as exc:
        found.append(f"{what} {path} does not exist and cannot be made: {_words(exc)}")
        return False
    probe = path / _PROBE.format(secrets.token_hex(4))
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, b"faxgate")
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(probe)
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            found.full.append(path)
            return True
        found.append(f"faxgate cannot write in {what} {path}: {_words(exc)}")
        return False
    return True


def another_faxgate(state_dir: Path) -> str | None:
    """Why this state directory is taken: another faxgate runs with it; None when free."""
    try:
        fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None  # the state directory's own check says why
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return f"another faxgate is already running with the state directory {state_dir}"
    finally:
        os.close(fd)  # the lock, if taken, goes with it
    return None


def postgres_store_problem(settings: Settings) -> str | None:
    """A PostgreSQL store that cannot be used: not reachable, or too new."""
    # Imported here: the driver costs every start that never uses it.
    import psycopg

    from faxgate.store.pg_migrations import PG_MIGRATIONS, pg_schema_version
    from faxgate.store.postgres import CHECK_TIMEOUT, without_password

    location = without_password(settings.store.url)
    password = settings.store.password.get_secret_value()
    options: dict[str, Any] = {"password": password} if password else {}
    try:
        with psycopg.connect(
            settings.store.url, connect_timeout=CHECK_TIMEOUT, autocommit=True, **options
        ) as conn:
            version = pg_schema_version(conn)
    except psycopg.Error as exc:
        said = " ".join(str(exc).split())
        return f"the store {location} cannot be reached (store.url): {said}"
    if version > len(PG_MIGRATIONS):
        return (
            f"the store {location} was written by a newer faxgate (schema version {version};"
            f" this one knows up to {len(PG_MIGRATIONS)}): upgrade faxgate"
        )
    return None


def store_problem(path: Path) -> str | None:
    """A store that exists but cannot be used: unwritable, not a database, too new."""
    if not path.exists():
        return None  # made at start
    for file in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
        try:
            os.close(os.open(file, os.O_RDWR))
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"faxgate cannot write its store {file}: {_words(exc)}"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"the store {path} cannot be read: {disk_trouble(exc) or exc}"
    if version > len(MIGRATIONS):
        return (
            f"the store {path} was written by a newer faxgate (schema version {version}; "
            f"this one knows up to {len(MIGRATIONS)}): upgrade faxgate"
        )
    return None


# ---------------------------------------------------------------------------- listening


def listeners(settings: Settings) -> list[tuple[str, str, ListenAddress]]:
    """What faxgate listens with, the setting, and the address: (what, key, address)."""
    found = [
        ("the HTTP server", "http.listen", settings.http.listen),
        ("the SMTP listener", "smtp.listen", settings.smtp.listen),
    ]
    if settings.provider.kind == "sandbox" and not settings.provider.base_url:
        found.insert(0, ("the built-in sandbox", "sandbox.listen", settings.sandbox.listen))
    return found


def _listen_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    taken: dict[ListenAddress, str] = {}
    for what, _, address in listeners(settings):
        if address.port == 0:
            continue  # any free port
        if address in taken:
            problems.append(f"{what} and {taken[address]} are both set to listen on {address}")
            continue
        taken[address] = what
        problem = listen_problem(address)
        if problem:
            problems.append(f"{what} cannot listen on {address}: {problem}")
    return problems


def listen_problem(address: ListenAddress) -> str | None:
    """Why a listener could not bind `address` now (a probe bound and closed at once, as
    asyncio binds: SO_REUSEADDR, IPv6 sockets for IPv6 only); None when it could."""
    host, port = address
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        return f"{host!r} is not a name or address of this machine ({exc.strerror})"
    for family, kind, proto, _, where in found:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(where)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return PORT_IN_USE
                if exc.errno == errno.EACCES:
                    return (
                        "permission denied (a port below 1024 needs the "
                        "CAP_NET_BIND_SERVICE capability)"
                    )
                if exc.errno == errno.EADDRNOTAVAIL:
                    return f"{host} is not an address of this machine"
                return exc.strerror or str(exc)
    return None


# ---------------------------------------------------------------------------- settings


def settings_problems(settings: Settings) -> list[str]:
    """Settings that are valid on paper but cannot work here."""
    problems: list[str] = []
    smtp = settings.smtp
    exposed = exposure_problem(
        smtp.listen.host, has_users=bool(smtp.users), has_allowlist=bool(smtp.allowed_senders)
    )
    if exposed:
        problems.append(exposed)
    try:
        tls_context(smtp)
    except SmtpSetupError as exc:
        problems.append(str(exc))
    try:
        routing_from_settings(settings)
    except ValueError as exc:
        problems.append(str(exc))
    return problems


# ---------------------------------------------------------------------------- words


def _words(exc: OSError) -> str:
    """What went wrong, for the person who can mend it."""
    if exc.errno == errno.EROFS:
        return "the file system is read-only (under systemd, list the folder in ReadWritePaths=)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied for the user {_user()}"
    return disk_trouble(exc) or exc.strerror or str(exc)


def _user() -> str:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
