"""The composition root: builds every part from the settings, runs them, stops them.

Parts start in order and stop in reverse (an AsyncExitStack), so a part only ever sees the
parts it depends on alive. The long-running parts (dispatcher, poller, notifier) talk to
each other only through the store; the tracker's progress callback merely wakes them early.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from faxgate import metrics, systemd
from faxgate.clock import utc_now
from faxgate.domain.inbound import NOTIFICATION_KIND as INBOUND
from faxgate.domain.jobs import Intake, Job
from faxgate.domain.provider import FaxProvider, ProviderError
from faxgate.dropbox_fax.client import DropboxFaxClient
from faxgate.dropbox_fax.sandbox import DropboxFaxSandbox
from faxgate.hellofax import sandbox as sandbox_server
from faxgate.hellofax.client import HelloFaxClient
from faxgate.hellofax.errors import HelloFaxError
from faxgate.hellofax.provider import HelloFaxProvider
from faxgate.hellofax.sandbox import Sandbox as V1Sandbox
from faxgate.inbound.receiver import InboundReceiver
from faxgate.instances import sharing
from faxgate.intake.folder.folders import HotFolders
from faxgate.intake.folder.runner import FolderError
from faxgate.intake.imap.taking import REFUSAL_KIND
from faxgate.intake.imap.watcher import ImapIntake, ImapSetupError, start_imap
from faxgate.intake.smtp.listener import SmtpListener, SmtpSetupError, start_smtp
from faxgate.notify.confirmation import Confirmations
from faxgate.notify.folder_result import folder_reporter
from faxgate.notify.imap_refusal import refusal_reply_handler
from faxgate.notify.inbound_delivery import inbound_deliverer
from faxgate.notify.mail_reply import smtp_report_handler
from faxgate.notify.mailer import mailer_from_settings
from faxgate.notify.notifier import Notifier, default_handlers
from faxgate.preflight import preflight, summary
from faxgate.providers import document_fetcher, open_provider
from faxgate.reload import Reloader, ReloadPlan
from faxgate.retention import Purger
from faxgate.sandbox.server import SandboxServer
from faxgate.sending.dispatcher import Dispatcher
from faxgate.sending.policy import SendingPolicy
from faxgate.sending.poller import Poller
from faxgate.sending.tracker import Tracker
from faxgate.settings import Settings
from faxgate.setup_warnings import setup_warnings
from faxgate.store import Member, Share, Store, StoreError, gone_after, new_owner
from faxgate.store.spool import Spool
from faxgate.web.callbacks import callback_token, callback_urls, event_callback_url
from faxgate.web.guard import StatusAccess
from faxgate.web.health import ClusterLook, Health, ProviderHealth
from faxgate.web.server import HttpServer, build_app, start_http
from faxgate.web.statuspage import Cluster, StatusPage

log = logging.getLogger("faxgate")
T = TypeVar("T")

# How long a stop waits for sends already in flight before cutting them off.
DRAIN_SECONDS = 20.0


class StartupError(Exception):
    """faxgate cannot start; the message says why in plain words."""


@dataclass
class Daemon:
    """What a running faxgate is made of; tests reach into it."""

    settings: Settings
    store: Store
    provider: FaxProvider
    dispatcher: Dispatcher
    poller: Poller
    notifier: Notifier
    http: HttpServer
    sandbox: SandboxServer | None
    smtp: SmtpListener | None = None
    health: Health | None = None
    folders: HotFolders | None = None
    inbound: InboundReceiver | None = None
    imap: ImapIntake | None = None
    # Its name and lease among the instances sharing a PostgreSQL store (None: alone).
    share: Share | None = None
    # Removes the documents [retention] documents no longer keeps, every interval.
    purger: Purger | None = None
    # Reads the settings again on SIGHUP; `faxgate run` tells it how (faxgate/reload.py).
    reloader: Reloader = field(default_factory=Reloader)

    @property
    def client(self) -> HelloFaxClient:
        """The HelloFax v1 client, for v1's own calls (the account's callback URLs)."""
        if not isinstance(self.provider, HelloFaxProvider):
            raise AttributeError(f"{self.provider.name} has no HelloFax v1 client")
        return self.provider.client

    async def reload(self) -> ReloadPlan | None:
        """Read the settings again and apply what can change while running."""
        return await self.reloader.reload(self)

    async def reload_from(self, settings: Settings) -> ReloadPlan | None:
        """Apply what can change of `settings` while running; the rest waits for a restart."""
        return await self.reloader.reload_from(self, settings)


@contextlib.contextmanager
def _single_instance(state_dir: Path) -> Iterator[None]:
    """One daemon per state directory: two dispatchers would each take the other's
    in-flight sends for lost ones."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / "faxgate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StartupError(
                f"another faxgate is already running with the state directory {state_dir}"
            ) from None
        with contextlib.suppress(OSError):  # only for people; a full disk may refuse it
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[Daemon]:
    """Start every part; yield the running daemon; stop everything on exit."""
    async with contextlib.AsyncExitStack() as parts:
        # Every problem a start would meet, all named at once (faxgate/preflight.py).
        problems = await asyncio.to_thread(preflight, settings)
        if problems:
            raise StartupError(summary(problems))
        parts.enter_context(_single_instance(settings.state_dir))
        for warning in setup_warnings(settings):
            log.warning("%s", warning)

        sandbox: SandboxServer | None = None
        if settings.builtin_sandbox:
            # The face the settings ask for, over the same simulation.
            face = DropboxFaxSandbox if settings.provider_api == "dropbox_fax" else V1Sandbox
            sandbox = face(sandbox_settings(settings))
            await _bind(sandbox.start(), "the sandbox", str(settings.sandbox.listen))
            parts.push_async_callback(sandbox.stop)
            log.info("sandbox listening base_url=%s", sandbox.base_url)

        try:
            store = await asyncio.to_thread(open_store, settings)
        except (sqlite3.Error, StoreError) as exc:  # a full disk, say: in plain words
            # PostgreSQL's errors already name the store (without its password).
            said = (
                str(exc)
                if settings.store.url
                else f"cannot open the store {store_location(settings)}: {exc}"
            )
            raise StartupError(said) from None
        parts.callback(store.close)
        # Sharing a PostgreSQL store with other instances: work is claimed under this
        # instance's name, with a lease. Alone on SQLite, the parts read it as always.
        share = Share(new_owner(), settings.store.lease) if settings.store.url else None
        await asyncio.to_thread(Spool(settings.spool_dir).cleanup_orphans)
        parts.enter_context(metrics.watching_jobs(store.count_by_state))
        store_probe = store.probe()
        parts.enter_context(metrics.watching_queue_age(store_probe.oldest_due_seconds))
        parts.enter_context(
            metrics.watching_waits(
                lambda: store.count_waiting(utc_now(), dispatcher.policy.per_number)
            )
        )
        provider_health = ProviderHealth()

        def api_request(endpoint: str, outcome: int | str) -> None:
            metrics.count_api_request(endpoint, outcome)
            provider_health.observe(endpoint, outcome)

        provider = open_provider(settings, sandbox.base_url if sandbox else None, api_request)
        parts.push_async_callback(provider.aclose)

        mailer = mailer_from_settings(settings.mail, settings.maildir)
        # Reports go to the reporter of the intake a job came from (see notifier.py).
        confirmations = Confirmations(settings.reports.confirmation)
        reporters = default_handlers(mailer, store, confirmations)
        reporters[Intake.SMTP.value] = smtp_report_handler(
            mailer,
            store,
            attach_document=settings.smtp.attach_document,
            confirmations=confirmations,
        )
        # An inbound fax's deliveries (mail, folder) go through the outbox too.
        reporters[INBOUND] = await inbound_deliverer(settings, store, mailer, confirmations.drawer)
        reporters[Intake.FOLDER.value] = folder_reporter(
            store, mailer, settings.spool_dir, confirmations
        )
        reporters[REFUSAL_KIND] = refusal_reply_handler(mailer)
        notifier = Notifier(store, reporters, share=share)
        callbacks_expected = sandbox is not None or bool(settings.http.public_url)
        dispatcher = Dispatcher(
            store,
            provider,
            settings.dispatch,
            polling=settings.polling,
            first_poll=settings.polling.callback_grace if callbacks_expected else None,
            # A callback that beat the send's answer is applied once the GUID is recorded.
            on_progress=lambda job: tracker.catch_up(job),
            provider_removes=settings.provider_removes_sent,
            unmatched=lambda: tracker.unmatched(),
            callbacks_expected=callbacks_expected,
            callback_retry_scale=settings.callback_retry_scale,
            share=share,
            policy=SendingPolicy.from_settings(settings.policy),
        )
        try:
            folders = HotFolders.prepare(
                settings, store, wake=dispatcher.wake, owner=share.owner if share else None
            )
        except FolderError as exc:
            raise StartupError(str(exc)) from None

        def progress(_job: Job) -> None:
            dispatcher.wake()  # capacity may be free
            notifier.wake()  # an outcome may wait in the outbox

        tracker = Tracker(
            store,
            settings.retry.policy(),
            on_progress=progress,
            on_unmatched=dispatcher.evidence_arrived,
            shared=share is not None,
            retry_for=lambda job, base: dispatcher.policy.retries(job, base),
        )
        poller = Poller(store, provider, tracker, settings.polling, share=share)

        token = callback_token(settings)
        try:
            inbound = InboundReceiver.from_settings(settings, store, on_stored=notifier.wake)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        # Sharing the store: the cluster on /metrics, /healthz and the status page.
        cluster, cluster_look = None, None
        if share is not None:
            gone = gone_after(share.lease)

            def members(now: datetime) -> list[Member]:
                return store.cluster(now, gone)

            parts.enter_context(metrics.watching_cluster(lambda: members(utc_now())))
            cluster = Cluster(share.owner, members)
            cluster_look = ClusterLook(
                share.owner, lambda now: sum(member.alive for member in members(now))
            )
        health = Health(
            store_probe,
            provider_health,
            callbacks_expected=callbacks_expected,
            cluster=cluster_look,
        )
        app = build_app(
            token=token,
            tracker=tracker,
            max_body=settings.http.max_callback_size,
            inbound=inbound,
            upload_dir=inbound.upload_dir,
            health=health,
            status_page=StatusPage(
                store,
                health=health,
                recent_inbound=store.recent_inbound,
                calls_per_number=lambda: dispatcher.policy.per_number,
                cluster=cluster,
            ),
            page_image=confirmations.thumbnail,
            job_report=confirmations.on_request,
            status_access=StatusAccess(
                user=settings.http.status_user,
                password=settings.http.status_password.get_secret_value(),
                trust_header=settings.http.status_trust_header,
            ),
            event_key=settings.provider_api_key() if settings.provider_api == "dropbox_fax" else "",
            fetch_document=document_fetcher(provider),
        )
        http = await _bind(
            start_http(app, settings.http.listen.host, settings.http.listen.port),
            "the HTTP server",
            str(settings.http.listen),
        )
        parts.push_async_callback(http.stop)
        if sandbox is not None and isinstance(provider, HelloFaxProvider):
            await _register_callbacks(provider.client, callback_urls(settings, token, http.port))
        if sandbox is not None and isinstance(provider, DropboxFaxClient):
            await _register_events(provider, event_callback_url(settings, token, http.port))

        if share is not None:
            # Before anything is claimed: the leases are renewed from the first claim on.
            wake = {"jobs": [dispatcher.wake, poller.wake], "outbox": [notifier.wake]}
            await parts.enter_async_context(sharing(store, share, wake))
            log.info(
                "sharing the store %s instance=%s lease=%.0fs",
                store.location,
                share.owner,
                share.lease.total_seconds(),
            )
        await dispatcher.recover()
        smtp = await _start_smtp(settings, store, on_accept=lambda _jobs: dispatcher.wake())
        parts.push_async_callback(smtp.stop)
        try:
            imap = await start_imap(
                settings, store, on_accept=lambda _jobs: dispatcher.wake(), on_refused=notifier.wake
            )
        except ImapSetupError as exc:
            raise StartupError(str(exc)) from None
        if imap is not None:
            parts.push_async_callback(imap.stop)
        daemon = Daemon(
            settings, store, provider, dispatcher, poller, notifier, http, sandbox, smtp, health
        )
        daemon.folders = folders
        daemon.share = share
        daemon.inbound = inbound
        daemon.imap = imap
        daemon.purger = Purger(store, settings.spool_dir, lambda: daemon.settings.retention)
        # Inside _running: the folders stop taking files before the dispatcher drains.
        async with _running(daemon), folders.running():
            log.info(
                "faxgate ready provider=%s base_url=%s http=%s:%d state_dir=%s",
                settings.provider.kind,
                settings.provider_base_url() if sandbox is None else sandbox.base_url,
                http.host,
                http.port,
                settings.state_dir,
            )
            yield daemon
        log.info("faxgate stopping")


