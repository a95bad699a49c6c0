"""Documents from the bytes of one file or object, by its name's suffix: shared by every source of files.

A text file (``.md .txt .rst .html``), a PDF or a DOCX is one document whose id is its name; a
``.json`` or ``.jsonl`` file holds records, each a document with its own id. A text file that is not
UTF-8 is decoded in the encoding detected for it, which its document records. What cannot be read
becomes a ``Skip`` with a reason, so nothing is dropped silently.
"""

import json
from collections.abc import Iterator
from typing import TypeAlias

from embedding_assets.core.hashing import content_hash, normalize_text
from embedding_assets.core.html_text import html_to_text
from embedding_assets.core.sources.base import Document, Item, Skip
from embedding_assets.core.sources.formats import Unreadable, decode_text, docx_text, pdf_text

HTML_SUFFIXES = frozenset({".html", ".htm"})
TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".rst"}) | HTML_SUFFIXES
BINARY_SUFFIXES = frozenset({".pdf", ".docx"})
RECORD_SUFFIXES = frozenset({".json", ".jsonl"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | BINARY_SUFFIXES | RECORD_SUFFIXES
# The reader of each suffix and its version, carried in every key's version (``versioned``): when a
# reader changes, the change index reads that suffix's keys again (and only those), so their documents
# are what the reader makes now. Text 2: other encodings detected; html 2: no glued words.
READERS = (
    dict.fromkeys(TEXT_SUFFIXES, "text2") | dict.fromkeys(HTML_SUFFIXES, "html2") | {".pdf": "pdf1", ".docx": "docx1"}
)
_JSONObject: TypeAlias = dict[str, object]
"""A parsed JSON object (a record); its values are checked where they are read."""


def parse(name: str, data: bytes, *, id_field: str = "id", text_field: str = "text") -> list[Item]:
    """Everything ``name`` holds: its document, or its records (a skip for each that fails)."""
    kind = suffix(name)
    if kind in RECORD_SUFFIXES:
        return _records(name, data, id_field, text_field)
    encoding = None
    try:
        if kind == ".pdf":
            return [document(name, pdf_text(data), name)]  # normalised page by page, its page breaks kept
        if kind == ".docx":
            text = docx_text(data)
        else:
            raw, encoding = decode_text(data)
            text = html_to_text(raw) if kind in HTML_SUFFIXES else raw
    except Unreadable as err:
        return [Skip(name, str(err))]
    return [document(name, normalize_text(text), name, encoding)]


def versioned(name: str, version: str) -> str:
    """A key's version as the change index keeps it: the source's version and the reader of its suffix
    (an unknown version, "", stays unknown)."""
    reader = READERS.get(suffix(name))
    return f"{version}|{reader}" if version and reader else version


def decode(data: bytes) -> str:
    """UTF-8 text (a BOM is dropped), refusing what is not text: JSON is UTF-8 (RFC 8259), never guessed."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise Unreadable(f"not valid UTF-8 (byte {err.start})") from None
    if "\x00" in text[:8192]:
        raise Unreadable("binary content (NUL bytes)")
    return text


def document(doc_id: str, text: str, source_path: str, encoding: str | None = None) -> Item:
    """A document of normalised ``text`` (decoded from ``encoding``, if not UTF-8), or a skip when
    nothing is left of it."""
    if not text:
        return Skip(doc_id, "empty after normalisation")
    return Document(doc_id, text, content_hash(text), source_path, encoding)


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
