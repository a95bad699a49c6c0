"""Deterministic, structure-aware chunking sized in the embedding model's own tokens.

A document is cut into units (headings, then sentences of paragraphs, with their original
separators), units that are still too long are halved at the best boundary, and units are packed
greedily into chunks of at most ``max_tokens``. A heading starts a new chunk once the current one
has some substance; a chunk cut mid-section repeats up to ``overlap_tokens`` of trailing sentences.
The same text and config always give the same chunks, so unchanged documents hash the same.

A paged document (a PDF) is a text that begins with ``PAGE_BREAK`` and holds one before each page.
Every page is cut on its own, so no chunk spans two pages, and each chunk records its page number
(from 1); chunks of other documents have no page.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from embedding_assets.core.hashing import content_hash

CHUNKER_VERSION = "2"  # 2: page breaks are hard boundaries, and chunks carry their page
PAGE_BREAK = "\f"  # a form feed: a paged text begins with one, and each page after it too

TokenCounter = Callable[[Sequence[str]], list[int]]
"""Counts the tokens of each text, without special tokens, using the embedding model's tokenizer."""

_ATX_HEADING = re.compile(r"^#{1,6}\s+\S")
_UNDERLINE = re.compile(r"^([=\-~^\"'*+#`:.])\1{2,}\s*$")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?:;])(\s+)(?=\S)")
_SPLIT_POINTS = (re.compile(r"\n"), re.compile(r"(?<=[.!?,;:])\s"), re.compile(r"\s"))


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = 200
    overlap_tokens: int = 32

    def __post_init__(self) -> None:
        if self.max_tokens < 8:
            raise ValueError(f"chunk size must be at least 8 tokens, got {self.max_tokens}")
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise ValueError(f"chunk overlap must be between 0 and half the chunk size, got {self.overlap_tokens}")

    @property
    def identity(self) -> str:
        return f"chunker-v{CHUNKER_VERSION}/max{self.max_tokens}/overlap{self.overlap_tokens}"


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    position: int
    text: str
    chunk_hash: str
    token_count: int
    page: int | None = None  # the page it is on (from 1), for paged documents


@dataclass(frozen=True)
class _Unit:
    text: str
    separator: str  # what stood before this unit in the document
    tokens: int
    is_heading: bool


def chunk_id(doc_id: str, position: int) -> str:
    return f"{doc_id}#{position}"


def chunk_document(doc_id: str, text: str, config: ChunkingConfig, count_tokens: TokenCounter) -> list[Chunk]:
    """Split one normalised document into chunks; positions count from 0 across its pages."""
    cut = [
        (_join(group), page)
        for body, page in _pages(text)
        for group in _pack(_fit_units(_units(body), config.max_tokens, count_tokens), config)
    ]
    counts = count_tokens([t for t, _ in cut]) if cut else []
    return [
        Chunk(chunk_id(doc_id, i), doc_id, i, t, content_hash(t), n, page)
        for i, ((t, page), n) in enumerate(zip(cut, counts, strict=True))
    ]


def _pages(text: str) -> list[tuple[str, int | None]]:
    """(text, page number) of each page of a paged text; the whole text, without a page, otherwise."""
    if not text.startswith(PAGE_BREAK):
        return [(text, None)]
    return [(page, number) for number, page in enumerate(text.split(PAGE_BREAK)[1:], start=1)]


def _units(text: str) -> list[tuple[str, str, bool]]:
    """(text, separator, is_heading) for headings and sentences, in document order."""
    units: list[tuple[str, str, bool]] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        lines = paragraph.strip("\n").split("\n")
        if _is_heading(lines):
            units.append((paragraph.strip(), "\n\n", True))
            continue
        if len(lines) >= 2 and _is_heading(lines[:2]):  # a reST heading glued to its first paragraph
            units.append(("\n".join(lines[:2]), "\n\n", True))
            paragraph = "\n".join(lines[2:])
        pieces = _SENTENCE_BREAK.split(paragraph.strip())
        units.extend(
            (pieces[i], "\n\n" if i == 0 else pieces[i - 1], False)
            for i in range(0, len(pieces), 2)
            if pieces[i].strip()
        )
    return units


