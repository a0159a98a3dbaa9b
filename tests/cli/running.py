"""Running the CLI as a user would, from the CLI's own tests."""

from __future__ import annotations

import asyncio

import pytest

from faxgate.cli import main
from tests.conftest import SANDBOX_GUID, SANDBOX_PASSWORD, SANDBOX_USERNAME


async def faxgate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in a worker thread (it runs its own event loop, the test's servers run in
    ours): its exit code, its output and its errors."""
    code = await asyncio.to_thread(main, list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def as_hellofax_account(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's account, configured as a real HelloFax account is."""
    monkeypatch.setenv("FAXGATE_PROVIDER__KIND", "hellofax")
    monkeypatch.setenv("FAXGATE_PROVIDER__ACCOUNT_GUID", SANDBOX_GUID)
    monkeypatch.setenv("FAXGATE_PROVIDER__USERNAME", SANDBOX_USERNAME)
    monkeypatch.setenv("FAXGATE_PROVIDER__PASSWORD", SANDBOX_PASSWORD)
