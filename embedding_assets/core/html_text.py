"""HTML to plain text that keeps the structure the chunker needs (headings, paragraphs) and every word.

The space at a text node's edge is kept (a run of whitespace becomes one space, never none), so text
beside an inline tag (``condition <b>is</b> true``) reads as it renders. Blocks become paragraphs,
headings Markdown ``#`` lines, table rows lines with their cells apart, and ``<pre>`` keeps its line
breaks and indentation. Scripts, styles and the head are dropped.
"""

import re
from html.parser import HTMLParser
from itertools import groupby
from operator import itemgetter

_SKIPPED = {"script", "style", "head", "template", "noscript", "svg"}
_BLOCKS = {
    "p",
    "div",
    "section",
    "article",
    "li",
    "ul",
    "ol",
    "table",
    "pre",
    "listing",
    "blockquote",
    "dd",
    "dt",
    "dl",
    "header",
    "footer",
    "main",
    "nav",
    "aside",
    "figure",
    "figcaption",
    "caption",
    "details",
    "summary",
    "address",
    "form",
    "fieldset",
    "legend",
    "hr",
}
_CELLS = {"td", "th"}
_PREFORMATTED = {"pre", "listing"}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_WHITESPACE = re.compile(r"\s+")
_CELL = " | "  # between the cells of a row
# How strong a separator is: of those asked for between two texts, the strongest is written.
_RANK = {"": 0, " ": 1, _CELL: 2, "\n": 3, "\n\n": 4}


class _TextExtractor(HTMLParser):
    """Collects (text, preformatted) parts: preformatted text is kept as it is, the rest collapsed later.

    Tags ask for separators (a paragraph break, a line break, a cell's bar) that are written only before
    the next text, the strongest one winning; a row's line break and a cell's bar are fixed, so the
    paragraphs inside a cell (Word's tables, through mammoth) do not push a row's cells apart."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[tuple[str, bool]] = []
        self._skip_depth = 0
        self._pre_depth = 0
        self._pending = ""  # the separator owed before the next text
        self._heading = ""  # the Markdown mark owed with it (``## ``)
        self._fixed = False  # the pending separator is a row's or a cell's: block edges leave it
        self._row_seen = False  # the current table has had a row: the next starts a line
        self._cell_seen = False  # the current row has had a cell: the next is set apart

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":  # never inside a skipped element, even when a page leaves its <head> open
            self._skip_depth = 0
        if tag in _SKIPPED:
            self._skip_depth += 1
        if self._skip_depth:
            return
        if tag in _PREFORMATTED:
            self._pre_depth += 1
        if tag == "table":
            self._ask("\n\n")
            self._row_seen = False
        elif tag == "tr":
            if self._row_seen:
                self._fix("\n")
            self._row_seen, self._cell_seen = True, False
        elif tag in _CELLS:
            if self._cell_seen:
                self._fix(_CELL)
            self._cell_seen = True
        elif tag in _HEADINGS:
            self._ask("\n\n")
            if not self._fixed:
                self._heading = "#" * _HEADINGS[tag] + " "
        elif tag in _BLOCKS:
            self._ask("\n\n")
        elif tag in {"br", "option"}:
            self._ask("\n\n" if self._pending == "\n" and tag == "br" else "\n")  # two <br>: a paragraph

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skip_depth = max(0, self._skip_depth - 1)
            return
        if self._skip_depth:
            return
        if tag in _PREFORMATTED:
            self._pre_depth = max(0, self._pre_depth - 1)
        if tag == "table":
            self._pending, self._fixed, self._row_seen = "\n\n", False, False
        elif tag in _HEADINGS or tag in _BLOCKS:
            self._ask("\n\n")
            self._heading = ""

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._pre_depth:
            self._write(data, preformatted=True)
        elif data.strip():
            self._write(_WHITESPACE.sub(" ", data))
        elif data and not self._pending:  # a space between inline elements: ``<b>a</b> <i>b</i>``
            self.parts.append((" ", False))

    def _ask(self, separator: str) -> None:
        if not self._fixed and _RANK[separator] > _RANK[self._pending]:
            self._pending = separator

    def _fix(self, separator: str) -> None:
        self._pending, self._fixed, self._heading = separator, True, ""

    def _write(self, text: str, *, preformatted: bool = False) -> None:
        if self._pending or self._heading:
            self.parts.append((self._pending + self._heading, False))
        self.parts.append((text, preformatted))
        self._pending, self._heading, self._fixed = "", "", False


def html_to_text(html: str) -> str:
    """Visible text of an HTML page; headings become Markdown ``#`` lines, blocks become paragraphs."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    runs = groupby(parser.parts, key=itemgetter(1))  # consecutive parts of one kind
    return "".join((_preformatted if pre else _flowing)("".join(text for text, _ in run)) for pre, run in runs)


def _flowing(text: str) -> str:
    """Flowing text: each line's runs of spaces made one, and the line stripped."""
    return "\n".join(" ".join(line.split()) for line in text.split("\n"))


def _preformatted(text: str) -> str:
    """A ``<pre>`` block's text as written, minus the newline that may follow the start tag."""
    text = text.replace("\r\n", "\n")
    return text[1:] if text.startswith("\n") else text
