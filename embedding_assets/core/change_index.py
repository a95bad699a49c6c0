"""The change index: what every key of the source held when last read, and each shard's fingerprint.

For every key it keeps the version the source reported and the documents (doc_id, shard, doc_hash)
or skips it held. Each shard's fingerprint is an additive set hash of its ``(doc_id, doc_hash)``
pairs, updated as documents come and go, and carries the generation of the sync that last changed
it. So a sync costs what changed, and "which shards changed since generation g" is one indexed query:
an idle tick is milliseconds at any corpus size.

Document ids are unique across the source: a document whose id another key already holds becomes a
skip ("duplicate document id"); when the holder lets it go, the duplicate's key is read again.
"""

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from embedding_assets.core import progress
from embedding_assets.core.change_index_db import Connection, IndexDatabase
from embedding_assets.core.hashing import pair_hash, set_hash_hex
from embedding_assets.core.shards import shard_keys, shard_of
from embedding_assets.core.sources.base import Document, Read, Skip, Source

LISTING_BATCH = 10_000
IN_CHUNK = 500  # values per IN (...) list, well under SQLite's and PostgreSQL's parameter limits
_MASK = (1 << 128) - 1
DUPLICATE = "duplicate document id, first read from "


@dataclass(frozen=True)
class ShardSummary:
    """What the index holds for one shard."""

    shard: str
    documents: int
    skipped: int
    fingerprint: str  # the set hash of its (doc_id, doc_hash) pairs: what the table must reflect
    version: str  # changes with any change worth a run, skips included
    generation: int  # the sync that last changed it


@dataclass(frozen=True)
class SyncReport:
    """One sync: what was read and what changed."""

    generation: int
    keys_read: int
    keys_deleted: int
    changed_shards: list[str] = field(default_factory=list)
    listed: bool = False  # a full listing was diffed (first sync, resync, reconcile, or no feed)
    more: bool = False  # the feed has more waiting
    seconds: float = 0.0


