"""Helpers shared by the pipeline's benchmarks: the machine, memory, tables, a document."""

from __future__ import annotations

import io
import os
import platform
import resource
import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pypdf import PdfWriter

from faxgate.settings import Settings
from faxgate.store import NewDocument, NewJob, Store
from faxgate.store.spool import Spool

__all__ = [
    "banner",
    "bench_settings",
    "fax_number",
    "fill_store",
    "machine",
    "one_page_pdf",
    "peak_rss_kib",
    "ratio",
    "rss_kib",
    "table",
    "write_readme_section",
]

README = Path(__file__).with_name("README.md")


# Every listener on loopback at a free port: a benchmark never meets a running faxgate.
_LOOPBACK: dict[str, dict[str, Any]] = {
    "sandbox": {"listen": "127.0.0.1:0"},
    "http": {"listen": "127.0.0.1:0"},
    "smtp": {"listen": "127.0.0.1:0"},
}


def bench_settings(state_dir: Path, **sections: dict[str, Any]) -> Settings:
    """A daemon's settings in `state_dir` with every listener on loopback; `sections`
    adds to or overrides the settings section by section."""
    values: dict[str, Any] = {"state_dir": state_dir, "log_level": "warning", **_LOOPBACK}
    for name, overrides in sections.items():
        values[name] = {**values.get(name, {}), **overrides}
    return Settings(**values)


CREATE_CHUNK = 2000  # jobs per store transaction while filling a store


def fill_store(settings: Settings, count: int, job: Callable[[int, NewDocument], NewJob]) -> None:
    """`count` queued faxes in the store of `settings`, `job(i, document)` the i-th, all
    sharing one spooled one-page document; made CREATE_CHUNK jobs a transaction."""
    spooled = Spool(settings.spool_dir).store_bytes(one_page_pdf(), suffix=".pdf")
    document = NewDocument("letter.pdf", spooled, "application/pdf")
    with Store.open(settings.database_path) as store:
        for start in range(0, count, CREATE_CHUNK):
            store.create_jobs(
                [job(i, document) for i in range(start, min(count, start + CREATE_CHUNK))]
            )


def one_page_pdf() -> bytes:
    """A real one-page PDF (blank, letter size)."""
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def fax_number(index: int) -> str:
    """A US number the sandbox sends successfully (its last four digits never 0001-0007)."""
    return f"+1415555{1000 + index % 9000:04d}"


def _status_kib(field: str) -> int | None:
    """A "VmXxx:  1234 kB" line of /proc/self/status, in KiB (None off Linux)."""
    try:
        text = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def rss_kib() -> int:
    """The process's resident memory now, in KiB."""
    now = _status_kib("VmRSS")
    return now if now is not None else peak_rss_kib()


def peak_rss_kib() -> int:
    """The process's highest resident memory so far, in KiB."""
    peak = _status_kib("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss // 1024 if sys.platform == "darwin" else maxrss  # bytes on macOS


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"nproc {cpus}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()} {platform.machine()}"
    )


def banner(title: str) -> None:
    """The heading every benchmark prints: what, when, where, how it was started."""
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    print(title)
    print(f"  date:    {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"  machine: {machine()}")
    print(f"  command: {command}")
    print()


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline else "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for number, row in enumerate(cells):
        parts = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write_readme_section(text: str, *, after: str | None = None) -> None:
    """Replace the section of bench/README.md that `text` is (its first line the title);
    one not there yet goes after the section titled `after` when there is one, else at
    the end."""
    current = README.read_text() if README.exists() else "# Benchmarks\n"
    title = text.split("\n", 1)[0]
    start = current.find(title)
    if start < 0 and after is not None and (previous := current.find(after)) >= 0:
        following = current.find("\n## ", previous + len(after))
        if following >= 0:
            updated = (
                current[: following + 1] + text.rstrip("\n") + "\n\n" + current[following + 1 :]
            )
            README.write_text(updated.rstrip("\n") + "\n")
            return
    if start < 0:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        following = current.find("\n## ", start + len(title))
        rest = "" if following < 0 else current[following:]
        updated = current[:start] + text.rstrip("\n") + "\n" + rest
    README.write_text(updated.rstrip("\n") + "\n")