@contextlib.asynccontextmanager
async def _running(daemon: Daemon) -> AsyncIterator[None]:
    """Run the loops; on exit let in-flight sends finish, then stop the rest."""
    dispatching = asyncio.create_task(daemon.dispatcher.run(), name="dispatcher")
    others = [
        asyncio.create_task(daemon.poller.run(), name="poller"),
        asyncio.create_task(daemon.notifier.run(), name="notifier"),
    ]
    if daemon.purger is not None:
        others.append(asyncio.create_task(daemon.purger.run(), name="retention"))
    try:
        yield
    finally:
        if daemon.smtp is not None:
            await daemon.smtp.stop()  # no new mail; what is being stored is answered
        daemon.dispatcher.stop()
        try:
            await asyncio.wait_for(dispatching, DRAIN_SECONDS)
        except TimeoutError:
            log.warning(
                "sends still in flight after=%.0fs; the next start reconciles them", DRAIN_SECONDS
            )
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


async def _bind(starting: Awaitable[T], what: str, where: str) -> T:
    try:
        return await starting
    except OSError as exc:
        raise StartupError(f"{what} cannot listen on {where}: {exc.strerror}") from None


async def _start_smtp(
    settings: Settings, store: Store, on_accept: Callable[[list[Job]], None]
) -> SmtpListener:
    spool = Spool(settings.spool_dir)
    try:
        starting = start_smtp(settings, store, spool, on_accept=on_accept)
        return await _bind(starting, "the SMTP listener", str(settings.smtp.listen))
    except SmtpSetupError as exc:
        raise StartupError(str(exc)) from None


