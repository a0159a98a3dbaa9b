"""Ports for the servers the tests start: each worker of a parallel run draws from a range
of its own, below the kernel's ephemeral ports.

A port only probed free is bound later; meanwhile another worker's server asking for "any
port" could get it, and a daemon left talking to a server that stopped could reach the
next test's server on the same port (a fax from another test's daemon in this test's
sandbox). Ranges apart, and drawn in turn, a port is neither shared between workers nor
handed out again soon.
"""

from __future__ import annotations

import itertools
import os
import socket
from typing import Final

_FIRST: Final = 10_000
_LAST: Final = 32_000  # below /proc/sys/net/ipv4/ip_local_port_range's usual 32768
_WORKERS: Final = 8  # ranges for gw0 to gw7; more workers share them in turn


def _own_range() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) % _WORKERS if worker.isdigit() else 0
    size = (_LAST - _FIRST) // _WORKERS
    return range(_FIRST + index * size, _FIRST + (index + 1) * size)


_NEXT: Final = itertools.cycle(_own_range())


def free_port() -> int:
    """The next port of this worker's range that nothing listens on, on loopback."""
    for _ in range(len(_own_range())):
        port = next(_NEXT)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in this worker's range")
