"""The hot folder in a whole daemon against the sandbox: files dropped become faxes, their
results land in sent/ and failed/ matching what the sandbox did with them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from faxgate import metrics
from faxgate.app import Daemon, started
from faxgate.intake.folder.runner import FolderWatcher
from faxgate.settings import FolderSettings
from tests.conftest import pdf_document, wait_for
from tests.daemon import SANDBOX_APIS, fast_settings, sandbox_of

QUICK: dict[str, Any] = {"stable_for": 0.2, "sidecar_wait": 0.5, "rescan_interval": 3600}


@contextlib.asynccontextmanager
async def running(tmp_path: Path, api: str = "hellofax", **folder: Any) -> AsyncIterator[Daemon]:
    """A daemon watching tmp_path/outbox (made if missing), on the sandbox speaking `api`."""
    outbox = tmp_path / "outbox"
    outbox.mkdir(exist_ok=True)
    options = {**QUICK, **folder}
    settings = fast_settings(
        tmp_path / "state",
        sandbox={"api": api},
        folders=[FolderSettings(path=outbox, **options)],
    )
    async with started(settings) as daemon:
        yield daemon


def outbox_of(daemon: Daemon) -> Path:
    return daemon.settings.folders[0].path


def watcher(daemon: Daemon) -> FolderWatcher:
    assert daemon.folders is not None
    return daemon.folders.watchers[0]


async def result(outbox: Path, name: str, where: str = "sent") -> Any:
    """The result file of `name` in sent/ or failed/, once written."""
    path = outbox / where / f"{name}.result.json"

    def written() -> Any:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        return json.loads(text) if text else None

    return await wait_for(written, timeout=20, what=f"{where}/{name}.result.json")


async def reason(outbox: Path, name: str) -> str:
    path = outbox / "failed" / f"{name}.reason.txt"

    def written() -> str | None:
        try:
            return path.read_text() or None
        except FileNotFoundError:
            return None

    text: str = await wait_for(written, what=f"failed/{name}.reason.txt")
    return text


async def taken(path: Path) -> None:
    await wait_for(lambda: not path.exists() and not path.is_symlink(), what=f"{path} taken")


def sends_to(daemon: Daemon) -> Counter[str]:
    return Counter(t.to for t in sandbox_of(daemon).inspect() if not t.is_inbound)


def refused_count(reason_code: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "faxgate_folder_files_refused_total", {"reason": reason_code}
    )
    return value or 0.0


# ---------------------------------------------------------------------------- arriving


async def test_a_file_written_slowly_is_taken_only_once_closed(tmp_path: Path) -> None:
    content = pdf_document(3)
    async with running(tmp_path) as daemon:
        outbox = outbox_of(daemon)
        slow = outbox / "14155550123_slow.pdf"
        with slow.open("wb") as handle:
            for i, start in enumerate(range(0, len(content), 400)):
                handle.write(content[start : start + 400])
                handle.flush()
                # Events are handled in order: once a file dropped after this chunk is
                # taken, the chunk was seen, and the open file was left alone.
                probe = outbox / f"1415555014{i % 10}_probe{i}.pdf"
                probe.write_bytes(pdf_document(1))
                await taken(probe)
                assert slow.exists(), f"taken while still open, after chunk {i}"
        done = await result(outbox, slow.name)
        (fax,) = [t for t in sandbox_of(daemon).inspect() if t.to == "14155550123"]
    assert done["outcome"] == "sent"
    assert done["pages"] == 3
    assert fax.files[0].size == len(content)


async def test_moved_in_and_copied_in(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    async with running(tmp_path) as daemon:
        outbox = outbox_of(daemon)
        moved = elsewhere / "14155550123_moved.pdf"
        moved.write_bytes(pdf_document(1))
        os.rename(moved, outbox / moved.name)
        copied = elsewhere / "14155550124_copied.pdf"
        copied.write_bytes(pdf_document(2))
        shutil.copy(copied, outbox / copied.name)
        # A writer's own temporary name, renamed when done.
        part = outbox / "14155550125_renamed.pdf.part"
        part.write_bytes(pdf_document(1))
        part.rename(outbox / "14155550125_renamed.pdf")
        assert (await result(outbox, "14155550123_moved.pdf"))["outcome"] == "sent"
        assert (await result(outbox, "14155550124_copied.pdf"))["pages"] == 2
        assert (await result(outbox, "14155550125_renamed.pdf"))["outcome"] == "sent"
        sent = sends_to(daemon)
    assert copied.exists(), "the copy's source is not ours"
    assert sent == {"14155550123": 1, "14155550124": 1, "14155550125": 1}


async def test_files_present_at_start_and_dropped_while_down(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / "14155550123_before.pdf").write_bytes(pdf_document(1))
    async with running(tmp_path) as daemon:
        assert (await result(outbox, "14155550123_before.pdf"))["outcome"] == "sent"
        first = sends_to(daemon)
    (outbox / "14155550124_while_down.pdf").write_bytes(pdf_document(1))
    (outbox / "+14155550125").mkdir()
    (outbox / "+14155550125" / "in_a_folder.pdf").write_bytes(pdf_document(1))
    async with running(tmp_path) as daemon:
        assert (await result(outbox, "14155550124_while_down.pdf"))["outcome"] == "sent"
        assert (await result(outbox, "in_a_folder.pdf"))["number"] == "+14155550125"
        second = sends_to(daemon)
    # The sandbox is the daemon's own, started afresh with the same state.
    assert first == {"14155550123": 1}
    assert second == {"14155550123": 1, "14155550124": 1, "14155550125": 1}


async def test_polling_a_plain_folder(tmp_path: Path) -> None:
    content = pdf_document(2)
    async with running(tmp_path, mode="poll", poll_interval=0.05, stable_for=1.0) as daemon:
        outbox = outbox_of(daemon)
        assert watcher(daemon).settings.mode == "poll"
        growing = outbox / "14155550123_growing.pdf"
        with growing.open("wb") as handle:
            # Written a little at a time, faster than stable_for: never taken meanwhile.
            for start in range(0, len(content), 200):
                handle.write(content[start : start + 200])
                handle.flush()
                await asyncio.sleep(0.05)
                assert growing.exists()
        (outbox / "+14155550124").mkdir()
        (outbox / "+14155550124" / "sub.pdf").write_bytes(pdf_document(1))
        done = await result(outbox, growing.name)
        assert (await result(outbox, "sub.pdf"))["outcome"] == "sent"
        sent = sends_to(daemon)
    assert done["pages"] == 2
    assert sent == {"14155550123": 1, "14155550124": 1}


async def test_an_inotify_overflow_makes_it_list_the_folder(tmp_path: Path) -> None:
    async with running(tmp_path) as daemon:
        outbox = outbox_of(daemon)
        path = outbox / "14155550123_open.pdf"
        with path.open("wb") as handle:
            handle.write(pdf_document(1))
            handle.flush()
            probe = outbox / "14155550124_probe.pdf"
            probe.write_bytes(pdf_document(1))
            await taken(probe)
            assert path.exists()  # still open: it waits for its close
            # The close may have been lost with the events: after an overflow the file
            # is taken once a listing finds it unchanged.
            logging.getLogger("watchdog.observers.inotify_c").warning(
                "Inotify queue overflowed; filesystem events were lost"
            )
            await taken(path)
        assert (await result(outbox, path.name))["outcome"] == "sent"


# ---------------------------------------------------------------------------- numbers


async def test_every_way_of_naming_the_number(tmp_path: Path) -> None:
    async with running(tmp_path, sidecar_wait=5.0) as daemon:
        outbox = outbox_of(daemon)
        (outbox / "14155550120.pdf").write_bytes(pdf_document(1))
        (outbox / "14155550121_contract.pdf").write_bytes(pdf_document(1))
        (outbox / "+1 415 555 0122 - offer.pdf").write_bytes(pdf_document(1))
        (outbox / "+14155550123").mkdir()
        (outbox / "+14155550123" / "letter.pdf").write_bytes(pdf_document(1))
        # Sidecars are written before their document.
        sidecar = {"to": ["+14155550124"], "cover_to": "Legal", "message": "Please sign."}
        (outbox / "terms.pdf.json").write_text(json.dumps(sidecar))
        (outbox / "terms.pdf").write_bytes(pdf_document(2))
        (outbox / "memo.json").write_text('{"to": "415 555 0125"}')
        (outbox / "memo.txt").write_text("A short memo.")
        # Several files, one sidecar listing them, two numbers: one fax to each.
        (outbox / "part-one.pdf").write_bytes(pdf_document(1))
        (outbox / "part-two.txt").write_text("The annex.")
        pack = {"to": ["+14155550126", "+14155550127"], "files": ["part-one.pdf", "part-two.txt"]}
        (outbox / "pack.json").write_text(json.dumps(pack))

        named = {
            "14155550120.pdf": "+14155550120",
            "14155550121_contract.pdf": "+14155550121",
            "+1 415 555 0122 - offer.pdf": "+14155550122",
            "letter.pdf": "+14155550123",
            "terms.pdf": "+14155550124",
            "memo.txt": "+14155550125",
        }
        for name, number in named.items():
            assert (await result(outbox, name))["number"] == number, name
        packed = await result(outbox, "part-one.pdf")
        assert (await result(outbox, "part-two.txt"))["faxes"] == packed["faxes"]
        assert (outbox / "sent" / "terms.pdf.json").exists(), "the sidecar goes along"
        assert (outbox / "sent" / "pack.json").exists()
        faxes = {t.to: t for t in sandbox_of(daemon).inspect()}
        sent = sends_to(daemon)
        (terms,) = [j for j in daemon.store.recent_jobs(20) if j.to_number == "+14155550124"]
    assert packed["outcome"] == "sent"
    assert sorted(f["number"] for f in packed["faxes"]) == ["+14155550126", "+14155550127"]
    assert len(faxes) == 8
    assert set(sent.values()) == {1}
    assert [f.name for f in faxes["14155550126"].files] == ["part-one.pdf", "part-two.txt"]
    assert (terms.cover_to, terms.cover_message) == ("Legal", "Please sign.")


# ---------------------------------------------------------------------------- refusals


async def test_refusals_go_to_failed_with_the_reason(tmp_path: Path) -> None:
    secret = tmp_path / "secret.pdf"
    secret.write_bytes(pdf_document(1))
    before = {code: refused_count(code) for code in ("bad_number", "type", "size", "symlink")}
    async with running(tmp_path, max_file_size=20_000) as daemon:
        outbox = outbox_of(daemon)
        (outbox / "12345_short.pdf").write_bytes(pdf_document(1))
        (outbox / "14155550123.zip").write_bytes(b"PK\x03\x04")
        (outbox / "14155550124_big.pdf").write_bytes(pdf_document(1) + b"\n" * 30_000)
        (outbox / "14155550125_empty.pdf").write_bytes(b"")
        (outbox / "14155550126_fake.pdf").write_text("not a pdf at all")
        (outbox / "invoice.pdf").write_bytes(pdf_document(1))
        os.symlink(secret, outbox / "14155550127_link.pdf")
        os.mkfifo(outbox / "14155550128_fifo.pdf")
        (outbox / "escape.json").write_text(
            json.dumps({"to": "+14155550129", "files": ["../secret.pdf"]})
        )
        (outbox / "broken.pdf.json").write_text("{not json")
        (outbox / "broken.pdf").write_bytes(pdf_document(1))

        assert "too short" in await reason(outbox, "12345_short.pdf")
        assert ".zip files cannot be faxed" in await reason(outbox, "14155550123.zip")
        assert "this folder takes files up to" in await reason(outbox, "14155550124_big.pdf")
        assert "empty" in await reason(outbox, "14155550125_empty.pdf")
        assert "does not look like a PDF" in await reason(outbox, "14155550126_fake.pdf")
        no_number = await reason(outbox, "invoice.pdf")
        assert "no fax number" in no_number
        assert "14155550100_invoice.pdf" in no_number
        assert "symbolic link" in await reason(outbox, "14155550127_link.pdf")
        assert "not a regular file" in await reason(outbox, "14155550128_fifo.pdf")
        assert "not a file beside the sidecar" in await reason(outbox, "escape.json")
        assert "not valid JSON" in await reason(outbox, "broken.pdf")
        # The reason is written first, then the file moves.
        left = ["failed", "processing", "sent"]
        await wait_for(lambda: sorted(p.name for p in outbox.iterdir()) == left)
        assert (outbox / "failed" / "broken.pdf.json").exists()
        assert (outbox / "failed" / "14155550127_link.pdf").is_symlink()
        assert sends_to(daemon) == {}
    assert secret.read_bytes() == pdf_document(1), "never followed, never moved"
    assert refused_count("bad_number") == before["bad_number"] + 1
    assert refused_count("type") == before["type"] + 1
    assert refused_count("size") == before["size"] + 1
    assert refused_count("symlink") == before["symlink"] + 1


async def test_names_never_collide(tmp_path: Path) -> None:
    async with running(tmp_path, date_subfolders=True) as daemon:
        outbox = outbox_of(daemon)
        for n in (1, 2):
            (outbox / "14155550123_invoice.pdf").write_bytes(pdf_document(n))
            await taken(outbox / "14155550123_invoice.pdf")
            (outbox / "invoice.pdf").write_bytes(pdf_document(n))
            await taken(outbox / "invoice.pdf")
        (day,) = (outbox / "sent").iterdir()

        def both_sent() -> list[str]:
            names = sorted(p.name for p in day.iterdir())
            return names if len(names) == 4 and all(p.stat().st_size for p in day.iterdir()) else []

        assert await wait_for(both_sent) == [
            "14155550123_invoice (2).pdf",
            "14155550123_invoice (2).pdf.result.json",
            "14155550123_invoice.pdf",
            "14155550123_invoice.pdf.result.json",
        ]
        (failed_day,) = (outbox / "failed").iterdir()
        await wait_for(lambda: len(list(failed_day.iterdir())) == 4)
        assert (failed_day / "invoice (2).pdf.reason.txt").exists()
    pages = sorted(
        json.loads((day / n).read_text())["pages"] for n in os.listdir(day) if n.endswith("json")
    )
    assert pages == [1, 2]


# ---------------------------------------------------------------------------- results


@pytest.mark.parametrize("api", SANDBOX_APIS)
async def test_results_match_the_sandbox(tmp_path: Path, api: str) -> None:
    async with running(tmp_path, api, sidecar_wait=5.0) as daemon:
        outbox = outbox_of(daemon)
        (outbox / "14155550123_ok.pdf").write_bytes(pdf_document(2))
        (outbox / "14155550003_unallocated.pdf").write_bytes(pdf_document(1))
        (outbox / "14155550001_busy.pdf").write_bytes(pdf_document(1))
        (outbox / "both.pdf.json").write_text('{"to": ["+14155550124", "+14155550004"]}')
        (outbox / "both.pdf").write_bytes(pdf_document(1))

        ok = await result(outbox, "14155550123_ok.pdf")
        unallocated = await result(outbox, "14155550003_unallocated.pdf", "failed")
        busy = await result(outbox, "14155550001_busy.pdf", "failed")
        both = await result(outbox, "both.pdf", "failed")
        await wait_for(lambda: not any((outbox / "processing").iterdir()), what="no status left")
        by_guid = {t.guid: t for t in sandbox_of(daemon).inspect()}
        busy_calls = sends_to(daemon)["14155550001"]
    assert by_guid[ok["provider_guid"]].status == "S"
    assert by_guid[ok["provider_guid"]].to == "14155550123"
    assert (ok["outcome"], ok["tries"], ok["pages"]) == ("sent", 1, 2)
    assert by_guid[unallocated["provider_guid"]].error_code == "A"
    assert unallocated["outcome"] == "failed"
    assert "not allocated" in unallocated["reason"]
    assert busy["tries"] == 4 == busy_calls
    assert "busy" in busy["reason"]
    assert both["outcome"] == "partly sent"
    states = {f["number"]: f["outcome"] for f in both["faxes"]}
    assert states == {"+14155550124": "sent", "+14155550004": "failed"}
    assert "faxgate retry" in both["next"]
    # Failed files keep their spool copy, so `faxgate retry` can send them again.
    assert (outbox / "failed" / "both.pdf").read_bytes() == pdf_document(1)


async def test_status_while_in_flight_and_a_report_mail(tmp_path: Path) -> None:
    async with running(tmp_path, sidecar_wait=5.0) as daemon:
        sandbox_of(daemon).faults.stall_faxes = True
        outbox = outbox_of(daemon)
        sidecar = {"to": "+14155550123", "notify": "owner@example.com"}
        (outbox / "report.pdf.json").write_text(json.dumps(sidecar))
        (outbox / "report.pdf").write_bytes(pdf_document(1))
        status_path = outbox / "processing" / "report.pdf.status.json"

        def status() -> Any:
            # Empty for a moment: its name is reserved before it is written.
            text = status_path.read_text() if status_path.exists() else ""
            return json.loads(text) if text else None

        shown = await wait_for(status, what="the status file")
        assert shown["state"] == "sending"
        assert shown["faxes"] == [{"number": "+14155550123", "state": "queued"}]
        await wait_for(lambda: sends_to(daemon)["14155550123"] == 1, what="the fax at the sandbox")
        assert status_path.exists()
        sandbox_of(daemon).faults.stall_faxes = False
        assert (await result(outbox, "report.pdf"))["outcome"] == "sent"
        # The status file goes just after the result is placed.
        await wait_for(lambda: not status_path.exists(), what="the status file removed")
        mails = daemon.settings.maildir / "new"
        await wait_for(lambda: mails.exists() and any(mails.iterdir()), what="the report mail")
        (mail,) = mails.iterdir()
        assert "To: owner@example.com" in mail.read_text()


async def test_a_missing_folder_stops_the_start(tmp_path: Path) -> None:
    from faxgate.app import StartupError

    settings = fast_settings(tmp_path / "state").model_copy(
        update={"folders": [FolderSettings(path=tmp_path / "nowhere")]}
    )
    with pytest.raises(StartupError, match="nowhere does not exist"):
        async with started(settings):
            pass
