"""Injecting an inbound fax into a running v1 sandbox, as `faxgate sandbox inbound` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from faxgate.sandbox.inject import post_inbound


async def inject_inbound(base_url: str, to: str, from_: str, document: Path) -> dict[str, Any]:
    """Make a fax from `from_` arrive at the account's line `to`; returns its transmission."""
    text = await post_inbound(base_url, to, from_, document)
    transmission: dict[str, Any] = json.loads(text)["Transmission"]
    return transmission
