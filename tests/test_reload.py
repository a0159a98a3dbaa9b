"""Reloading the settings while running: the plan (pure), then a whole daemon read from a
settings file that changes under it, and one `faxgate run` reloaded by a real SIGHUP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from faxgate.app import Daemon, started
from faxgate.domain.inbound import InboundFax
from faxgate.domain.jobs import Intake
from faxgate.domain.numbers import NumberPolicy
from faxgate.hellofax.sandbox import Sandbox, inject_inbound
from faxgate.intake.folder.folders import how_to_apply
from faxgate.reload import (
    Reloader,
    ReloadPlan,
    plan_reload,
    reload_problem,
    settings_in_use,
)
from faxgate.settings import FolderSettings, ListenAddress, Settings, load_settings
from faxgate.store import NewJob
from tests.conftest import SANDBOX_LINE, pdf_document, wait_for
from tests.daemon import CALLBACK_TOKEN, DaemonProcess, settled
from tests.intake.smtp.testing import RawSmtp, fax_mail
from tests.test_systemd import Notices, notify_socket, received

__all__ = ["notify_socket"]  # the fixture

ALICE = "alice@example.com"
BOB = "bob@example.com"
SECRET = "hunter2-not-for-logs"


# ---------------------------------------------------------------------------- the plan


def settings(**sections: Any) -> Settings:
    return Settings(**{"state_dir": Path("/srv/faxgate"), **sections})


@pytest.mark.parametrize(
    ("old", "new", "applied", "restart_needed"),
    [
        ({}, {}, (), ()),
        ({"smtp": {"allowed_senders": [ALICE]}}, {"smtp": {"allowed_senders": [BOB]}},
         ("smtp.allowed_senders",), ()),
        ({}, {"smtp": {"domains": ["fax.example.com"], "max_recipients": 3, "daily_limit": 5,
                       "cover": "never", "default_line": "14155550100",
                       "sender_lines": {"@example.com": "14155550101"}}},
         ("smtp.domains", "smtp.max_recipients", "smtp.daily_limit", "smtp.cover",
          "smtp.default_line", "smtp.sender_lines"), ()),
        ({}, {"smtp": {"listen": "127.0.0.1:2626", "hostname": "fax.example.com",
                       "max_message_size": 1024 * 1024, "idle_timeout": 30,
                       "reader_processes": 0, "attach_document": True}},
         (), ("smtp.listen", "smtp.hostname", "smtp.max_message_size", "smtp.idle_timeout",
              "smtp.reader_processes", "smtp.attach_document")),
        ({}, {"log_level": "debug"}, ("log_level",), ()),
        ({}, {"numbers": {"default_region": "GB", "allowed_countries": ["GB"]}},
         ("numbers.default_region", "numbers.allowed_countries"), ()),
        ({}, {"inbound": {"default_email": ["desk@example.com"],
                          "routes": [{"to": "+1415555*", "email": "sales@example.com"}]}},
         ("inbound.routes", "inbound.default_email"), ()),
        ({}, {"inbound": {"default_folder": "/srv/fax/in", "page_image": False}},
         ("inbound.default_folder",), ("inbound.page_image",)),
        ({}, {"folders": [{"path": "/srv/fax/out"}]}, ("folders",), ()),
        ({"folders": [{"path": "/srv/fax/out"}]},
         {"folders": [{"path": "/srv/fax/out", "cover_to": "Reception"}]},
         ("folders",), ()),
        ({}, {"policy": {"calls_per_number": 2,
                         "rules": [{"name": "night", "hours": "22:00-06:00"}]}},
         ("policy.calls_per_number", "policy.rules"), ()),
        ({}, {"state_dir": "/var/lib/other"}, (), ("state_dir",)),
        ({}, {"provider": {"username": "someone", "password": SECRET}},
         (), ("provider.username", "provider.password")),
        ({}, {"http": {"listen": "127.0.0.1:9000", "callback_token": "a" * 20}},
         (), ("http.listen", "http.callback_token")),
        ({}, {"mail": {"relay": "mail.example.com:25"}, "dispatch": {"max_in_flight": 5},
              "retry": {"busy_retries": 1}, "polling": {"tick": 1}, "sandbox": {"speed": "test"}},
         (), ("sandbox.speed", "dispatch.max_in_flight", "retry.busy_retries", "polling.tick",
              "mail.relay")),
        ({"smtp": {"allowed_senders": [ALICE]}},
         {"smtp": {"allowed_senders": [BOB], "listen": "127.0.0.1:2626"},
          "provider": {"username": "someone"}},
         ("smtp.allowed_senders",), ("provider.username", "smtp.listen")),
    ],
)  # fmt: skip
def test_the_plan_sorts_changes_into_applied_and_restart_needed(
    old: dict[str, Any],
    new: dict[str, Any],
    applied: tuple[str, ...],
    restart_needed: tuple[str, ...],
) -> None:
    before, after = settings(**old), settings(**new)
    plan = plan_reload(before, after)
    assert plan == ReloadPlan(applied, restart_needed)
    assert plan.changed == bool(applied or restart_needed)
    assert SECRET not in plan.summary()
    # The settings in use take exactly what was applied; the rest still differs.
    in_use = settings_in_use(before, after, plan)
    assert plan_reload(before, in_use) == ReloadPlan(applied, ())
    assert plan_reload(in_use, after) == ReloadPlan((), restart_needed)


def test_the_summary_names_keys_only() -> None:
    plan = ReloadPlan(("smtp.allowed_senders", "folders"), ("smtp.listen", "provider.username"))
    assert plan.summary() == (
        "reload applied=smtp.allowed_senders,folders restart_needed=smtp.listen,provider.username"
    )
    assert ReloadPlan().summary() == "reload applied=none restart_needed=none"


def test_the_settings_in_use_keep_their_source_file(tmp_path: Path) -> None:
    path = tmp_path / "faxgate.toml"
    path.write_text('[smtp]\nallowed_senders = ["alice@example.com"]\n')
    old = load_settings(path)
    new = old.model_copy(update={"log_level": "debug"})
    in_use = settings_in_use(old, new, plan_reload(old, new))
    assert in_use.source_file == path
    assert in_use.log_level == "debug"


@pytest.mark.parametrize(
    ("host", "allowlist", "refused"),
    [("127.0.0.1", False, False), ("0.0.0.0", True, False), ("0.0.0.0", False, True)],
)
def test_an_allowlist_emptied_on_an_open_listener_is_refused(
    host: str, allowlist: bool, refused: bool
) -> None:
    smtp: dict[str, Any] = {"listen": f"{host}:2525"}
    if allowlist:
        smtp["allowed_senders"] = [ALICE]
    problem = reload_problem(settings(smtp=smtp))
    assert (problem is not None) == refused
    if problem:
        assert "smtp.allowed_senders" in problem


US = NumberPolicy(default_region="US")


@pytest.mark.parametrize(
    ("changes", "policy", "how"),
    [
        ({}, US, "keep"),
        ({}, NumberPolicy(default_region="GB"), "retune"),
        ({"cover_to": "Reception", "notify": "desk@example.com"}, US, "retune"),
        ({"poll_interval": 9, "rescan_interval": 90, "sidecar_wait": 1}, US, "retune"),
        ({"max_file_size": 1000}, US, "retune"),
        ({"mode": "poll"}, US, "restart"),
        ({"stable_for": 1}, US, "restart"),
        ({"sent_dir": "done"}, US, "restart"),
        ({"date_subfolders": True, "cover_to": "Reception"}, US, "restart"),
    ],
)
def test_how_a_kept_folder_takes_new_options(
    changes: dict[str, Any], policy: NumberPolicy, how: str
) -> None:
    old = FolderSettings(path=Path("/srv/fax/out"))
    new = FolderSettings(path=Path("/srv/fax/out"), **changes)
    assert how_to_apply(old, US, new, policy) == how


# ---------------------------------------------------------------------------- a daemon


def toml_text(data: dict[str, Any]) -> str:
    """Enough TOML for these settings: values, tables, arrays of tables."""
    lines: list[str] = []

    def is_tables(value: object) -> bool:
        return isinstance(value, list) and bool(value) and isinstance(value[0], dict)

    def table(prefix: str, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if not isinstance(value, dict) and not is_tables(value):
                lines.append(f"{key} = {json.dumps(value)}")
        for key, value in values.items():
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                lines.append(f"[{name}]")
                table(name, value)
            elif is_tables(value):
                for item in value:
                    lines.append(f"[[{name}]]")
                    table(name, item)

    table("", data)
    return "\n".join(lines) + "\n"


class SettingsFile:
    """faxgate.toml for a daemon on loopback with every timer shrunk; `write` changes it."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "faxgate.toml"
        self.base: dict[str, Any] = {
            "state_dir": str(tmp_path / "state"),
            "sandbox": {"listen": "127.0.0.1:0", "speed": "test"},
            "http": {"listen": "127.0.0.1:0", "callback_token": CALLBACK_TOKEN},
            "smtp": {"listen": "127.0.0.1:0", "reader_processes": 0},
            "polling": {"tick": 0.05, "first_interval": 0.1, "max_interval": 0.3},
            "dispatch": {"backoff_first": 0.05, "backoff_max": 0.5},
        }

    def write(self, **sections: Any) -> None:
        data = dict(self.base)
        for name, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(name), dict):
                data[name] = {**data[name], **value}
            else:
                data[name] = value
        self.path.write_text(toml_text(data))

    def load(self) -> Settings:
        return load_settings(self.path)


