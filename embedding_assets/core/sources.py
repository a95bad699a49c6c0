"""A folder of source documents, read one shard at a time.

Document ids are stable: the path relative to the folder for text files (``guide/intro.md``), the
record's own id for ``.json``/``.jsonl`` records. Anything that cannot be read becomes a ``Skip``
with a reason, reported by exactly one shard (the shard of its id, path or ``path:line``), so
nothing is dropped silently.
"""

import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from embedding_assets.core.hashing import content_hash, normalize_text
from embedding_assets.core.html_text import html_to_text
from embedding_assets.core.shards import shard_of

TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".rst", ".html", ".htm"})
RECORD_SUFFIXES = frozenset({".json", ".jsonl"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | RECORD_SUFFIXES
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024  # ~2.5M tokens: beyond this a file is rarely one document
_JSONObject: TypeAlias = dict[str, object]
"""A parsed JSON object (a record); its values are checked where they are read."""


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str
    doc_hash: str
    source_path: str


@dataclass(frozen=True)
class Skip:
    """Something in the source folder that was not ingested, and why."""

    doc_id: str
    reason: str


class SourceError(Exception):
    """The source folder itself is unusable (missing, not a directory)."""


class SourceFolder:
    """Documents under ``root``; ``read_shard`` yields only those whose id belongs to the shard."""

    def __init__(
        self,
        root: str | Path,
        *,
        id_field: str = "id",
        text_field: str = "text",
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        self.root = Path(root)
        self.id_field = id_field
        self.text_field = text_field
        self.max_file_bytes = max_file_bytes

    def check(self) -> None:
        if not self.root.is_dir():
            raise SourceError(
                f"source folder {str(self.root)!r} does not exist or is not a directory "
                "(set EMBEDDING_ASSETS_SOURCE_DIR)"
            )

    def files(self) -> list[str]:
        """Relative posix paths of supported files, sorted; directory symlinks are never followed."""
        self.check()
        found: list[str] = []
        prefix = len(str(self.root)) + 1
        for dirpath, _, filenames in os.walk(self.root):
            folder = (dirpath[prefix:].replace(os.sep, "/") + "/") if len(dirpath) >= prefix else ""
            found.extend(folder + name for name in filenames if _suffix(name) in SUPPORTED_SUFFIXES)
        return sorted(found)

    def read_shard(self, shard: str, shard_count: int) -> Iterator[Document | Skip]:
        """The shard's documents and skips. Text files of other shards are not even opened."""

        def owned() -> Iterator[tuple[str, Document | Skip]]:
            for rel in self.files():
                if _suffix(rel) in RECORD_SUFFIXES or shard_of(rel, shard_count) == shard:
                    yield from (
                        (rel, item) for item in self.read_file(rel) if shard_of(item.doc_id, shard_count) == shard
                    )

        yield from first_id_wins(owned())

    def read_file(self, rel: str) -> list[Document | Skip]:
        """Everything one file holds: its document, or its records (a skip for each that fails)."""
        if _suffix(rel) in RECORD_SUFFIXES:
            return self._read_records(rel)
        try:
            raw = self._read_text(rel)
        except OSError as err:
            return [Skip(rel, _reason(err))]
        text = normalize_text(html_to_text(raw) if _suffix(rel) in {".html", ".htm"} else raw)
        return [_document(rel, text, rel)]

    def _read_bytes(self, rel: str) -> bytes:
        """The file's bytes, refusing anything outside the folder, not a regular file, or too big."""
        path = self.root / rel
        if path.is_symlink() and not path.resolve().is_relative_to(self.root.resolve()):
            raise OSError("symlink points outside the source folder")
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block forever, a device never end
            raise OSError("not a regular file")
        if info.st_size > self.max_file_bytes:
            raise OSError(
                f"file is {info.st_size} bytes, over the {self.max_file_bytes}-byte limit "
                "(EMBEDDING_ASSETS_MAX_FILE_BYTES)"
            )
        return path.read_bytes()

    def _read_text(self, rel: str) -> str:
        data = self._read_bytes(rel)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise OSError(f"not valid UTF-8 (byte {err.start})") from None
        if "\x00" in text[:8192]:
            raise OSError("binary content (NUL bytes)")
        return text

    def _read_records(self, rel: str) -> list[Document | Skip]:
        """Records of a .json/.jsonl file; a file that cannot be parsed is one skip under its own path."""
        try:
            records = list(self._parse_records(rel))
        except (OSError, ValueError) as err:
            return [Skip(rel, _reason(err))]
        items: list[Document | Skip] = []
        for location, record in records:
            if isinstance(record, str):  # a line that failed to parse
                items.append(Skip(location, record))
                continue
            doc_id, text = record.get(self.id_field), record.get(self.text_field)
            if not isinstance(doc_id, str | int) or isinstance(doc_id, bool) or not str(doc_id):
                items.append(Skip(location, f"record has no usable {self.id_field!r} field"))
            elif not isinstance(text, str):
                items.append(Skip(str(doc_id), f"record has no string {self.text_field!r} field ({location})"))
            else:
                items.append(_document(str(doc_id), normalize_text(text), rel))
        return items

    def _parse_records(self, rel: str) -> Iterator[tuple[str, _JSONObject | str]]:
        """(location, record) pairs; a record that fails to parse is given as its error message."""
        text = self._read_text(rel)
        if rel.lower().endswith(".jsonl"):
            for lineno, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    yield f"{rel}:{lineno}", _parse_object(line)
            return
        data = json.loads(text)
        for index, record in enumerate(data if isinstance(data, list) else [data]):
            yield f"{rel}:{index}", record if isinstance(record, dict) else "record is not a JSON object"


def first_id_wins(items: Iterable[tuple[str, Document | Skip]]) -> Iterator[Document | Skip]:
    """Items in file order, where a document whose id was already read becomes a skip.

    Duplicates share their id, hence their shard, so deduplicating one shard at a time is complete.
    """
    seen: dict[str, str] = {}
    for rel, item in items:
        if isinstance(item, Document):
            if item.doc_id in seen:
                item = Skip(item.doc_id, f"duplicate document id, first read from {seen[item.doc_id]}")
            else:
                seen[item.doc_id] = rel
        yield item


def _parse_object(line: str) -> _JSONObject | str:
    try:
        value = json.loads(line)
    except ValueError as err:
        return f"malformed JSON: {err}"
    return value if isinstance(value, dict) else "record is not a JSON object"


def _document(doc_id: str, text: str, source_path: str) -> Document | Skip:
    if not text:
        return Skip(doc_id, "empty after normalisation")
    return Document(doc_id, text, content_hash(text), source_path)


def _suffix(name: str) -> str:
    """The lower-cased extension, as ``Path(name).suffix`` gives it, without building a Path."""
    base = name.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[dot:].lower() if 0 < dot < len(base) - 1 else ""


def _reason(err: Exception) -> str:
    return err.strerror if isinstance(err, OSError) and err.strerror else str(err)
