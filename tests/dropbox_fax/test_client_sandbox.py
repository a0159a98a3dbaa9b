"""The v3 client against the v3 sandbox over real HTTP: a burst of requests stays under the
provider's rate by itself, so the sandbox never answers 429."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from faxgate.domain.codes import StatusCode
from faxgate.domain.provider import OutgoingFax, Upload
from faxgate.dropbox_fax.client import DropboxFaxClient
from faxgate.dropbox_fax.ratelimit import RateLimiter
from faxgate.dropbox_fax.sandbox import DEFAULT_API_KEY, DropboxFaxSandbox
from tests.conftest import pdf_document, sandbox_settings

LIMIT = 8
WINDOW = 1.0  # seconds: the provider's minute, shrunk


@pytest.fixture
async def v3(tmp_path: Path) -> AsyncIterator[DropboxFaxSandbox]:
    settings = sandbox_settings(
        tmp_path / "sandbox", rate_limit=LIMIT, test_mode_rate_limit=LIMIT, rate_window=WINDOW
    )
    async with DropboxFaxSandbox(settings) as running:
        yield running


async def test_a_burst_keeps_under_the_rate_and_meets_no_429(v3: DropboxFaxSandbox) -> None:
    limiter = RateLimiter(LIMIT, WINDOW, clock=time.time)
    async with DropboxFaxClient(DEFAULT_API_KEY, v3.base_url, limiter=limiter) as client:
        began = time.monotonic()
        document = [Upload("a.pdf", pdf_document(1))]
        sent = [
            await client.send(OutgoingFax(f"1415555{2000 + n:04d}", document)) for n in range(LIMIT)
        ]
        for _ in range(2 * LIMIT):  # polls, as the poller reads the list
            await client.list_faxes(page_size=LIMIT)
        elapsed = time.monotonic() - began
    outcomes = Counter(outcome for (_, outcome) in client.request_counts.elements())
    assert outcomes == {200: 3 * LIMIT}  # not one 429
    assert elapsed >= 2 * WINDOW * 0.9  # three budgets' worth took at least two windows
    assert all(fax.status_code in (StatusCode.PENDING, StatusCode.TRANSMITTING) for fax in sent)