def _is_heading(lines: list[str]) -> bool:
    if len(lines) == 1:
        return bool(_ATX_HEADING.match(lines[0]))
    if len(lines) == 2:  # reST/setext: a title underlined at least as long as itself
        title, rule = lines[0].rstrip(), lines[1].rstrip()
        return bool(title.strip()) and bool(_UNDERLINE.match(rule)) and len(rule) >= len(title.strip())
    if len(lines) == 3:  # reST: overline, title, underline
        return bool(_UNDERLINE.match(lines[0])) and _is_heading(lines[1:])
    return False


def _fit_units(raw: list[tuple[str, str, bool]], max_tokens: int, count_tokens: TokenCounter) -> list[_Unit]:
    """Count every unit's tokens in one batch; halve the rare unit that is longer than a chunk."""
    counts = count_tokens([t for t, _, _ in raw]) if raw else []
    units: list[_Unit] = []
    for (text, separator, is_heading), tokens in zip(raw, counts, strict=True):
        if tokens <= max_tokens:
            units.append(_Unit(text, separator, tokens, is_heading))
        else:
            pieces = _split_to_fit(text, max_tokens, count_tokens)
            units.extend(
                _Unit(p, separator if i == 0 else sep, n, is_heading and i == 0) for i, (p, sep, n) in enumerate(pieces)
            )
    return units


def _split_to_fit(text: str, max_tokens: int, count_tokens: TokenCounter) -> list[tuple[str, str, int]]:
    """Halve ``text`` at the boundary nearest its middle (line, clause, word, else character) until it fits."""
    tokens = count_tokens([text])[0]
    if tokens <= max_tokens or len(text) < 2:
        return [(text, "", tokens)]
    middle = len(text) // 2
    cut, width = middle, 0
    for pattern in _SPLIT_POINTS:
        spots = [m for m in pattern.finditer(text) if 0 < m.start() < len(text) - 1]
        if spots:
            best = min(spots, key=lambda m: abs(m.start() - middle))
            cut, width = best.start(), best.end() - best.start()
            break
    left = _split_to_fit(text[:cut], max_tokens, count_tokens)
    right = _split_to_fit(text[cut + width :], max_tokens, count_tokens)
    right[0] = (right[0][0], text[cut : cut + width] or "", right[0][2])
    return left + right


def _pack(units: list[_Unit], config: ChunkingConfig) -> list[list[_Unit]]:
    """Greedy packing of units into chunks, with sentence overlap inside a section."""
    groups: list[list[_Unit]] = []
    current: list[_Unit] = []
    size = 0
    for unit in units:
        if current and unit.is_heading and size >= config.max_tokens // 4:
            groups.append(current)
            current, size = [], 0
        elif current and size + unit.tokens > config.max_tokens:
            groups.append(current)
            current = _overlap(current, config.overlap_tokens, config.max_tokens - unit.tokens)
            size = sum(u.tokens for u in current)
        current.append(unit)
        size += unit.tokens
    if current:
        groups.append(current)
    return groups


def _overlap(previous: list[_Unit], overlap_tokens: int, room: int) -> list[_Unit]:
    """The trailing sentences of ``previous`` that fit in both the overlap budget and the room left."""
    tail: list[_Unit] = []
    budget = min(overlap_tokens, room)
    for unit in reversed(previous[1:]):  # never repeat a whole chunk
        if unit.is_heading or unit.tokens > budget:
            break
        tail.insert(0, unit)
        budget -= unit.tokens
    return tail


def _join(units: list[_Unit]) -> str:
    return units[0].text + "".join(u.separator + u.text for u in units[1:])