@contextlib.asynccontextmanager
async def daemon_reading(config: SettingsFile) -> AsyncIterator[Daemon]:
    """A daemon started from the settings file, which reloads from it as `faxgate run` does."""
    async with started(config.load()) as daemon:
        daemon.reloader = Reloader(load=config.load)
        yield daemon


def smtp_port(daemon: Daemon) -> int:
    assert daemon.smtp is not None
    return daemon.smtp.port


def reload_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "faxgate.reload"]


async def test_a_new_allowlist_applies_at_once_and_open_connections_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="faxgate")
    config = SettingsFile(tmp_path)
    config.write(smtp={"allowed_senders": [ALICE]})
    async with daemon_reading(config) as daemon:
        port = smtp_port(daemon)
        before = await RawSmtp.connect(port)
        try:
            await before.ehlo()
            assert (await before.command(f"MAIL FROM:<{BOB}>")).code == 550

            config.write(smtp={"allowed_senders": [BOB]})
            plan = await daemon.reload()
            assert plan == ReloadPlan(("smtp.allowed_senders",), ())

            # The connection opened before the reload meets the new allowlist.
            reply = await before.send(BOB, ["14155550123@fax.local"], fax_mail("14155550123"))
            assert reply.code == 250, reply
        finally:
            await before.close()
        after = await RawSmtp.connect(port)
        try:
            await after.ehlo()
            assert (await after.command(f"MAIL FROM:<{ALICE}>")).code == 550
        finally:
            await after.close()
        assert smtp_port(daemon) == port
        assert daemon.settings.smtp.allowed_senders == [BOB]
    summaries = [r.getMessage() for r in reload_lines(caplog) if r.levelno == logging.INFO]
    assert summaries == ["reload applied=smtp.allowed_senders restart_needed=none"]


