"""A PostgreSQL table as a source: one document per row, keyed by the row's single-column primary key.

A key is the primary key's text (``id::text``), and also the document's id. A row whose text column is
NULL (or empty once normalised) is a skip. A key's version is ``md5(text)``, computed by the server both
when listing and when reading, so a listing moves no bodies and the two always agree.

The change feed depends on ``mode``, one module each: ``logical`` (the default; a replication slot over
a key-only publication), ``outbox`` (trigger-fed change table) and ``watermark`` (``updated_field``).

On the first sync the feed is created before the table is listed, so a row changed during the listing
is seen by the listing or replayed by the feed.
"""

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg2
from psycopg2 import sql

from embedding_assets.core.hashing import normalize_text
from embedding_assets.core.sources.base import Changes, Read, Skip, Source, SourceError
from embedding_assets.core.sources.postgres.catalog import _inspect, _Table
from embedding_assets.core.sources.postgres.connection import PostgresConnection
from embedding_assets.core.sources.postgres.feed import _Feed
from embedding_assets.core.sources.postgres.logical import _Logical
from embedding_assets.core.sources.postgres.outbox import _Outbox
from embedding_assets.core.sources.postgres.watermark import WATERMARK_RECONCILE_SECONDS, _Watermark
from embedding_assets.core.sources.records import document

MODES = ("logical", "outbox", "watermark")
LISTING_BATCH = 10_000  # keys per keyset page of the listing
READ_BATCH = 1_000  # keys per WHERE id = ANY(...) read
NULL_VERSION = "null"  # the version of a row whose text is NULL (md5 never returns it)


