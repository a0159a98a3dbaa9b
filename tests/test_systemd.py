"""faxgate under systemd's Type=notify: READY, WATCHDOG and STOPPING on the notify socket."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from faxgate import systemd
from faxgate.hellofax.sandbox import Sandbox
from tests.conftest import wait_for
from tests.daemon import DaemonProcess


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


class Notices:
    """The messages that reached a notify socket, read as they are asked about."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.messages: list[str] = []

    def heard(self, prefix: str, times: int = 1) -> bool:
        """Whether `prefix` began at least `times` of the messages so far."""
        self.messages.extend(received(self.sock))
        return sum(m.startswith(prefix) for m in self.messages) >= times


def test_notify_without_systemd_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_notify_sends_one_datagram(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.getsockname())
    assert systemd.notify("READY=1\nSTATUS=up")
    assert received(notify_socket) == ["READY=1\nSTATUS=up"]


def test_a_vanished_socket_is_a_warning_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert systemd.notify("READY=1") is False


@pytest.mark.parametrize(
    ("usec", "pid", "period"),
    [("2000000", None, 1.0), ("2000000", "self", 1.0), ("2000000", "1", None), (None, None, None)],
)
def test_watchdog_period(
    usec: str | None, pid: str | None, period: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)
    assert systemd.watchdog_period() == period


async def test_the_daemon_reports_ready_feeds_the_watchdog_and_says_stopping(
    sandbox: Sandbox, tmp_path: Path, unused_tcp_port: int, notify_socket: socket.socket
) -> None:
    daemon = DaemonProcess(
        tmp_path / "state",
        sandbox,
        unused_tcp_port,
        extra_env={"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "200000"},
    )
    notices = Notices(notify_socket)
    heard, messages = notices.heard, notices.messages

    await daemon.start()
    try:
        await wait_for(lambda: heard("READY=1"), what="READY=1")
        await wait_for(lambda: heard("WATCHDOG=1", times=3), what="three watchdog pings")
    finally:
        code = await daemon.stop()
    await wait_for(lambda: heard("STOPPING=1"), what="STOPPING=1")
    assert code == 0
    ready = next(i for i, m in enumerate(messages) if m.startswith("READY=1"))
    stopping = next(i for i, m in enumerate(messages) if m.startswith("STOPPING=1"))
    assert ready < stopping