async def test_what_needs_a_restart_is_named_and_left_as_it_was(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="faxgate")
    config = SettingsFile(tmp_path)
    config.write()
    async with daemon_reading(config) as daemon:
        port = smtp_port(daemon)
        config.write(
            provider={"password": SECRET},
            smtp={"hostname": "fax.example.com", "daily_limit": 7},
            dispatch={"max_in_flight": 5},
        )
        plan = await daemon.reload()
        assert plan is not None
        assert plan.restart_needed == (
            "provider.password",
            "smtp.hostname",
            "dispatch.max_in_flight",
        )
        assert daemon.settings.smtp.hostname == ""
        assert daemon.settings.dispatch.max_in_flight == 200
        assert daemon.settings.smtp.daily_limit == 7
        assert smtp_port(daemon) == port
        client = await RawSmtp.connect(port)
        await client.close()
    messages = [r.getMessage() for r in reload_lines(caplog)]
    assert messages == [
        "reload: needs a restart keys=provider.password,smtp.hostname,dispatch.max_in_flight",
        "reload applied=smtp.daily_limit "
        "restart_needed=provider.password,smtp.hostname,dispatch.max_in_flight",
    ]
    assert SECRET not in caplog.text


@pytest.mark.parametrize("broken", ["toml", "values", "gone"])
async def test_settings_that_cannot_be_used_change_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, broken: str
) -> None:
    caplog.set_level(logging.INFO, logger="faxgate")
    config = SettingsFile(tmp_path)
    config.write(smtp={"allowed_senders": [ALICE]})
    async with daemon_reading(config) as daemon:
        before = daemon.settings
        if broken == "toml":
            config.path.write_text(config.path.read_text() + "[numbers\n")
            said = ["is not valid TOML"]
        elif broken == "values":
            config.write(
                provider={"password": SECRET, "account_guid": SECRET},
                smtp={"allowed_senders": ["no at sign"]},
            )
            said = ["provider.account_guid", "smtp.allowed_senders"]
        else:
            config.path.unlink()
            said = ["does not exist"]
        assert await daemon.reload() is None
        assert daemon.settings is before
        client = await RawSmtp.connect(smtp_port(daemon))
        try:
            await client.ehlo()
            assert (await client.command(f"MAIL FROM:<{ALICE}>")).code == 250
        finally:
            await client.close()
    (line,) = reload_lines(caplog)
    assert line.levelno == logging.ERROR
    message = line.getMessage()
    assert message.startswith("reload refused, the settings in use stay: ")
    assert all(words in message for words in said), message
    assert "\n" not in message
    assert SECRET not in caplog.text