class ChangeIndex:
    """The change index of one source and shard count, in ``database`` (SQLite or PostgreSQL)."""

    def __init__(self, database: IndexDatabase, shard_count: int) -> None:
        self.database = database
        self.shard_count = shard_count
        self._db = database.transaction

    def sync(self, source: Source, *, limit: int = 10_000, full: bool = False, now: float | None = None) -> SyncReport:
        """Bring the index up to the source: a batch of its change feed, and a diff of its listing when it
        has no feed, lost track (resync), was never listed, or is due a reconcile (``full`` forces one).

        Keys are read and recorded ``limit`` at a time, one transaction each, so a first sync of 10^8 keys
        neither holds the index for hours nor keeps its keys in memory; a shard's generation moves with
        the batch that changed it. The feed is acknowledged only after everything is recorded, so a
        crash replays the batch (and an interrupted listing resumes where its versions stop matching)."""
        started = time.monotonic()
        now = time.time() if now is None else now
        with self._db() as db:
            cursor, listed_at = _state(db, "cursor"), _state(db, "listed_at")
            generation = int(_state(db, "generation") or 0) + 1  # this sync's, if it changes anything
        changes = source.changes(cursor, limit)
        since = changes.since if changes is not None and changes.since is not None else now  # else: seen now
        reconcile = source.reconcile_seconds
        due = listed_at is None or (reconcile is not None and now - float(listed_at) >= reconcile)
        listing = full or due or changes is None or changes.resync
        before: dict[str, tuple[int, int, int, int]] = {}  # each touched shard's sums before this sync
        changed: set[str] = set()
        read = deleted = 0

        def record(keys: Sequence[str]) -> None:
            nonlocal read
            with self._db() as db:
                sums, pending = _Sums(db, before), list(keys)
                while pending:
                    reads = list(source.read_many(pending))
                    read += len(reads)
                    progress.advance("sync", keys_read=len(reads))
                    freed = _record(db, reads, self.shard_count, sums)
                    pending = sorted(_duplicates_of(db, freed))  # a duplicate may take a freed id over
                moved = sums.save() - changed
                if moved:  # a re-read that found the same content (a same-content overwrite) changes nothing
                    db.executemany("UPDATE shards SET generation = ? WHERE shard = ?", [(generation, s) for s in moved])
                    db.executemany(
                        "INSERT INTO pending VALUES (?, ?, ?) ON CONFLICT (shard, generation) DO NOTHING",
                        [(shard, generation, since) for shard in moved],
                    )
                    _set_state(db, "generation", str(generation))
                    changed.update(moved)

        if changes is not None:
            deleted += len(set(changes.deleted) - set(changes.changed))
            record(sorted(set(changes.changed) | set(changes.deleted)))
        if listing:
            with self.database.session() as scratch:
                listed = _Listing(scratch, source.listing())
                while batch := listed.stale(limit):
                    record(batch)
                while batch := listed.gone(limit):
                    deleted += len(batch)
                    record(batch)
        with self._db() as db:
            if changes is not None:
                _set_state(db, "cursor", changes.cursor)
            if listing:
                _set_state(db, "listed_at", repr(now))
            generation = int(_state(db, "generation") or 0)
        if changes is not None:
            source.acknowledge(changes)
        more = bool(changes and changes.more)
        report = SyncReport(generation, read, deleted, sorted(changed), listing, more, time.monotonic() - started)
        return report

    def settle(self, shard: str, generation: int, consumer: str, consumers: Sequence[str]) -> float | None:
        """``consumer``'s table now reflects ``shard`` as of ``generation``: return when the oldest change
        it had not yet reflected was committed at the source (None: none was waiting). A change is
        forgotten once every one of ``consumers`` (the active tables) has reflected it."""
        with self._db() as db:
            row = db.execute("SELECT generation FROM settled WHERE shard = ? AND consumer = ?", (shard, consumer))
            before = (row.fetchone() or (0,))[0]
            (oldest,) = db.execute(
                "SELECT min(since) FROM pending WHERE shard = ? AND generation > ? AND generation <= ?",
                (shard, before, generation),
            ).fetchone()
            db.execute(
                "INSERT INTO settled VALUES (?, ?, ?) ON CONFLICT (shard, consumer) DO UPDATE SET generation = CASE "
                "WHEN excluded.generation > settled.generation THEN excluded.generation ELSE settled.generation END",
                (shard, consumer, generation),
            )
            reflected = [
                (
                    db.execute("SELECT generation FROM settled WHERE shard = ? AND consumer = ?", (shard, c)).fetchone()
                    or (0,)
                )[0]
                for c in consumers
            ]
            db.execute("DELETE FROM pending WHERE shard = ? AND generation <= ?", (shard, min(reflected, default=0)))
        return None if oldest is None else float(oldest)

    def changed_since(self, generation: int) -> list[ShardSummary]:
        """The shards a sync changed after ``generation`` (the change sensor's cursor)."""
        with self._db() as db:
            rows = db.execute("SELECT * FROM shards WHERE generation > ? ORDER BY shard", (generation,)).fetchall()
        return [_summary(*row) for row in rows]

    def summaries(self) -> dict[str, ShardSummary]:
        """Every shard's summary (shards the source never touched are empty, generation 0)."""
        with self._db() as db:
            rows = {row[0]: _summary(*row) for row in db.execute("SELECT * FROM shards")}
        empty = (0, "0", 0, "0", 0)
        return {shard: rows.get(shard) or _summary(shard, *empty) for shard in shard_keys(self.shard_count)}

    def generation_of(self, shard: str) -> int:
        """The generation of the sync that last changed ``shard`` (0: never)."""
        with self._db() as db:
            row = db.execute("SELECT generation FROM shards WHERE shard = ?", (shard,)).fetchone()
        return 0 if row is None else int(row[0])

    def shard_items(self, shard: str) -> list[tuple[str, int, str, str | None, str | None]]:
        """(key, position, doc_id, doc_hash, skip_reason) of the shard's items, in key order and position."""
        with self._db() as db:
            rows: list[tuple[str, int, str, str | None, str | None]] = db.execute(
                "SELECT key, position, doc_id, doc_hash, skip_reason FROM items WHERE shard = ? ORDER BY key, position",
                (shard,),
            ).fetchall()
        return rows

    def skips(self) -> list[Skip]:
        """Everything the source holds that was not ingested, with its reason (the quarantine)."""
        with self._db() as db:
            rows = db.execute("SELECT doc_id, skip_reason FROM items WHERE skip_reason IS NOT NULL ORDER BY doc_id")
            return [Skip(doc_id, reason) for doc_id, reason in rows]

    def keys(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT count(*) FROM keys").fetchone()[0])


def _state(db: Connection, name: str) -> str | None:
    row = db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def _set_state(db: Connection, name: str, value: str) -> None:
    db.execute("INSERT INTO state VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))


class _Listing:
    """A source's listing in a scratch table beside the index, diffed against it a batch at a time, in
    key order: keys whose version differs from the recorded one (or is unknown, ""), then recorded keys
    the listing no longer holds. A batch is recorded (in another connection) before the next is asked
    for; memory holds one batch, and each batch costs its own size, not the listing's."""

    def __init__(self, scratch: Connection, listing: Iterable[tuple[str, str]]) -> None:
        self._db = scratch
        self._db.execute("CREATE TEMP TABLE listed (key TEXT PRIMARY KEY, version TEXT NOT NULL)")
        insert = "INSERT INTO listed VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET version = excluded.version"
        batch: list[tuple[str, str]] = []
        for entry in listing:
            batch.append(entry)
            if len(batch) >= LISTING_BATCH:
                self._db.executemany(insert, batch)
                batch = []
        self._db.executemany(insert, batch)
        self._after: dict[str, str | None] = {"stale": None, "gone": None}  # the last key each pass returned

    def stale(self, limit: int) -> list[str]:
        return self._page(
            "stale",
            "SELECT l.key FROM listed l LEFT JOIN keys k ON k.key = l.key WHERE {after} "
            "(k.key IS NULL OR l.version = '' OR k.version != l.version) ORDER BY l.key LIMIT ?",
            "l.key > ? AND",
            limit,
        )

    def gone(self, limit: int) -> list[str]:
        return self._page(
            "gone",
            "SELECT key FROM keys k WHERE {after} NOT EXISTS (SELECT 1 FROM listed l WHERE l.key = k.key) "
            "ORDER BY key LIMIT ?",
            "k.key > ? AND",
            limit,
        )

    def _page(self, name: str, query: str, after_clause: str, limit: int) -> list[str]:
        """The next ``limit`` keys of a pass, resuming after the last one (a range seek on the key)."""
        after = self._after[name]
        sql = query.format(after="" if after is None else after_clause)
        keys = [key for (key,) in self._db.execute(sql, (limit,) if after is None else (after, limit))]
        if keys:
            self._after[name] = keys[-1]
        return keys


class _Sums:
    """The shards' sums touched by one transaction, loaded on first use and written back together.
    ``before`` keeps each shard's sums as the sync first found them."""

    def __init__(self, db: Connection, before: dict[str, tuple[int, int, int, int]]) -> None:
        self._db, self.before = db, before
        self.touched: dict[str, list[int]] = {}  # shard → [documents, doc_sum, skips, skip_sum]

    def add(self, shard: str, doc_id: str, doc_hash: str | None, reason: str | None, sign: int) -> None:
        """Add (``sign`` +1) or remove (-1) one document or skip from its shard's sums."""
        sums = self.touched.get(shard) or self._load(shard)
        if reason is None:
            sums[0] += sign
            sums[1] = (sums[1] + sign * pair_hash(doc_id, doc_hash or "")) & _MASK
        else:
            sums[2] += sign
            sums[3] = (sums[3] + sign * pair_hash(doc_id, reason)) & _MASK

    def _load(self, shard: str) -> list[int]:
        row = self._db.execute(
            "SELECT documents, doc_sum, skips, skip_sum FROM shards WHERE shard = ?", (shard,)
        ).fetchone()
        sums = (0, 0, 0, 0) if row is None else (int(row[0]), int(row[1], 16), int(row[2]), int(row[3], 16))
        self.before.setdefault(shard, sums)
        self.touched[shard] = list(sums)
        return self.touched[shard]

    def save(self) -> set[str]:
        """Write the touched sums; the shards whose sums now differ from the sync's start."""
        self._db.executemany(
            "INSERT INTO shards VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (shard) DO UPDATE SET documents = "
            "excluded.documents, doc_sum = excluded.doc_sum, skips = excluded.skips, skip_sum = excluded.skip_sum",
            [(shard, d, f"{ds:x}", k, f"{ks:x}") for shard, (d, ds, k, ks) in self.touched.items()],
        )
        return {shard for shard, sums in self.touched.items() if tuple(sums) != self.before[shard]}


def _record(db: Connection, reads: Sequence[tuple[str, Read | None]], shard_count: int, sums: _Sums) -> set[str]:
    """Replace what the index holds for each key by its read (None: the key is gone), in order, keeping
    the shard sums; a few statements per batch, not per key. A document whose id another key holds
    becomes a duplicate skip, as if the keys were recorded one by one. Returns the ids the keys let go
    (a duplicate elsewhere may now take them)."""
    keys = [key for key, _ in reads]
    old: dict[str, list[tuple[str, str, str | None, str | None]]] = {}
    for key, *row in _select_in(db, "SELECT key, doc_id, shard, doc_hash, skip_reason FROM items WHERE key IN", keys):
        old.setdefault(key, []).append(tuple(row))
    claimed = sorted({i.doc_id for _, read in reads if read for i in read.items if isinstance(i, Document)})
    holders = dict(_select_in(db, "SELECT doc_id, key FROM items WHERE skip_reason IS NULL AND doc_id IN", claimed))
    versions, items, gone, freed = [], [], [], set()
    for key, result in reads:
        let_go = set()
        for doc_id, shard, doc_hash, reason in old.get(key, []):
            sums.add(shard, doc_id, doc_hash, reason, -1)
            if reason is None:
                let_go.add(doc_id)
                if holders.get(doc_id) == key:
                    del holders[doc_id]
        if result is None:
            gone.append(key)
            freed |= let_go
            continue
        versions.append((key, result.version))
        kept: set[str] = set()
        for position, item in enumerate(result.items):
            if isinstance(item, Document):
                holder = key if item.doc_id in kept else holders.get(item.doc_id)
                if holder is not None:
                    item = Skip(item.doc_id, DUPLICATE + holder)
                else:
                    kept.add(item.doc_id)
                    holders[item.doc_id] = key
            shard = shard_of(item.doc_id, shard_count)
            doc_hash, reason = (item.doc_hash, None) if isinstance(item, Document) else (None, item.reason)
            items.append((key, position, item.doc_id, shard, doc_hash, reason))
            sums.add(shard, item.doc_id, doc_hash, reason, +1)
        freed |= let_go - kept
    _execute_in(db, "DELETE FROM items WHERE key IN", keys)
    _execute_in(db, "DELETE FROM keys WHERE key IN", gone)
    db.executemany(
        "INSERT INTO keys VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET version = excluded.version", versions
    )
    db.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", items)
    return freed


def _duplicates_of(db: Connection, doc_ids: Iterable[str]) -> set[str]:
    """Keys holding a duplicate skip of one of ``doc_ids``: read them again, one may take the id over."""
    query = "SELECT key FROM items WHERE skip_reason LIKE ? AND doc_id IN"
    return {key for (key,) in _select_in(db, query, sorted(doc_ids), DUPLICATE + "%")}


def _select_in(db: Connection, query: str, values: Sequence[str], *first: str) -> Iterator[tuple[Any, ...]]:
    """The rows of ``query ... IN (values)``, ``IN_CHUNK`` values a statement; ``first`` precede them."""
    for start in range(0, len(values), IN_CHUNK):
        chunk = values[start : start + IN_CHUNK]
        yield from db.execute(f"{query} ({', '.join('?' * len(chunk))})", (*first, *chunk)).fetchall()


def _execute_in(db: Connection, statement: str, values: Sequence[str]) -> None:
    for start in range(0, len(values), IN_CHUNK):
        chunk = values[start : start + IN_CHUNK]
        db.execute(f"{statement} ({', '.join('?' * len(chunk))})", chunk)


def _summary(shard: str, documents: int, doc_sum: str, skips: int, skip_sum: str, generation: int) -> ShardSummary:
    fingerprint = set_hash_hex(int(doc_sum, 16))
    return ShardSummary(shard, documents, skips, fingerprint, f"{fingerprint}:{int(skip_sum, 16):032x}", generation)