async def _register_callbacks(client: HelloFaxClient, urls: tuple[str, str]) -> None:
    """The built-in sandbox is ours: point its callbacks at this daemon."""
    inbound, outbound = urls
    try:
        await client.update_account(inbound_url=inbound, outbound_url=outbound)
    except HelloFaxError as exc:
        log.warning("could not register callbacks with the sandbox error=%r", exc.message)


async def _register_events(client: DropboxFaxClient, url: str) -> None:
    """The built-in v3 sandbox is ours: point its events at this daemon."""
    try:
        await client.set_callback_url(url)
    except ProviderError as exc:
        log.warning("could not register the events URL with the sandbox error=%r", exc.message)


def open_store(settings: Settings) -> Store:
    """The store the settings name: [store] url's PostgreSQL database, shared with other
    instances, or (url empty) the SQLite file in the state directory."""
    return Store.open_configured(
        settings.store.url,
        settings.store.password.get_secret_value(),
        settings.database_path,
        spool_dir=settings.spool_dir,
    )


def store_location(settings: Settings) -> str:
    """Where the settings' store is, as messages name it (never with a password)."""
    return settings.store.url or str(settings.database_path)


def sandbox_settings(settings: Settings) -> sandbox_server.SandboxSettings:
    account_guid, username, password = settings.provider_credentials()
    return sandbox_server.SandboxSettings(
        host=settings.sandbox.listen.host,
        port=settings.sandbox.listen.port,
        account_guid=account_guid,
        username=username,
        password=password,
        api_key=settings.provider_api_key(),
        state_dir=settings.sandbox_state_dir,
        speed=sandbox_server.resolve_speed(settings.sandbox.speed),
        removal=settings.sandbox.removal,
        rate_window=settings.sandbox.rate_window.total_seconds(),
    )


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    reloads: asyncio.Event | None = None,
    reloader: Reloader | None = None,
    on_ready: Callable[[Daemon], None] | None = None,
) -> None:
    """Run the daemon until `stop` is set, reloading when `reloads` is set, keeping systemd
    informed."""
    async with started(settings) as daemon:
        if reloader is not None:
            daemon.reloader = reloader
        if on_ready is not None:
            on_ready(daemon)
        systemd.notify("READY=1\nSTATUS=faxgate is running")
        period = systemd.watchdog_period()
        feeding = asyncio.create_task(systemd.keep_watchdog_fed(period)) if period else None
        async with daemon.reloader.serving(daemon, reloads):
            await stop.wait()
            systemd.notify("STOPPING=1\nSTATUS=finishing work in flight")
        if feeding is not None:
            feeding.cancel()


def run(
    settings: Settings,
    reloader: Reloader | None = None,
    on_ready: Callable[[Daemon], None] | None = None,
) -> int:
    """Run in the foreground until SIGTERM or SIGINT, reloading on SIGHUP; the exit code
    for the shell."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        reloads = asyncio.Event()  # from the start: a SIGHUP while starting must not kill
        loop.add_signal_handler(signal.SIGHUP, reloads.set)
        await serve(settings, stop, reloads, reloader, on_ready)

    try:
        asyncio.run(main())
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    return 0