async def test_an_open_relay_is_refused_at_reload(tmp_path: Path) -> None:
    config = SettingsFile(tmp_path)
    config.write(smtp={"allowed_senders": [ALICE]})
    async with daemon_reading(config) as daemon:
        # As if it listened beyond loopback: emptying the allowlist would open it to anyone.
        listen = ListenAddress("0.0.0.0", 2525)
        daemon.settings = daemon.settings.model_copy(
            update={"smtp": daemon.settings.smtp.model_copy(update={"listen": listen})}
        )
        config.write(smtp={"allowed_senders": [], "listen": str(listen)})
        assert await daemon.reload() is None
        assert daemon.settings.smtp.allowed_senders == [ALICE]


def taken_numbers(daemon: Daemon) -> list[str]:
    return [job.to_number for job in daemon.store.recent_jobs(1000) if job.intake is Intake.FOLDER]


def waiting_in(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir() if path.is_file()}


QUICK: dict[str, Any] = {"stable_for": 0.2, "sidecar_wait": 0.5, "rescan_interval": 3600}


async def test_hot_folders_are_added_removed_and_changed(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    config = SettingsFile(tmp_path)
    config.write(folders=[{"path": str(first), **QUICK}])
    async with daemon_reading(config) as daemon:
        assert daemon.folders is not None
        (original,) = daemon.folders.watchers

        # Added: the second folder starts taking files.
        config.write(folders=[{"path": str(first), **QUICK}, {"path": str(second), **QUICK}])
        assert await daemon.reload() == ReloadPlan(("folders",), ())
        (second / "14155552001_a.pdf").write_bytes(pdf_document(1))
        await wait_for(lambda: "+14155552001" in taken_numbers(daemon), what="added folder")

        # Changed options a watcher takes as they are: the same watcher goes on.
        config.write(
            folders=[
                {"path": str(first), **QUICK, "cover_to": "Reception"},
                {"path": str(second), **QUICK},
            ]
        )
        await daemon.reload()
        assert daemon.folders.watchers[0] is original
        assert original.settings.cover_to == "Reception"

        # Removed, with files dropped just before: each is either claimed before the
        # watcher stops or left where it is; never lost, never taken twice.
        numbers = [f"+1415555{3000 + i}" for i in range(20)]
        for number in numbers:
            (first / f"{number[1:]}_b.pdf").write_bytes(pdf_document(1))
        config.write(folders=[{"path": str(second), **QUICK}])
        await daemon.reload()
        assert not original.watching
        assert [w.folder for w in daemon.folders.watchers] == [second]
        left = {"+" + name.split("_")[0] for name in waiting_in(first)}
        claimed = [n for n in taken_numbers(daemon) if n in numbers]
        assert sorted(claimed + list(left)) == sorted(numbers)

        # Added again, in poll mode: it takes what was left, once each.
        config.write(
            folders=[
                {"path": str(second), **QUICK},
                {"path": str(first), **QUICK, "mode": "poll", "poll_interval": 0.05},
            ]
        )
        await daemon.reload()

        def all_taken() -> list[str] | None:
            found = [n for n in taken_numbers(daemon) if n in numbers]
            return found if len(found) >= len(numbers) else None

        taken = await wait_for(all_taken, what="the folder added again takes the rest")
        assert sorted(taken) == sorted(numbers)
        assert not waiting_in(first)
        assert [w.settings.mode for w in daemon.folders.watchers] == ["inotify", "poll"]
        # Leave with the sandbox at rest: on Python 3.11 its clock can miss a stop that
        # comes as it wakes (asyncio.wait_for swallows the cancellation).
        await settled(daemon, [j for j in daemon.store.recent_jobs(1000) if j.to_number in numbers])


async def test_a_folder_that_cannot_be_used_refuses_the_reload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = SettingsFile(tmp_path)
    config.write()
    async with daemon_reading(config) as daemon:
        config.write(folders=[{"path": str(tmp_path / "missing")}], log_level="debug")
        assert await daemon.reload() is None
        assert daemon.settings.folders == []
        assert daemon.settings.log_level == "info"
    assert "missing does not exist" in caplog.text


async def test_inbound_routes_apply_to_the_next_fax(tmp_path: Path) -> None:
    config = SettingsFile(tmp_path)
    config.write()
    sales = tmp_path / "sales"
    document = tmp_path / "in.pdf"
    document.write_bytes(pdf_document(1))
    async with daemon_reading(config) as daemon:
        assert daemon.sandbox is not None

        def stored(count: int) -> list[InboundFax] | None:
            found = daemon.store.recent_inbound(10)
            return found if len(found) == count else None

        await inject_inbound(daemon.sandbox.base_url, SANDBOX_LINE, "12125550199", document)
        await wait_for(lambda: stored(1), what="the first inbound fax")
        config.write(
            inbound={"routes": [{"name": "sales", "to": f"+{SANDBOX_LINE}", "folder": str(sales)}]}
        )
        assert await daemon.reload() == ReloadPlan(("inbound.routes",), ())
        await inject_inbound(daemon.sandbox.base_url, SANDBOX_LINE, "12125550199", document)
        faxes = await wait_for(lambda: stored(2), what="the second inbound fax")
        assert sorted(fax.route for fax in faxes) == ["default", "sales"]
        await wait_for(lambda: sales.is_dir() and any(sales.glob("*.pdf")), what="sales folder")


async def test_a_reload_changing_a_rule_lets_the_jobs_it_held_go(tmp_path: Path) -> None:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from faxgate.domain.jobs import JobState
    from faxgate.store import NewDocument

    # A window that opens in two hours in the number's zone (Los Angeles): closed now.
    opens = datetime.now(ZoneInfo("America/Los_Angeles")) + timedelta(hours=2)
    hours = f"{opens:%H}:00-{(opens + timedelta(hours=1)):%H}:00"
    config = SettingsFile(tmp_path)
    config.write(policy={"rules": [{"name": "later", "numbers": ["+1415"], "hours": hours}]})
    async with daemon_reading(config) as daemon:
        spooled = daemon_spool(daemon).store_bytes(pdf_document(1), suffix=".pdf")
        (job,) = daemon.store.create_jobs(
            [
                NewJob(
                    to_number="+14155550123",
                    intake=Intake.CLI,
                    documents=[NewDocument("letter.pdf", spooled, "application/pdf")],
                )
            ]
        )
        daemon.dispatcher.wake()

        def held() -> str | None:
            current = daemon.store.get_job(job.id)
            return None if current is None else current.wait_reason

        reason = await wait_for(held, what="the rule holding the job back")
        assert reason.startswith(f"waiting for {opens:%H}:00 in America/Los_Angeles")
        config.write(policy={"rules": []})
        assert await daemon.reload() == ReloadPlan(("policy.rules",), ())

        def sent() -> bool:
            current = daemon.store.get_job(job.id)
            return current is not None and current.state is not JobState.QUEUED

        await wait_for(sent, what="the job sent once the rule is gone")
        current = daemon.store.get_job(job.id)
        assert current is not None
        assert current.wait_reason is None


def daemon_spool(daemon: Daemon) -> Any:
    from faxgate.store.spool import Spool

    return Spool(daemon.settings.spool_dir)


async def test_reloads_wait_for_each_other(tmp_path: Path) -> None:
    config = SettingsFile(tmp_path)
    config.write()
    async with daemon_reading(config) as daemon:
        config.write(smtp={"daily_limit": 3})
        first, second = await asyncio.gather(daemon.reload(), daemon.reload())
        assert first == ReloadPlan(("smtp.daily_limit",), ())
        assert second == ReloadPlan()


# ---------------------------------------------------------------------------- systemd


async def test_the_log_level_is_set_and_systemd_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, notify_socket: socket.socket
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.getsockname())
    levels: list[str] = []
    config = SettingsFile(tmp_path)
    config.write()
    async with started(config.load()) as daemon:
        daemon.reloader = Reloader(load=config.load, set_log_level=levels.append)
        config.write(log_level="debug")
        began = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert await daemon.reload() == ReloadPlan(("log_level",), ())
        ended = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert levels == ["debug"]
        assert daemon.settings.log_level == "debug"
    reloading, ready = received(notify_socket)
    fields = dict(line.split("=", 1) for line in reloading.splitlines())
    assert fields["RELOADING"] == "1"
    assert began <= int(fields["MONOTONIC_USEC"]) <= ended
    assert ready.startswith("READY=1")


