"""The pieces every status page is made of: escaped text, times, tables, the frame.

Every value on the pages came from outside at some point (numbers, names, file names, the
provider's words), so every one goes through `text` or `attr`; the pages carry no script,
and their Content-Security-Policy forbids any.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote, urlencode

__all__ = [
    "PAGE_HEADERS",
    "attr",
    "document_page",
    "href",
    "row",
    "size",
    "table",
    "text",
    "time",
]

PAGE_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none';"
        " form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def printable(value: str) -> str:
    """A name that was not UTF-8 (its bytes kept as surrogates) with those bytes shown as
    U+FFFD, so the page can be encoded at all."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def text(value: object) -> str:
    """A value as escaped text; nothing shows as a dash."""
    if value is None or value == "":
        return "–"
    return html.escape(printable(str(value)), quote=True)


def attr(value: object) -> str:
    """A value for inside a quoted attribute (empty stays empty)."""
    return html.escape(printable("" if value is None else str(value)), quote=True)


def href(path: str, query: Mapping[str, object] | None = None) -> str:
    """A link to one of our own paths; the segments in `path` are already safe."""
    wanted = {key: str(value) for key, value in (query or {}).items() if value not in (None, "")}
    return attr(path + (f"?{urlencode(wanted)}" if wanted else ""))


def segment(value: str) -> str:
    """One path segment, quoted."""
    return quote(value, safe="")


def time(value: datetime | None) -> str:
    """Server time for people, the exact UTC moment in the attribute."""
    if value is None:
        return "–"
    exact = html.escape(value.astimezone(UTC).isoformat(timespec="seconds"))
    shown = html.escape(value.astimezone().strftime("%Y-%m-%d %H:%M:%S"))
    return f'<time datetime="{exact}">{shown}</time>'


def size(n: int | None) -> str:
    if n is None:
        return "–"
    if n < 1024:
        return f"{n:d} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def row(cells: Iterable[str], attributes: str = "") -> str:
    return f"<tr{attributes}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def table(table_id: str, headings: Sequence[str], rows: Sequence[str], empty: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headings)
    if not rows:
        body = f'<tr><td colspan="{len(headings)}" class="none">{html.escape(empty)}</td></tr>'
    else:
        body = "\n".join(rows)
    return (
        f'<table id="{table_id}">\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table>"
    )


_STYLE: Final = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0; }
h1 a { color: inherit; text-decoration: none; }
h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
header p { color: #666; margin: .2em 0; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td:last-child { max-width: 40em; overflow-wrap: anywhere; }
table.fields th { width: 10em; }
td.none, p.none { color: #777; font-style: italic; }
td.alert { background: #fde2e1; font-weight: bold; }
#health { padding: .2em .8em; border-radius: 4px; }
#health h2 { margin: .4em 0; }
#health.ok { background: #e3f6e5; }
#health.unhealthy { background: #fde2e1; }
.state.sent { color: #17692b; }
.state.failed, .state.uncertain { color: #a8231d; font-weight: bold; }
.state.cancelled { color: #777; }
form#filters { display: flex; gap: .8em; align-items: end; flex-wrap: wrap; }
form#filters label { display: flex; flex-direction: column; font-size: .9em; color: #555; }
nav.pages { margin: .5em 0; display: flex; gap: 1em; }
img.page { border: 1px solid #ccc; max-width: 200px; height: auto; display: block; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
.bar-sent { fill: #2e8b57; }
.bar-failed { fill: #c0392b; }
.bar-received { fill: #2f6db5; }
"""


def document_page(title: str, body: str, *, refresh: int | None = None) -> str:
    """A whole page around `body`; `title` is escaped here."""
    meta_refresh = f'<meta http-equiv="refresh" content="{refresh:d}">\n' if refresh else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{meta_refresh}<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{html.escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
{body}
</body>
</html>
"""
