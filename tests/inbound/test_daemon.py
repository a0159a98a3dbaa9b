"""Inbound faxes through the whole daemon, from the sandbox's callback to mail and folders."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from faxgate.app import Daemon, StartupError, started
from faxgate.cli import main as cli_main
from faxgate.domain.inbound import InboundDelivery, InboundFax
from faxgate.domain.jobs import JobState
from faxgate.dropbox_fax.sandbox import inject_inbound as inject_v3
from faxgate.hellofax.sandbox import inject_inbound as inject_v1
from faxgate.sandbox.server import SandboxServer
from faxgate.settings import Settings
from tests.conftest import SANDBOX_LINE, http_client, pdf_document, wait_for
from tests.daemon import CALLBACK_TOKEN, SANDBOX_APIS, fast_settings, queue, sandbox_of, settled

MAIN_LINE = SANDBOX_LINE  # "14155550100"
BOSS = "12125550199"
STRANGER = "13105550111"


def inbound_settings(tmp_path: Path) -> dict[str, Any]:
    return {
        "routes": [
            {
                "name": "sales",
                "to": "+1 415 555 0100",
                "email": ["sales@example.com", "Sales Lead <lead@example.com>"],
                "folder": str(tmp_path / "out" / "sales"),
            },
            {"name": "boss", "from": "+1 212 555 *", "email": "boss@example.com"},
        ],
        "default_email": ["desk@example.com"],
        "default_folder": str(tmp_path / "out" / "desk"),
    }


def settings_for(tmp_path: Path, api: str = "hellofax", **http: Any) -> Settings:
    return fast_settings(
        tmp_path / "state",
        sandbox={"api": api},
        inbound=inbound_settings(tmp_path),
        http={"max_callback_size": 64 * 1024, **http},
    )


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with started(settings_for(tmp_path)) as running:
        yield running


@pytest.fixture(params=SANDBOX_APIS)
async def on_either(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Daemon]:
    """The daemon on the built-in sandbox, once on each API it speaks."""
    async with started(settings_for(tmp_path, request.param)) as running:
        yield running


def the_sandbox(daemon: Daemon) -> SandboxServer:
    return sandbox_of(daemon)


async def fax_in(daemon: Daemon, tmp_path: Path, to: str, from_: str, pages: int = 1) -> str:
    """A fax from outside arrives at the sandbox; its provider id (v1's GUID, v3's fax_id)."""
    document = tmp_path / f"in-{to}-{from_}-{pages}.pdf"
    document.write_bytes(pdf_document(pages))
    base_url = the_sandbox(daemon).base_url
    if daemon.settings.provider_api == "dropbox_fax":
        return str((await inject_v3(base_url, to, from_, document))["fax_id"])
    return str((await inject_v1(base_url, to, from_, document))["Guid"])


def delivered(daemon: Daemon, count: int) -> list[tuple[InboundFax, list[InboundDelivery]]] | None:
    """The received faxes once there are `count` of them and every delivery is done."""
    faxes = daemon.store.recent_inbound(100)
    if len(faxes) < count:
        return None
    found = [(fax, daemon.store.inbound_deliveries(fax.id)) for fax in faxes]
    if any(d.delivered_at is None for _, deliveries in found for d in deliveries):
        return None
    return found


async def all_delivered(
    daemon: Daemon, count: int
) -> dict[str, tuple[InboundFax, list[InboundDelivery]]]:
    found = await wait_for(lambda: delivered(daemon, count), what=f"{count} faxes delivered")
    assert len(found) == count
    return {fax.provider_guid: (fax, deliveries) for fax, deliveries in found}


def mails(settings: Settings) -> list[EmailMessage]:
    folder = settings.maildir / "new"
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# ---------------------------------------------------------------------------- routing


async def test_faxes_are_routed_by_line_and_sender_to_mail_and_folders(
    on_either: Daemon, tmp_path: Path
) -> None:
    daemon = on_either
    other_line = (await daemon.provider.buy_fax_line("510")).number
    to_sales = await fax_in(daemon, tmp_path, MAIN_LINE, STRANGER, pages=3)
    sales_from_boss = await fax_in(daemon, tmp_path, MAIN_LINE, BOSS)  # first rule wins
    from_boss = await fax_in(daemon, tmp_path, other_line, BOSS, pages=2)
    to_default = await fax_in(daemon, tmp_path, other_line, STRANGER)

    faxes = await all_delivered(daemon, 4)
    routes = {guid: fax.route for guid, (fax, _) in faxes.items()}
    assert routes == {
        to_sales: "sales",
        sales_from_boss: "sales",
        from_boss: "boss",
        to_default: "default",
    }
    kinds = {guid: [d.kind for d in deliveries] for guid, (_, deliveries) in faxes.items()}
    assert kinds[to_sales] == ["email", "folder"]
    assert kinds[from_boss] == ["email"]

    sent = {(m["To"], m["Subject"]) for m in mails(daemon.settings)}
    sales_to = "sales@example.com, Sales Lead <lead@example.com>"
    assert sent == {
        (sales_to, "Fax from +1 310-555-0111 (3 pages)"),
        (sales_to, "Fax from +1 212-555-0199 (1 page)"),
        ("boss@example.com", "Fax from +1 212-555-0199 (2 pages)"),
        ("desk@example.com", "Fax from +1 310-555-0111 (1 page)"),
    }
    sales, desk = tmp_path / "out" / "sales", tmp_path / "out" / "desk"
    assert len(files(sales)) == 4  # two faxes, each a .pdf and its .json
    assert len(files(desk)) == 2
    fax, _ = faxes[to_sales]
    (pdf,) = [name for name in files(sales) if fax.id in name and name.endswith(".pdf")]
    assert pdf.endswith(f"_from-13105550111_{fax.id}.pdf")
    assert fax.document is not None
    assert (sales / pdf).read_bytes() == fax.document.path.read_bytes()
    meta = json.loads((sales / pdf.replace(".pdf", ".json")).read_text())
    assert (meta["provider_guid"], meta["pages"], meta["to"]) == (to_sales, 3, "+14155550100")


async def test_the_mail_carries_the_fax_and_its_details(on_either: Daemon, tmp_path: Path) -> None:
    daemon = on_either
    guid = await fax_in(daemon, tmp_path, MAIN_LINE, STRANGER, pages=2)
    fax, _ = (await all_delivered(daemon, 1))[guid]
    (mail,) = mails(daemon.settings)
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["From"] == daemon.settings.mail.from_address
    body = mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    for fact in ("From:", "+1 310-555-0111", "To line:", "+1 415-555-0100", "Pages:", guid):
        assert fact in text
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert fax.document is not None
    assert attachment.get_content() == fax.document.path.read_bytes()


# ---------------------------------------------------------------------------- the sandbox's ways in


async def test_a_fax_to_an_own_line_and_one_injected_by_the_cli_arrive(
    daemon: Daemon, tmp_path: Path
) -> None:
    (job,) = await settled(daemon, [await queue(daemon, "+1 415 555 0100", pages=2)])
    assert job.state is JobState.SENT
    document = tmp_path / "letter.pdf"
    document.write_bytes(pdf_document(1))
    argv = ["sandbox", "inbound", "--to", MAIN_LINE, "--from", STRANGER, str(document)]
    argv += ["--url", the_sandbox(daemon).base_url]
    assert await asyncio.to_thread(cli_main, argv) == 0

    faxes = await all_delivered(daemon, 2)
    senders = sorted(fax.from_number or "" for fax, _ in faxes.values())
    assert senders == ["+13105550111", "+14155550100"]
    own = next(fax for fax, _ in faxes.values() if fax.from_number == "+14155550100")
    assert own.provider_guid != job.provider_guid  # the inbound side of the same call
    assert own.pages is not None
    assert own.pages >= 2
    assert len(mails(daemon.settings)) == 2


# ---------------------------------------------------------------------------- odd callbacks


def callback_url(daemon: Daemon, token: str = CALLBACK_TOKEN) -> str:
    return f"http://127.0.0.1:{daemon.http.port}/callbacks/{token}/inbound"


def inbound_json(guid: str, **fields: Any) -> str:
    transaction = {
        "Guid": guid,
        "To": MAIN_LINE,
        "From": STRANGER,
        "IsInbound": True,
        "IsDraft": False,
        "TypeCode": "F",
        "StatusCode": "S",
        "ErrorCode": None,
        "CreatedAt": "1714558530",
        "UpdatedAt": "1714558530",
        "NumPagesBilled": 2,
        **fields,
    }
    return json.dumps({"Transaction": transaction})


async def post(
    url: str, guid: str, document: bytes | None = None, name: str = "fax.pdf"
) -> tuple[int, str]:
    files = {"file": (name, document, "application/pdf")} if document is not None else None
    data = {"json": inbound_json(guid)}
    async with http_client(timeout=10.0) as http:
        if files is None:
            # multipart even without a file, as the provider posts
            answer = await http.post(url, files={"json": (None, data["json"])})
        else:
            answer = await http.post(url, data=data, files=files)
    return answer.status_code, answer.text


async def test_duplicate_callbacks_store_and_deliver_once(
    on_either: Daemon, tmp_path: Path
) -> None:
    daemon = on_either
    sandbox = the_sandbox(daemon)
    sandbox.faults.callback_copies = 3
    sandbox.faults.callback_late_copy_after = 0.1
    guid = await fax_in(daemon, tmp_path, MAIN_LINE, STRANGER)

    def copies_answered() -> bool:
        posts = [a for a in sandbox.callback_attempts() if a.kind == "inbound"]
        return len(posts) >= 4 and all(a.status == 200 for a in posts)

    await wait_for(copies_answered, what="every copy of the callback answered 200")
    if daemon.settings.provider_api == "hellofax":
        # One more, straight from outside, with its document.
        assert await post(callback_url(daemon), guid, pdf_document(1)) == (200, "ok")
    await all_delivered(daemon, 1)
    assert len(daemon.store.recent_inbound(10)) == 1
    assert len(mails(daemon.settings)) == 1
    assert len(files(tmp_path / "out" / "sales")) == 2
    assert len(list(daemon.settings.spool_dir.iterdir())) == 1


async def test_a_callback_without_document_is_recorded_and_routed(
    daemon: Daemon, tmp_path: Path
) -> None:
    guid = "f" * 40
    assert await post(callback_url(daemon), guid) == (200, "ok")
    html = b"<html>not a fax</html>"
    assert await post(callback_url(daemon), "e" * 40, html, name="fax.pdf") == (200, "ok")
    faxes = await all_delivered(daemon, 2)
    fax, deliveries = faxes[guid]
    assert fax.document is None
    assert fax.pages == 2
    assert [d.kind for d in deliveries] == ["email", "folder"]
    assert faxes["e" * 40][0].document is None
    assert "not a PDF" in (faxes["e" * 40][0].note or "")

    subjects = sorted(m["Subject"] for m in mails(daemon.settings))
    assert subjects == ["Fax from +1 310-555-0111 (2 pages), document not included"] * 2
    for mail in mails(daemon.settings):
        assert list(mail.iter_attachments()) == []
        assert "The document is not included" in mail.get_content()
    written = files(tmp_path / "out" / "sales")
    assert len(written) == 2
    assert all(name.endswith(".json") for name in written)
    assert list(daemon.settings.spool_dir.iterdir()) == []  # the HTML was not kept


async def test_forged_and_oversized_callbacks_are_refused(daemon: Daemon) -> None:
    status, _ = await post(callback_url(daemon, "wrong-token-0123456789"), "d" * 40, b"%PDF-")
    assert status == 404
    status, _ = await post(callback_url(daemon), "c" * 40, b"%PDF-" + b"0" * 100_000)
    assert status == 413
    assert daemon.store.recent_inbound(10) == []
    assert list(daemon.settings.spool_dir.iterdir()) == []
    uploads = daemon.settings.state_dir / "inbound-uploads"
    assert list(uploads.iterdir()) == []

    async with http_client(timeout=10.0) as http:
        answer = await http.get(f"http://127.0.0.1:{daemon.http.port}/metrics")
    assert 'faxgate_callbacks_total{direction="inbound",result="bad_token"}' in answer.text
    assert 'faxgate_callbacks_total{direction="inbound",result="too_large"}' in answer.text


async def test_received_and_delivered_are_counted(daemon: Daemon, tmp_path: Path) -> None:
    await fax_in(daemon, tmp_path, MAIN_LINE, STRANGER)
    await all_delivered(daemon, 1)
    async with http_client(timeout=10.0) as http:
        text = (await http.get(f"http://127.0.0.1:{daemon.http.port}/metrics")).text
    assert 'faxgate_inbound_received_total{result="stored"}' in text
    assert 'faxgate_inbound_delivered_total{kind="email"}' in text
    assert 'faxgate_inbound_delivered_total{kind="folder"}' in text


# ---------------------------------------------------------------------------- a stop in between


@contextmanager
def notifier_held(settings: Settings) -> Iterator[None]:
    """Hold the notifier's cycle lock, as a notifier busy elsewhere would: no delivery
    happens until it is let go."""
    path = settings.database_path.with_name(settings.database_path.name + ".notifier-lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@pytest.mark.parametrize("api", SANDBOX_APIS)
async def test_a_fax_received_before_a_stop_is_delivered_after_the_restart_once(
    tmp_path: Path, api: str
) -> None:
    settings = settings_for(tmp_path, api)
    with notifier_held(settings):
        async with started(settings) as daemon:
            guid = await fax_in(daemon, tmp_path, MAIN_LINE, STRANGER)
            await wait_for(lambda: daemon.store.find_inbound_by_guid(guid), what="the fax stored")
        assert mails(settings) == []
        assert files(tmp_path / "out" / "sales") == []

    async with started(settings_for(tmp_path, api)) as daemon:
        fax, _ = (await all_delivered(daemon, 1))[guid]

        def tried_once_each() -> bool:
            return [d.attempts for d in daemon.store.inbound_deliveries(fax.id)] == [1, 1]

        await wait_for(tried_once_each, what="each delivery's outbox row done at its first try")
    assert len(mails(settings)) == 1
    assert len(files(tmp_path / "out" / "sales")) == 2


async def test_a_route_with_an_unreadable_number_stops_the_start(tmp_path: Path) -> None:
    settings = fast_settings(
        tmp_path / "state",
        inbound={"routes": [{"name": "london", "to": "020 7946 0958", "email": "a@example.com"}]},
    )
    with pytest.raises(StartupError, match="inbound route 'london': '020 7946 0958'"):
        async with started(settings):
            pass