async def test_sighup_reloads_faxgate_run(
    sandbox: Sandbox, tmp_path: Path, unused_tcp_port: int, notify_socket: socket.socket
) -> None:
    config = tmp_path / "faxgate.toml"
    config.write_text(toml_text({"smtp": {"allowed_senders": [ALICE]}}))
    daemon = DaemonProcess(
        tmp_path / "state",
        sandbox,
        unused_tcp_port,
        extra_env={
            "FAXGATE_CONFIG": str(config),
            "FAXGATE_SMTP__READER_PROCESSES": "0",
            "NOTIFY_SOCKET": notify_socket.getsockname(),
        },
    )
    notices = Notices(notify_socket)
    heard, messages = notices.heard, notices.messages

    await daemon.start()
    try:
        found = await wait_for(
            lambda: re.search(r"smtp listening host=\S+ port=(\d+)", daemon.log.read_text()),
            what="the SMTP port in the log",
        )
        await wait_for(lambda: heard("READY=1"), what="READY=1")
        client = await RawSmtp.connect(int(found[1]))
        try:
            await client.ehlo()
            assert (await client.command(f"MAIL FROM:<{BOB}>")).code == 550

            config.write_text(toml_text({"smtp": {"allowed_senders": [BOB]}}))
            assert daemon.process is not None
            daemon.process.send_signal(signal.SIGHUP)
            await wait_for(lambda: heard("READY=1", times=2), what="READY=1 after the reload")

            # The connection opened before the reload is still there, under the new rules.
            reply = await client.send(BOB, ["14155550123@fax.local"], fax_mail("14155550123"))
            assert reply.code == 250, reply
        finally:
            await client.close()
    finally:
        code = await daemon.stop()
    assert code == 0
    kinds = [m.split("=", 1)[0] for m in messages if not m.startswith("WATCHDOG")]
    assert kinds[:3] == ["READY", "RELOADING", "READY"]
    assert "reload applied=smtp.allowed_senders restart_needed=none" in daemon.log.read_text()
