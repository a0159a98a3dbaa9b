"""Can this faxgate work with its account, from this machine? What `faxgate doctor` says.

Each check gives a Finding: in order, a problem with its fix, or skipped because what it
needs failed first. The checks:

- the provider: it answers and accepts the credentials (the account is read);
- the callback URLs the account posts to, against those faxgate expects (built as
  `faxgate account --register-callbacks` builds them: faxgate.web.callbacks);
- the fax lines: the account has one, and the lines the settings name are its own;
- http.public_url: a request to its /healthz through the public address reaches faxgate
  (from this machine: it proves DNS, TLS and the reverse proxy; a firewall that lets this
  machine in but not the internet is not seen);
- this machine, with faxgate.preflight's checks: whether a faxgate runs with this state
  directory, each listen address free (or held by that faxgate), the folders writable,
  the store usable, the settings that only mean something here.

Nothing is changed at the provider. On this machine it does what a start does first:
missing folders are made and each is probed with a file written and removed.
"""

from __future__ import annotations

import asyncio

from faxgate.doctor.findings import OK, PROBLEM, SKIPPED, Finding, State, problems
from faxgate.doctor.machine import check_this_machine
from faxgate.doctor.provider import check_provider
from faxgate.doctor.public_url import check_public_url
from faxgate.settings import Settings

__all__ = ["OK", "PROBLEM", "SKIPPED", "Finding", "State", "examine", "problems"]


async def examine(settings: Settings) -> list[Finding]:
    """Every check, in the order they are shown."""
    found = await check_provider(settings)
    found.append(await check_public_url(settings))
    found += await asyncio.to_thread(check_this_machine, settings)
    return found
