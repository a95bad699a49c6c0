"""Documents from the bytes of one file or object, by its name's suffix: shared by every source of files.

A text file (``.md .txt .rst .html``) is one document whose id is its name; a ``.json`` or ``.jsonl``
file holds records, each a document with its own id. What cannot be read becomes a ``Skip`` with a
reason, so nothing is dropped silently.
"""

import json
from collections.abc import Iterator
from typing import TypeAlias

from embedding_assets.core.hashing import content_hash, normalize_text
from embedding_assets.core.html_text import html_to_text
from embedding_assets.core.sources.base import Document, Item, Skip

TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".rst", ".html", ".htm"})
RECORD_SUFFIXES = frozenset({".json", ".jsonl"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | RECORD_SUFFIXES
_JSONObject: TypeAlias = dict[str, object]
"""A parsed JSON object (a record); its values are checked where they are read."""


class Unreadable(ValueError):
    """The bytes cannot be a document (not UTF-8, binary); the message is the skip's reason."""


def parse(name: str, data: bytes, *, id_field: str = "id", text_field: str = "text") -> list[Item]:
    """Everything ``name`` holds: its document, or its records (a skip for each that fails)."""
    if suffix(name) in RECORD_SUFFIXES:
        return _records(name, data, id_field, text_field)
    try:
        raw = decode(data)
    except Unreadable as err:
        return [Skip(name, str(err))]
    return [document(name, normalize_text(html_to_text(raw) if suffix(name) in {".html", ".htm"} else raw), name)]


def decode(data: bytes) -> str:
    """UTF-8 text (a BOM is dropped), refusing what is not text."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise Unreadable(f"not valid UTF-8 (byte {err.start})") from None
    if "\x00" in text[:8192]:
        raise Unreadable("binary content (NUL bytes)")
    return text


def document(doc_id: str, text: str, source_path: str) -> Item:
    """A document of normalised ``text``, or a skip when nothing is left of it."""
    if not text:
        return Skip(doc_id, "empty after normalisation")
    return Document(doc_id, text, content_hash(text), source_path)


def suffix(name: str) -> str:
    """The lower-cased extension, as ``Path(name).suffix`` gives it, without building a Path."""
    base = name.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[dot:].lower() if 0 < dot < len(base) - 1 else ""


def _records(name: str, data: bytes, id_field: str, text_field: str) -> list[Item]:
    """Records of a .json/.jsonl file; a file that cannot be parsed is one skip under its own name."""
    try:
        records = list(_parse_records(name, data))
    except ValueError as err:
        return [Skip(name, str(err))]
    items: list[Item] = []
    for location, record in records:
        if isinstance(record, str):  # a line that failed to parse
            items.append(Skip(location, record))
            continue
        doc_id, text = record.get(id_field), record.get(text_field)
        if not isinstance(doc_id, str | int) or isinstance(doc_id, bool) or not str(doc_id):
            items.append(Skip(location, f"record has no usable {id_field!r} field"))
        elif not isinstance(text, str):
            items.append(Skip(str(doc_id), f"record has no string {text_field!r} field ({location})"))
        else:
            items.append(document(str(doc_id), normalize_text(text), name))
    return items


def _parse_records(name: str, data: bytes) -> Iterator[tuple[str, _JSONObject | str]]:
    """(location, record) pairs; a record that fails to parse is given as its error message."""
    text = decode(data)
    if name.lower().endswith(".jsonl"):
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield f"{name}:{lineno}", _parse_object(line)
        return
    parsed = json.loads(text)
    for index, record in enumerate(parsed if isinstance(parsed, list) else [parsed]):
        yield f"{name}:{index}", record if isinstance(record, dict) else "record is not a JSON object"


def _parse_object(line: str) -> _JSONObject | str:
    try:
        value = json.loads(line)
    except ValueError as err:
        return f"malformed JSON: {err}"
    return value if isinstance(value, dict) else "record is not a JSON object"
