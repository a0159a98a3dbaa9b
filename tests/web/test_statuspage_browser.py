"""The status pages in headless Chromium: screenshots of the list with its chart and of a
job's page, the page pictures loaded with a real size, and the filter form used as a
person would (typed into, Enter pressed), all over real HTTP on loopback."""

from __future__ import annotations

import struct
from pathlib import Path

from tests.web.browser import chromium
from tests.web.test_statuspages import Site, filled, site

__all__ = ["filled", "site"]  # the fixtures


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_the_pages_in_a_browser(site: Site, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with chromium(tmp_path / "chromium") as tab:
        # The list with its chart.
        await tab.open(site.url("/"))
        assert await tab.value("document.title") == "faxgate status"
        chart = await tab.value(
            "(() => { const r = document.getElementById('chart').getBoundingClientRect();"
            " return [r.width, r.height]; })()"
        )
        assert chart[0] > 600
        assert chart[1] > 150
        bars = await tab.value("document.querySelectorAll('#chart rect[data-count]').length")
        assert bars == 24 * 3
        assert await tab.value("document.querySelectorAll('script').length") == 0
        width, height = png_size(await tab.screenshot(shots / "list.png"))
        assert width >= 1000
        assert height > 900  # the whole page, beyond the window

        # The filter, typed into and sent with Enter.
        await tab.type_and_enter("input[name=number]", "555 0123")
        assert await tab.value("location.search") == "?state=&number=555+0123&sender="
        shown = await tab.value(
            "[...document.querySelectorAll('#jobs tr[data-job]')].map(r => r.dataset.job)"
        )
        assert shown == [site.sent.id]

        # The job's page from its link; its page picture loaded, with its real size.
        await tab.open(site.url(f"/jobs/{site.sent.id}"))
        images = await tab.value(
            "[...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight,"
            " i.getAttribute('src')])"
        )
        loaded = {src: (done, w, h) for done, w, h, src in images}
        assert loaded[f"/jobs/{site.sent.id}/documents/0/page1.png"] == (True, 40, 52)
        # The text document has no picture drawn: a broken image, not a page error.
        assert loaded[f"/jobs/{site.sent.id}/documents/1/page1.png"][1] == 0
        history = await tab.value("document.querySelectorAll('#history tr[data-event]').length")
        assert history == 7
        width, _height = png_size(await tab.screenshot(shots / "job.png"))
        assert width >= 1000

        # The inbound fax's page: its picture too.
        await tab.open(site.url(f"/inbound/{site.fax.id}"))
        sizes = await tab.value("[...document.images].map(i => i.naturalWidth)")
        assert sizes == [40]
        png_size(await tab.screenshot(shots / "fax.png"))
