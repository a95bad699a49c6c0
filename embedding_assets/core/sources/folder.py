"""A folder of source documents, read one shard at a time.

Document ids are stable: the path relative to the folder for text files (``guide/intro.md``), the
record's own id for ``.json``/``.jsonl`` records. Anything that cannot be read becomes a ``Skip``
with a reason, reported by exactly one shard (the shard of its id, path or ``path:line``), so
nothing is dropped silently.
"""

import os
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from embedding_assets.core.shards import shard_of
from embedding_assets.core.sources.base import Document, Item, Read, Skip, Source, SourceError
from embedding_assets.core.sources.records import RECORD_SUFFIXES, SUPPORTED_SUFFIXES, parse, suffix, versioned

DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024  # ~2.5M tokens: beyond this a file is rarely one document
RACY_SECONDS = 2.0  # files modified this recently are read again on the next listing


class SourceFolder(Source):
    """Documents under ``root``. It has no change feed: the change index diffs its listing, where a
    file's version is its size and modification time (stat only; a file is read only when it changed)."""

    def __init__(
        self,
        root: str | Path,
        *,
        id_field: str = "id",
        text_field: str = "text",
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        self.root = Path(root)
        self.name = f"folder:{self.root}"
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
            found.extend(folder + name for name in filenames if suffix(name) in SUPPORTED_SUFFIXES)
        return sorted(found)

    def read_shard(self, shard: str, shard_count: int) -> Iterator[Item]:
        """The shard's documents and skips, walking the whole tree (text files of other shards are not even
        opened). The pipeline takes a shard's keys from the change index instead; this independent path
        is what the tests' oracle reads."""

        def owned() -> Iterator[tuple[str, Item]]:
            for rel in self.files():
                if suffix(rel) in RECORD_SUFFIXES or shard_of(rel, shard_count) == shard:
                    yield from (
                        (rel, item) for item in self.read_file(rel) if shard_of(item.doc_id, shard_count) == shard
                    )

        yield from first_id_wins(owned())

    def prepare(self) -> None:
        self.check()

    def listing(self) -> Iterator[tuple[str, str]]:
        """(path, "size:mtime|reader") of every supported file; a file modified within ``RACY_SECONDS``
        gets the unknown version "", so it is read again next time (an edit inside the clock's
        resolution that keeps its size is not missed)."""
        racy_after = time.time_ns() - int(RACY_SECONDS * 1e9)
        for rel in self.files():
            size, mtime = _stat(self.root / rel)
            yield rel, versioned(rel, f"{size}:{mtime}") if 0 <= mtime < racy_after else ""

    def read(self, key: str) -> Read | None:
        size, mtime = _stat(self.root / key)
        if size < 0 and not (self.root / key).is_symlink():
            return None
        return Read(versioned(key, f"{size}:{mtime}"), self.read_file(key))

    def read_file(self, rel: str) -> list[Item]:
        """Everything one file holds: its document, or its records (a skip for each that fails)."""
        try:
            data = self._read_bytes(rel)
        except OSError as err:
            return [Skip(rel, err.strerror or str(err))]
        return parse(rel, data, id_field=self.id_field, text_field=self.text_field)

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


def _stat(path: Path) -> tuple[int, int]:
    """(size, mtime_ns); a path that cannot be stat-ed gets (-1, -1), so it is always read again."""
    try:
        info = os.stat(path)
    except OSError:
        return -1, -1
    return info.st_size, info.st_mtime_ns


def first_id_wins(items: Iterable[tuple[str, Item]]) -> Iterator[Item]:
    """Items in source order, where a document whose id was already read becomes a skip.

    Duplicates share their id, hence their shard, so deduplicating one shard at a time is complete.
    """
    seen: dict[str, str] = {}
    for key, item in items:
        if isinstance(item, Document):
            if item.doc_id in seen:
                item = Skip(item.doc_id, f"duplicate document id, first read from {seen[item.doc_id]}")
            else:
                seen[item.doc_id] = key
        yield item