class PostgresTable(Source):
    """The rows of ``table`` in the database of ``dsn``, with a change feed chosen by ``mode``.

    Args:
        dsn: a libpq URI (``postgresql://user@host:port/dbname``) or key=value string.
        table: ``schema.table``, or ``table`` in ``public``; names are used exactly as written.
        id_field: the table's primary key: it must be exactly this one column.
        text_field: the column holding each document's text (a string type).
        mode: ``logical``, ``outbox`` or ``watermark`` (see this module's docstring and the
            feed's own module).
        name_prefix: prefix of what the feed creates (slot, publication, change table, triggers).
        updated_field: the timestamp column of ``watermark`` mode.
        lag_seconds: how far behind its watermark ``watermark`` mode looks again, for late commits.
    """

    reconcile_seconds: float | None
    """Seconds between full listings the caller should diff; None when the feed misses nothing."""

    def __init__(
        self,
        dsn: str,
        table: str,
        *,
        id_field: str = "id",
        text_field: str = "text",
        mode: str = "logical",
        name_prefix: str = "embedding_assets",
        updated_field: str = "updated_at",
        lag_seconds: float = 60.0,
    ) -> None:
        schema, dot, name = table.partition(".")
        self.schema, self.table = (schema, name) if dot else ("public", table)
        self.name = f"postgresql:{self.schema}.{self.table}"
        self.id_field = id_field
        self.text_field = text_field
        self.mode = mode
        self.name_prefix = name_prefix
        self.updated_field = updated_field
        self.lag_seconds = lag_seconds
        self.reconcile_seconds = WATERMARK_RECONCILE_SECONDS if mode == "watermark" else None
        self._db = PostgresConnection(dsn)
        self._ready: tuple[_Table, _Feed] | None = None

    # Configuration

    def prepare(self) -> None:
        """Check the server, the table and its columns, and create the feed's objects if missing."""
        if self.mode not in MODES:
            raise SourceError(
                f"unknown PostgreSQL source mode {self.mode!r}: "
                f"EMBEDDING_ASSETS_SOURCE_MODE must be one of {', '.join(MODES)}"
            )
        if self.lag_seconds < 0:
            raise SourceError(f"lag_seconds must not be negative, got {self.lag_seconds}")
        table = _inspect(self._db, self.schema, self.table, self.id_field, self.text_field)
        feed: _Feed
        if self.mode == "logical":
            feed = _Logical(self._db, table, self.name_prefix)
        elif self.mode == "outbox":
            feed = _Outbox(self._db, table, self.name_prefix)
        else:
            feed = _Watermark(self._db, table, self.updated_field, self.lag_seconds)
        feed.prepare()
        self._ready = (table, feed)

    def drop_feed(self) -> None:
        """Remove what ``prepare`` created (an abandoned slot retains WAL without limit)."""
        self._parts()[1].drop()
        self._ready = None

    def close(self) -> None:
        self._db.close()

    # Reads

    def listing(self) -> Iterator[tuple[str, str]]:
        """(key, md5 of the text, or "null") of every row, in primary-key order, by keyset pages; each
        page is its own statement, so no transaction stays open while the caller works."""
        table = self._parts()[0]
        # "t." everywhere: a bare ORDER BY id would sort by the output column id::text ("10" < "2").
        first = sql.SQL("SELECT t.{key}::text, coalesce(md5(t.{text}), %s) FROM {table} t ORDER BY t.{key} LIMIT %s")
        after = sql.SQL(
            "SELECT t.{key}::text, coalesce(md5(t.{text}), %s) FROM {table} t WHERE t.{key} > %s::{type} "
            "ORDER BY t.{key} LIMIT %s"
        )
        last: str | None = None
        while True:
            if last is None:
                rows = self._db.rows(first.format(**table.parts), (NULL_VERSION, LISTING_BATCH))
            else:
                rows = self._db.rows(after.format(**table.parts), (NULL_VERSION, last, LISTING_BATCH))
            yield from ((str(key), str(version)) for key, version in rows)
            if len(rows) < LISTING_BATCH:
                return
            last = str(rows[-1][0])

    def read(self, key: str) -> Read | None:
        return next(self.read_many([key]))[1]

    def read_many(self, keys: Sequence[str]) -> Iterator[tuple[str, Read | None]]:
        """Every requested key once, in order, with what its row holds now (None: no such row)."""
        table = self._parts()[0]
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), READ_BATCH):
            batch = unique[start : start + READ_BATCH]
            rows = self._fetch(table, batch)
            for key in batch:
                yield key, self._read_of(table, key, rows.get(key))

    def _fetch(self, table: "_Table", keys: list[str]) -> dict[str, tuple[Any, str]]:
        """key → (text, version) of the rows that exist. A key that is no value of the key's type
        (``'x'`` for an integer key) fails the whole batch, so the batch is retried key by key."""
        query = sql.SQL(
            "SELECT {key}::text, {text}, coalesce(md5({text}), %s) FROM {table} WHERE {key} = ANY(%s::{type}[])"
        ).format(**table.parts)
        try:
            rows = self._db.rows(query, (NULL_VERSION, keys), expected=(psycopg2.DataError,))
        except psycopg2.DataError:
            if len(keys) == 1:
                return {}
            return {found: row for key in keys for found, row in self._fetch(table, [key]).items()}
        return {str(key): (text, str(version)) for key, text, version in rows}

    def _read_of(self, table: "_Table", key: str, row: tuple[Any, str] | None) -> Read | None:
        if row is None:
            return None
        text, version = row
        if text is None:
            return Read(version, [Skip(key, f"{self.text_field!r} is NULL")])
        if not isinstance(text, str):
            return Read(version, [Skip(key, f"{self.text_field!r} is not text")])
        return Read(version, [document(key, normalize_text(text), f"{table.schema}.{table.name}/{key}")])

    # Change feed

    def changes(self, cursor: str | None, limit: int) -> Changes:
        """The feed's next batch after ``cursor`` (what the caller recorded last; None or "" at first)."""
        return self._parts()[1].changes(cursor or None, max(1, limit))

    def acknowledge(self, changes: Changes) -> None:
        self._parts()[1].acknowledge(changes)

    def metrics(self) -> dict[str, float]:
        return self._parts()[1].metrics()

    def _parts(self) -> tuple["_Table", "_Feed"]:
        if self._ready is None:
            self.prepare()
        assert self._ready is not None
        return self._ready
