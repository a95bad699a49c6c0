"""Change detection for the source folder: a fingerprint per shard, computed cheaply.

The scan stats every file and re-reads only files whose size or mtime changed since the last scan;
what each file held (document ids and content hashes, or skip reasons) is kept in a small SQLite
state table beside the staging data. A file modified within ``RACY_SECONDS`` of a scan is re-read
on the next one too, so an edit that keeps size and mtime inside the clock's resolution is not missed.
"""

import hashlib
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from embedding_assets.core.shards import shard_keys, shard_of
from embedding_assets.core.sources import Document, Skip, SourceFolder, first_id_wins

RACY_SECONDS = 2.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                                  trusted INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS items (path TEXT NOT NULL, position INTEGER NOT NULL, doc_id TEXT NOT NULL,
                                  doc_hash TEXT, skip_reason TEXT, PRIMARY KEY (path, position));
"""


def fingerprint(documents: Iterable[tuple[str, str]]) -> str:
    """Order-independent digest of ``(doc_id, doc_hash)`` pairs: equal exactly when the sets are equal."""
    digest = hashlib.blake2b(digest_size=16)
    for doc_id, doc_hash in sorted(documents):
        digest.update(f"{doc_id}\x00{doc_hash}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class ShardState:
    """What the source holds for one shard."""

    documents: dict[str, str]  # doc_id → doc_hash
    skipped: list[Skip] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        """What the index must reflect: the shard's documents and their content."""
        return fingerprint(self.documents.items())

    @property
    def version(self) -> str:
        """Any change worth a run, skips included (so a newly unreadable file gets reported)."""
        skips = fingerprint((s.doc_id, s.reason) for s in self.skipped)
        return hashlib.blake2b(f"{self.fingerprint}:{skips}".encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class ScanResult:
    shards: dict[str, ShardState]
    files: int
    files_read: int
    seconds: float

    def versions(self) -> dict[str, str]:
        return {shard: state.version for shard, state in self.shards.items()}

    def changed_since(self, versions: Mapping[str, str]) -> list[str]:
        """Shards whose version differs from ``versions`` (a shard never seen counts as changed)."""
        return [shard for shard, state in self.shards.items() if versions.get(shard) != state.version]


class SourceScanner:
    """Scans ``folder`` into per-shard states, remembering file metadata in ``state_path``."""

    def __init__(self, folder: SourceFolder, state_path: str | Path, shard_count: int) -> None:
        self.folder = folder
        self.state_path = Path(state_path)
        self.shard_count = shard_count

    def scan(self) -> ScanResult:
        started = time.monotonic()
        racy_after = time.time_ns() - int(RACY_SECONDS * 1e9)
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(self.state_path, timeout=60) as db:
            db.executescript(_SCHEMA)
            db.execute("BEGIN IMMEDIATE")  # one scanner at a time updates the state
            known = {path: (size, mtime, trusted) for path, size, mtime, trusted in db.execute("SELECT * FROM files")}
            current = self.folder.files()
            read = 0
            for rel in current:
                size, mtime = _stat(self.folder.root / rel)
                cached = known.get(rel)
                if cached and cached[:2] == (size, mtime) and cached[2]:
                    continue
                self._remember(db, rel, size, mtime, trusted=mtime < racy_after)
                read += 1
            gone = known.keys() - set(current)
            db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in gone])
            db.executemany("DELETE FROM items WHERE path = ?", [(p,) for p in gone])
            shards = self._shard_states(db)
        return ScanResult(shards, len(current), read, time.monotonic() - started)

    def _remember(self, db: sqlite3.Connection, rel: str, size: int, mtime: int, *, trusted: bool) -> None:
        db.execute("DELETE FROM items WHERE path = ?", (rel,))
        db.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?, ?)",
            [
                (rel, i, item.doc_id, item.doc_hash, None)
                if isinstance(item, Document)
                else (rel, i, item.doc_id, None, item.reason)
                for i, item in enumerate(self.folder.read_file(rel))
            ],
        )
        db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", (rel, size, mtime, int(trusted)))

    def _shard_states(self, db: sqlite3.Connection) -> dict[str, ShardState]:
        states = {shard: ShardState({}) for shard in shard_keys(self.shard_count)}
        rows = db.execute("SELECT path, doc_id, doc_hash, skip_reason FROM items ORDER BY path, position")
        items = (
            (path, Skip(doc_id, reason) if reason is not None else Document(doc_id, "", doc_hash, path))
            for path, doc_id, doc_hash, reason in rows
        )
        for item in first_id_wins(items):
            state = states[shard_of(item.doc_id, self.shard_count)]
            if isinstance(item, Document):
                state.documents[item.doc_id] = item.doc_hash
            else:
                state.skipped.append(item)
        return states


def _stat(path: Path) -> tuple[int, int]:
    """(size, mtime_ns); a path that cannot be stat-ed gets (-1, -1), so it is always re-read."""
    try:
        stat = os.stat(path)
    except OSError:
        return -1, -1
    return stat.st_size, stat.st_mtime_ns
