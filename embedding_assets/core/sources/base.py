"""What every source of documents gives the pipeline: changes since a cursor, reads by key, a listing.

A source holds *keys* (a file path, an object key, a primary key). A key holds zero or more
documents (a JSONL file or object holds several records; a row holds one). The change index
(``core.change_index``) remembers what every key held, so that a tick costs what changed:

- ``changes(cursor, limit)``: a batch from the source's change feed (replication slot, outbox, queue),
  or None when it has none; the index then diffs ``listing()`` against what it recorded.
- ``acknowledge(changes)``: called only once the batch is recorded durably, so a crash replays it.
- ``read(key)``: the truth is what a read returns now; ``None`` when the key is gone.
- ``listing()``: every key with a version, for the first sync, a resync and periodic reconciles.
"""

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str
    doc_hash: str
    source_path: str  # where it was read from: the key, plus the record's position for multi-record keys
    encoding: str | None = None  # the encoding detected for a text that is not UTF-8 (None: UTF-8, or not text)


@dataclass(frozen=True)
class Skip:
    """Something in the source that was not ingested, and why."""

    doc_id: str
    reason: str


Item = Document | Skip


class SourceError(Exception):
    """The source itself is unusable (missing folder, unreachable server, misconfiguration)."""


@dataclass(frozen=True)
class Read:
    """What a key holds now: its version (opaque; equal versions mean unchanged content, "" = unknown)
    and its documents and skips, in order."""

    version: str
    items: list[Item] = field(default_factory=list)


@dataclass(frozen=True)
class Changes:
    """One batch of a source's change feed."""

    changed: tuple[str, ...] = ()  # keys that may have changed: re-read them (a key that reads None is gone)
    deleted: tuple[str, ...] = ()  # keys known to be gone
    cursor: str = ""  # where the feed stands once this batch is recorded (durable, opaque)
    resync: bool = False  # the feed lost track (TRUNCATE, a lost slot): reconcile with a full listing
    more: bool = False  # the batch was cut at the limit: more changes are waiting
    since: float | None = None  # when the batch's oldest change was committed (Unix time), if the feed tells


class Source(ABC):
    """A source of documents. Implementations: the folder, a PostgreSQL table, an S3 prefix."""

    #: Names the source in metadata and messages (``folder:/data/docs``, ``postgresql:public.docs``).
    name: str
    #: How often the change index reconciles a change feed with a full listing (seconds), to catch what
    #: the feed missed (a queue that dropped an event, a watermark's late commits); None: never needed.
    reconcile_seconds: float | None = None

    def prepare(self) -> None:
        """Check the configuration and create what the feed needs (slot, publication, queue binding),
        idempotently; raise ``SourceError`` with one clear message when it cannot work."""
        return None

    def changes(self, cursor: str | None, limit: int) -> Changes | None:
        """Changes after ``cursor`` (None: from the start of the feed), at most about ``limit`` keys;
        None when this source has no change feed and the index must diff listings instead."""
        return None

    def acknowledge(self, changes: Changes) -> None:
        """The batch is recorded: the feed may forget it (advance the slot, delete the messages)."""
        return None

    @abstractmethod
    def listing(self) -> Iterator[tuple[str, str]]:
        """Every key with its version, in a stable order."""

    @abstractmethod
    def read(self, key: str) -> Read | None:
        """What ``key`` holds now, or None when it is gone."""

    def read_many(self, keys: Sequence[str]) -> Iterator[tuple[str, Read | None]]:
        """``read`` for many keys; sources with batched reads (``WHERE id = ANY(...)``) override it."""
        for key in keys:
            yield key, self.read(key)

    def metrics(self) -> dict[str, float]:
        """Figures worth plotting (slot lag in bytes, queue depth, oldest message age in seconds)."""
        return {}
