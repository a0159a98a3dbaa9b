"""Reloading the settings while running (SIGHUP, `systemctl reload faxgate`).

The settings are read again the way the daemon first read them (the same file, FAXGATE_*
variables and credentials). Settings that cannot be used change nothing: one error line,
and the daemon goes on with the settings in use. Otherwise the old and new settings are
compared key by key (`plan_reload`, pure):

- applied at once: the log level; the number rules; the SMTP sender allowlist, fax
  domains, recipient and daily limits, cover mode and sending lines (a connection already
  open keeps going, its next MAIL FROM and RCPT TO meet the new rules); inbound routes;
  hot folders (added ones are watched, removed ones finish the files they are claiming and
  stop, kept ones take their new options); the sending policy (jobs waiting for a rule are
  judged again by the new rules when their moment comes, or at once after a reload);
- everything else (listen addresses, state_dir, the provider and its credentials, TLS and
  SMTP users, the HTTP server, mail, timers) keeps its value until a restart, and the log
  says which keys wait for one.

Nothing is dropped: listeners stay bound and connections open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from pydantic import BaseModel

from faxgate import systemd
from faxgate.domain.inbound_routes import RoutingTable
from faxgate.inbound.receiver import InboundReceiver, routing_from_settings
from faxgate.intake.folder.folders import FolderReload, HotFolders
from faxgate.intake.folder.runner import FolderError
from faxgate.intake.imap.watcher import ImapIntake
from faxgate.intake.smtp.handler import HandlerConfig
from faxgate.intake.smtp.listener import SmtpListener, SmtpSetupError, handler_config
from faxgate.intake.smtp.policy import exposure_problem
from faxgate.settings import ConfigError, PolicySettings, Settings

log = logging.getLogger("faxgate.reload")

RUNNING_STATUS: Final = "READY=1\nSTATUS=faxgate is running"

# What a reload applies; any other setting, including sections added later, waits for a
# restart. A whole section by its name, a single setting by "section.key".
LIVE: Final = frozenset(
    {
        "log_level",
        "numbers",
        "addressing",
        "inbound.routes",
        "inbound.default_email",
        "inbound.default_folder",
        "folders",
        "smtp.domains",
        "smtp.max_recipients",
        "smtp.daily_limit",
        "smtp.allowed_senders",
        "smtp.cover",
        "smtp.default_line",
        "smtp.sender_lines",
        "policy",
        "retention",
    }
)


# ---------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """The settings a reload changes, by key ("smtp.allowed_senders"), in settings order."""

    applied: tuple[str, ...] = ()
    restart_needed: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.restart_needed)

    def touches(self, *sections: str) -> bool:
        """Does it apply a change to any of these sections (or top-level keys)?"""
        return any(key.partition(".")[0] in sections for key in self.applied)

    def summary(self) -> str:
        return (
            f"reload applied={','.join(self.applied) or 'none'} "
            f"restart_needed={','.join(self.restart_needed) or 'none'}"
        )


def changed_keys(old: Settings, new: Settings) -> list[str]:
    """Every setting whose value differs, as "key" or "section.key". Values are compared,
    never shown."""
    keys = []
    for name in type(old).model_fields:
        before, after = getattr(old, name), getattr(new, name)
        if isinstance(before, BaseModel) and type(before) is type(after):
            keys += [
                f"{name}.{key}"
                for key in type(before).model_fields
                if getattr(before, key) != getattr(after, key)
            ]
        elif before != after:
            keys.append(name)
    return keys


def is_live(key: str) -> bool:
    return key in LIVE or key.partition(".")[0] in LIVE


def plan_reload(old: Settings, new: Settings) -> ReloadPlan:
    """What a reload from `old` to `new` applies, and what waits for a restart. Pure."""
    keys = changed_keys(old, new)
    return ReloadPlan(
        applied=tuple(key for key in keys if is_live(key)),
        restart_needed=tuple(key for key in keys if not is_live(key)),
    )


def settings_in_use(old: Settings, new: Settings, plan: ReloadPlan) -> Settings:
    """The settings after the reload: the new values of what it applies, the old ones of
    the rest. Pure."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key in plan.applied:
        section, _, name = key.partition(".")
        if name:
            sections.setdefault(section, {})[name] = getattr(getattr(new, section), name)
        else:
            top[section] = getattr(new, section)
    for section, values in sections.items():
        top[section] = getattr(old, section).model_copy(update=values)
    return old.model_copy(update=top)


def reload_problem(in_use: Settings) -> str | None:
    """Why settings that passed validation still cannot be applied, or None. Pure."""
    smtp = in_use.smtp
    # The listener stays on its address: a new allowlist must not open it to anyone.
    return exposure_problem(
        smtp.listen.host, has_users=bool(smtp.users), has_allowlist=bool(smtp.allowed_senders)
    )


# ---------------------------------------------------------------------------- applying


class PolicyUser(Protocol):
    """What applies a new sending policy (faxgate.sending.dispatcher.Dispatcher)."""

    async def apply_policy(self, settings: PolicySettings) -> None: ...


class Wakeable(Protocol):
    def wake(self) -> None: ...


class Running(Protocol):
    """The parts of a running daemon a reload changes (faxgate.app.Daemon)."""

    settings: Settings
    smtp: SmtpListener | None
    inbound: InboundReceiver | None
    folders: HotFolders | None
    imap: ImapIntake | None

    @property
    def purger(self) -> Wakeable | None:
        """Reads [retention] at each pass; woken to read it now."""

    @property
    def dispatcher(self) -> PolicyUser: ...


