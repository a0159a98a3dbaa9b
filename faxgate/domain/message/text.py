"""The body as text: HTML and enriched text turned to text, signatures cut, tidied."""

from __future__ import annotations

import contextlib
import re
from html.parser import HTMLParser
from typing import Final

from faxgate.domain.message.values import MAX_COVER_MESSAGE_CHARS


def _body(texts: list[str]) -> str:
    """The message's text: pieces joined, the signature cut, whitespace tidied."""
    return tidy_text(cut_signature("\n\n".join(texts)))


def cut_signature(text: str) -> str:
    """Everything before the first signature separator line ("-- ", or "--" when stripped)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for index, line in enumerate(lines):
        if line.strip() == "--":
            return "\n".join(lines[:index])
    return "\n".join(lines)


def tidy_text(text: str) -> str:
    """One space between words, no control characters, at most one blank line in a row."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    tidied: list[str] = []
    for line in lines:
        printable = "".join(ch if ch.isprintable() else " " for ch in line.replace("\u200b", ""))
        words = " ".join(printable.split())
        if words or (tidied and tidied[-1]):
            tidied.append(words)
    return "\n".join(tidied).strip()


def html_to_text(html: str) -> str:
    """The text a reader sees: blocks on their own lines, scripts and styles left out."""
    parser = _HtmlText()
    # html.parser gives up on some malformed markup; what it read so far is kept.
    with contextlib.suppress(Exception):
        parser.feed(html)
        parser.close()
    return parser.text()


class _HtmlText(HTMLParser):
    """Text from HTML the way mail clients lay it out: a block starts a line, <br> breaks one.

    Blocks do not add blank lines of their own (Outlook writes every line as a <p> and its
    blank lines as <p>&nbsp;</p>; Gmail writes <div><br></div>).
    """

    _BLOCKS: Final = frozenset(
        {"p", "div", "tr", "table", "ul", "ol", "blockquote", "pre", "hr", "dd", "dt"}
        | {"h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header", "footer"}
    )
    _HIDDEN: Final = frozenset({"script", "style", "head", "title", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._pieces: list[str] = []
        self._hidden = 0
        self._line_started = False  # the current line has visible text

    def text(self) -> str:
        return "".join(self._pieces)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._hidden = 0  # a <head> never closed must not hide the body
        elif tag in self._HIDDEN:
            self._hidden += 1
        elif tag == "br":
            self._new_line(always=True)
        elif tag in self._BLOCKS:
            self._new_line()
        elif tag == "li":
            self._new_line()
            self._add("- ")
        elif tag in ("td", "th"):
            self._add(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCKS or tag == "li":
            self._new_line()

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._add(re.sub(r"[ \t\r\n\f]+", " ", data))

    def _add(self, text: str) -> None:
        self._pieces.append(text)
        self._line_started |= bool(text.strip(" \t\r\n\f"))

    def _new_line(self, *, always: bool = False) -> None:
        if always or self._line_started:
            self._pieces.append("\n")
            self._line_started = False


def _cover_message(subject: str | None, body: str) -> str | None:
    text = "\n\n".join(piece for piece in (subject, body) if piece)
    return _capped(text, MAX_COVER_MESSAGE_CHARS) or None


def _capped(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.8:  # end on a whole word unless that loses much
        cut = cut[:space]
    return cut.rstrip() + "…"
