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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from embedding_assets.core.change_index_db import Connection, IndexDatabase
from embedding_assets.core.hashing import pair_hash, set_hash_hex
from embedding_assets.core.shards import shard_keys, shard_of
from embedding_assets.core.sources.base import Document, Read, Skip, Source

LISTING_BATCH = 10_000
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
        before: dict[str, tuple[int, str, int, str]] = {}  # each touched shard's sums before this sync
        changed: set[str] = set()
        read = deleted = 0

        def record(keys: Sequence[str]) -> None:
            nonlocal read
            with self._db() as db:
                pending = list(keys)
                while pending:
                    freed: set[str] = set()
                    for key, result in source.read_many(pending):
                        read += 1
                        freed |= _record(db, key, result, self.shard_count, before)
                    pending = sorted(_duplicates_of(db, freed))  # a duplicate may take a freed id over
                moved = {shard for shard, sums in before.items() if _sums(db, shard) != sums} - changed
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

    def settle(self, shard: str, generation: int) -> float | None:
        """The table now reflects ``shard`` as of ``generation``: forget the changes up to it, and return
        when the oldest of them was committed at the source (None: none was waiting)."""
        with self._db() as db:
            (oldest,) = db.execute(
                "SELECT min(since) FROM pending WHERE shard = ? AND generation <= ?", (shard, generation)
            ).fetchone()
            db.execute("DELETE FROM pending WHERE shard = ? AND generation <= ?", (shard, generation))
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


def _record(
    db: Connection,
    key: str,
    result: Read | None,
    shard_count: int,
    before: dict[str, tuple[int, str, int, str]],
) -> set[str]:
    """Replace what the index holds for ``key`` by ``result`` (None: the key is gone), keeping the shard
    sums; returns the document ids the key let go (a duplicate elsewhere may now take them)."""
    old = db.execute("SELECT doc_id, shard, doc_hash, skip_reason FROM items WHERE key = ?", (key,)).fetchall()
    for doc_id, shard, doc_hash, reason in old:
        before.setdefault(shard, _sums(db, shard))
        _add(db, shard, doc_id, doc_hash, reason, -1)
    db.execute("DELETE FROM items WHERE key = ?", (key,))
    if result is None:
        db.execute("DELETE FROM keys WHERE key = ?", (key,))
        return {doc_id for doc_id, _, _, reason in old if reason is None}
    db.execute(
        "INSERT INTO keys VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET version = excluded.version",
        (key, result.version),
    )
    kept: set[str] = set()
    for position, item in enumerate(result.items):
        if isinstance(item, Document):
            holder = _holder(db, item.doc_id, key) if item.doc_id not in kept else key
            if holder is not None:
                item = Skip(item.doc_id, DUPLICATE + holder)
            else:
                kept.add(item.doc_id)
        shard = shard_of(item.doc_id, shard_count)
        doc_hash, reason = (item.doc_hash, None) if isinstance(item, Document) else (None, item.reason)
        db.execute("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", (key, position, item.doc_id, shard, doc_hash, reason))
        before.setdefault(shard, _sums(db, shard))
        _add(db, shard, item.doc_id, doc_hash, reason, +1)
    return {doc_id for doc_id, _, _, reason in old if reason is None} - kept


def _holder(db: Connection, doc_id: str, key: str) -> str | None:
    """The other key that holds ``doc_id`` as a document, if any."""
    row = db.execute(
        "SELECT key FROM items WHERE doc_id = ? AND skip_reason IS NULL AND key != ? LIMIT 1", (doc_id, key)
    ).fetchone()
    return None if row is None else str(row[0])


def _duplicates_of(db: Connection, doc_ids: Iterable[str]) -> set[str]:
    """Keys holding a duplicate skip of one of ``doc_ids``: read them again, one may take the id over."""
    keys: set[str] = set()
    for doc_id in doc_ids:
        keys |= {
            key
            for (key,) in db.execute(
                "SELECT key FROM items WHERE doc_id = ? AND skip_reason LIKE ?", (doc_id, DUPLICATE + "%")
            )
        }
    return keys


def _sums(db: Connection, shard: str) -> tuple[int, str, int, str]:
    """(documents, doc_sum, skips, skip_sum) of ``shard`` (zeros before it holds anything)."""
    row = db.execute("SELECT documents, doc_sum, skips, skip_sum FROM shards WHERE shard = ?", (shard,)).fetchone()
    return (0, "0", 0, "0") if row is None else (int(row[0]), str(row[1]), int(row[2]), str(row[3]))


def _add(db: Connection, shard: str, doc_id: str, doc_hash: str | None, reason: str | None, sign: int) -> None:
    """Add (``sign`` +1) or remove (-1) one document or skip from its shard's sums."""
    documents, doc_sum, skips, skip_sum = _sums(db, shard)
    if reason is None:
        documents += sign
        doc_sum = _plus(doc_sum, sign * pair_hash(doc_id, doc_hash or ""))
    else:
        skips += sign
        skip_sum = _plus(skip_sum, sign * pair_hash(doc_id, reason))
    db.execute(
        "INSERT INTO shards VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (shard) DO UPDATE SET documents = "
        "excluded.documents, doc_sum = excluded.doc_sum, skips = excluded.skips, skip_sum = excluded.skip_sum",
        (shard, documents, doc_sum, skips, skip_sum),
    )


def _plus(total: str, value: int) -> str:
    return f"{(int(total, 16) + value) & _MASK:x}"


def _summary(shard: str, documents: int, doc_sum: str, skips: int, skip_sum: str, generation: int) -> ShardSummary:
    fingerprint = set_hash_hex(int(doc_sum, 16))
    return ShardSummary(shard, documents, skips, fingerprint, f"{fingerprint}:{int(skip_sum, 16):032x}", generation)