class ReloadRefused(Exception):
    """The new settings cannot be applied; the message says why, without values."""


@dataclass
class _Prepared:
    """Everything a reload builds before it changes anything (each may fail)."""

    smtp: HandlerConfig | None = None
    routing: RoutingTable | None = None
    folders: FolderReload | None = None


def _leave_log_level(_level: str) -> None:
    """In-process daemons (tests) leave the logging to their host."""


@dataclass
class Reloader:
    """Reloads one daemon's settings, one reload at a time.

    `load` reads the settings as the daemon first read them (None: it was handed them,
    nothing to read again); `set_log_level` applies a log level ("info").
    """

    load: Callable[[], Settings] | None = None
    set_log_level: Callable[[str], None] = _leave_log_level
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    _stopping: bool = field(default=False, init=False, repr=False)

    async def reload(self, daemon: Running) -> ReloadPlan | None:
        """Read the settings again and apply what can change; None when they cannot be
        used (logged; the settings in use stay)."""
        async with self._reloading():
            if self.load is None:
                log.warning("reload: nothing to read again, the daemon was handed its settings")
                return None
            try:
                new = await asyncio.to_thread(self.load)
            except ConfigError as exc:
                log.error("reload refused, the settings in use stay: %s", _one_line(str(exc)))
                return None
            return await self._apply(daemon, new)

    async def reload_from(self, daemon: Running, new: Settings) -> ReloadPlan | None:
        """Apply what can change of `new`; None when it cannot be used."""
        async with self._reloading():
            return await self._apply(daemon, new)

    @contextlib.asynccontextmanager
    async def serving(self, daemon: Running, requests: asyncio.Event | None) -> AsyncIterator[None]:
        """Reload each time `requests` is set (by SIGHUP), while the context lasts; at its
        end a reload in hand finishes first."""
        if requests is None:
            yield
            return
        task = asyncio.create_task(self._serve(daemon, requests), name="reloader")
        try:
            yield
        finally:
            self._stopping = True
            async with self._lock:  # a reload in hand ends; the next one never starts
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _serve(self, daemon: Running, requests: asyncio.Event) -> None:
        while True:
            await requests.wait()
            requests.clear()  # signals meanwhile make one more reload, not one each
            try:
                await self.reload(daemon)
            except Exception:
                # A bug must not end reloading for good; the next SIGHUP tries again.
                log.exception("reload failed")

    @contextlib.asynccontextmanager
    async def _reloading(self) -> AsyncIterator[None]:
        async with self._lock:
            systemd.reloading()
            try:
                yield
            finally:
                if not self._stopping:  # after STOPPING=1, no READY=1
                    systemd.notify(RUNNING_STATUS)

    async def _apply(self, daemon: Running, new: Settings) -> ReloadPlan | None:
        old = daemon.settings
        plan = plan_reload(old, new)
        in_use = settings_in_use(old, new, plan)
        try:
            prepared = await _prepare(daemon, in_use, plan)
        except ReloadRefused as exc:
            log.error("reload refused, the settings in use stay: %s", exc)
            return None
        if plan.restart_needed:
            log.warning("reload: needs a restart keys=%s", ",".join(plan.restart_needed))
        daemon.settings = in_use
        if prepared.smtp is not None and daemon.smtp is not None:
            daemon.smtp.handler.config = prepared.smtp  # one object: MAIL sees old or new
        if prepared.smtp is not None and daemon.imap is not None:
            daemon.imap.taker.config = prepared.smtp  # the mailbox's mail reads by the same
        if prepared.routing is not None and daemon.inbound is not None:
            daemon.inbound.reroute(prepared.routing)
        if plan.touches("policy"):
            # Whole, between two cycles' reads: a cycle judges by the old or the new rules.
            await daemon.dispatcher.apply_policy(in_use.policy)
        if plan.touches("retention") and daemon.purger is not None:
            daemon.purger.wake()
        if "log_level" in plan.applied:
            self.set_log_level(in_use.log_level)
        if prepared.folders is not None and daemon.folders is not None:
            await daemon.folders.apply_reload(prepared.folders)
        log.info("%s", plan.summary())
        return plan


async def _prepare(daemon: Running, in_use: Settings, plan: ReloadPlan) -> _Prepared:
    """Build the new parts; ReloadRefused when one cannot be built. Changes nothing."""
    prepared = _Prepared()
    # The contacts file is read again on every reload: it changes without the settings.
    contacts = bool(in_use.addressing.contacts_file)
    if daemon.smtp is not None and (plan.touches("smtp", "numbers", "addressing") or contacts):
        try:
            prepared.smtp = await handler_config(in_use, reload_problem(in_use))
        except SmtpSetupError as exc:
            raise ReloadRefused(str(exc)) from None
    if daemon.inbound is not None and plan.touches("inbound", "numbers"):
        try:
            prepared.routing = routing_from_settings(in_use)
        except ValueError as exc:
            raise ReloadRefused(str(exc)) from None
    if daemon.folders is not None and plan.touches("folders", "numbers"):
        try:
            prepared.folders = await asyncio.to_thread(
                daemon.folders.prepare_reload, in_use.folders, in_use.numbers.policy()
            )
        except FolderError as exc:
            raise ReloadRefused(str(exc)) from None
    return prepared


def _one_line(message: str) -> str:
    """A ConfigError's lines ("invalid settings in X:", "  key: why", ...) as one."""
    first, *rest = [line.strip() for line in message.splitlines() if line.strip()]
    return f"{first} {'; '.join(rest)}" if rest else first
