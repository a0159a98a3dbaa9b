"""Telling systemd how faxgate is doing (sd_notify), without a native library.

Under `Type=notify` systemd passes $NOTIFY_SOCKET: one datagram per message, such as
READY=1, STOPPING=1 or WATCHDOG=1. Outside systemd nothing is set and every call is a no-op.
A reload is RELOADING=1, then READY=1 once done.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

log = logging.getLogger("faxgate.systemd")


def notify(message: str) -> bool:
    """Send one state message; True when systemd was there to hear it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot notify systemd error=%s", exc)
        return False
    return True


def reloading(status: str = "reloading its settings") -> bool:
    """A reload begins; READY=1 ends it. MONOTONIC_USEC, the time the message was made
    (CLOCK_MONOTONIC, microseconds), lets systemd tell this reload from an earlier one:
    Type=notify-reload (systemd 253) needs it, older versions ignore it."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS={status}")


def watchdog_period() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None


async def keep_watchdog_fed(period: float) -> None:
    """Ping from the event loop itself: if the loop is stuck, the pings stop and systemd
    restarts faxgate."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(period)
