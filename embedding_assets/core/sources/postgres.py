"""A PostgreSQL table as a source: one document per row, keyed by the row's single-column primary key.

A key is the primary key's text (``id::text``), and also the document's id. A row whose text column is
NULL (or empty once normalised) is a skip. A key's version is ``md5(text)``, computed by the server both
when listing and when reading, so a listing moves no bodies and the two always agree.

The change feed depends on ``mode``:

- ``logical`` (the default): a logical replication slot with ``pgoutput``, over a publication of the
  key column only, read with ``pg_logical_slot_peek_binary_changes`` (so a crashed tick replays) and
  advanced in ``acknowledge``. Every message carries just the key, and the row is re-read, so TOAST's
  "unchanged" values never matter. Needs ``wal_level=logical`` and REPLICATION (or superuser).
- ``outbox``: row and TRUNCATE triggers write every changed key to a change table; a batch's rows are
  deleted once it is recorded.
- ``watermark``: rows whose ``updated_field`` is newer than the last batch, less ``lag_seconds``. It
  cannot see hard deletes or rows that commit late, so ``reconcile_seconds`` asks for periodic listings.

On the first sync the feed is created before the table is listed, so a row changed during the listing
is seen by the listing or replayed by the feed. The password never passes through this code: libpq
finds it (the DSN, ``PGPASSWORD``, ``~/.pgpass``), and it is kept out of the name, messages and metrics.
A source holds one connection and is not thread-safe.
"""

import hashlib
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from embedding_assets.core.hashing import normalize_text
from embedding_assets.core.sources.base import Changes, Read, Skip, Source, SourceError
from embedding_assets.core.sources.pgoutput import (
    Commit,
    Decoder,
    Delete,
    Insert,
    Truncate,
    Update,
    Value,
    format_lsn,
    parse_lsn,
)
from embedding_assets.core.sources.records import document

MODES = ("logical", "outbox", "watermark")
WATERMARK_RECONCILE_SECONDS = 600.0  # a watermark misses late commits and hard deletes: list this often
LISTING_BATCH = 10_000  # keys per keyset page of the listing
READ_BATCH = 1_000  # keys per WHERE id = ANY(...) read
NULL_VERSION = "null"  # the version of a row whose text is NULL (md5 never returns it)
_CONNECT = {"connect_timeout": 10, "application_name": "embedding_assets"}  # unless the DSN sets them
# Fixed output styles, so that a temporal key reads as the same text in every session.
_SESSION = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'"
_DDL_LOCK_TIMEOUT = "3s"  # a DDL lock waiting behind a long transaction would queue the table's writers
_MAX_NAME = 63  # PostgreSQL's identifier length, and a slot name's
_TIMESTAMPS = frozenset({"timestamp with time zone", "timestamp without time zone"})


class PostgresTable(Source):
    """The rows of ``table`` in the database of ``dsn``, with a change feed chosen by ``mode``.

    Args:
        dsn: a libpq URI (``postgresql://user@host:port/dbname``) or key=value string.
        table: ``schema.table``, or ``table`` in ``public``; names are used exactly as written.
        id_field: the table's primary key: it must be exactly this one column.
        text_field: the column holding each document's text (a string type).
        mode: ``logical``, ``outbox`` or ``watermark`` (see the module's docstring).
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
        self._db = _Db(dsn)
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


# The connection


class _Db:
    """One autocommit connection, opened on first use and again once broken. Failures become a
    ``SourceError`` naming the server as host:port/dbname; known secrets are masked in every message."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: Any = None
        try:
            self._params: dict[str, str] | None = psycopg2.extensions.parse_dsn(dsn)
        except psycopg2.Error:  # its message quotes the DSN, password and all
            self._params = None
        params = self._params or {}
        self._secrets = {s for s in (params.get("password"), os.environ.get("PGPASSWORD")) if s}
        self.where = describe_server(params)

    def connection(self) -> Any:
        if self._params is None:
            raise SourceError("the PostgreSQL DSN is neither a postgresql:// URI nor a key=value string")
        if self._conn is None or self._conn.closed:
            options = {name: value for name, value in _CONNECT.items() if name not in self._params}
            try:
                conn = psycopg2.connect(self._dsn, **options)
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(_SESSION)
            except psycopg2.Error as err:
                raise self.error(f"cannot connect to PostgreSQL at {self.where}: {_text(err)}") from None
            self._conn = conn
        return self._conn

    def rows(
        self, query: sql.Composable | str, params: Sequence[Any] = (), *, expected: tuple[type[Exception], ...] = ()
    ) -> list[tuple[Any, ...]]:
        """The rows of one statement (none for DDL); errors in ``expected`` are raised as they are."""
        with self.connection().cursor() as cur:
            try:
                cur.execute(query, params or None)  # None: no %-interpolation of a query without parameters
            except expected:
                raise
            except psycopg2.Error as err:
                raise self.error(f"PostgreSQL at {self.where}: {_text(err)}") from None
            return [tuple(row) for row in cur.fetchall()] if cur.description is not None else []

    def one(self, query: sql.Composable | str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = self.rows(query, params)
        return rows[0] if rows else None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction for DDL, with a short lock timeout so it never queues the table's writers."""
        conn = self.connection()
        conn.autocommit = False
        try:
            self.rows("SET LOCAL lock_timeout = %s", (_DDL_LOCK_TIMEOUT,))
            yield
            conn.commit()
        finally:
            if not conn.closed:
                conn.rollback()
                conn.autocommit = True

    def error(self, message: str) -> SourceError:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return SourceError(message)

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None


def describe_server(params: dict[str, str]) -> str:
    """``host:port/dbname`` as libpq resolves them from the DSN and its environment: never the password."""
    host = params.get("host") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    user = params.get("user") or os.environ.get("PGUSER") or ""
    database = params.get("dbname") or os.environ.get("PGDATABASE") or user or "(default database)"
    return f"{host}:{port}/{database}"


def _text(err: psycopg2.Error) -> str:
    return " ".join(str(err).split())


# The table


@dataclass(frozen=True)
class _Table:
    """What the catalog says about the source table."""

    schema: str
    name: str
    oid: int
    key_column: str
    key_type: str  # format_type() of the key: the cast that turns key text back into key values
    text_column: str
    columns: tuple[tuple[str, str], ...]  # (name, format_type) of every column
    database: str
    encoding: str  # the Python codec of the database's encoding

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def parts(self) -> dict[str, sql.Composable]:
        """The quoted pieces of every query on the table. The key's type is the server's own spelling
        (format_type quotes and qualifies it as needed), never user input."""
        return {
            "table": sql.Identifier(self.schema, self.name),
            "key": sql.Identifier(self.key_column),
            "text": sql.Identifier(self.text_column),
            "type": sql.SQL(self.key_type),
        }

    def column_type(self, name: str) -> str | None:
        return dict(self.columns).get(name)


def _inspect(db: _Db, schema: str, name: str, id_field: str, text_field: str) -> _Table:
    """The table, checked: it exists, its primary key is exactly ``id_field``, ``text_field`` is text."""
    qualified = f"{schema}.{name}"
    row = db.one(
        "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    )
    if row is None or row[1] not in ("r", "p"):
        what = "does not exist" if row is None else "is not a table"
        raise db.error(f"table {qualified} {what} in {db.where}")
    oid = int(row[0])
    columns = db.rows(
        "SELECT a.attname, format_type(a.atttypid, NULL), t.typcategory, a.attnum = ANY(i.indkey) "
        "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
        "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (oid,),
    )
    key = [str(column) for column, _, _, in_key in columns if in_key]
    if problem := primary_key_problem(qualified, key, id_field):
        raise db.error(problem)
    types = {str(column): (str(kind), str(category)) for column, kind, category, _ in columns}
    if text_field not in types:
        raise db.error(f"table {qualified} has no column {text_field!r} (set EMBEDDING_ASSETS_TEXT_FIELD)")
    if types[text_field][1] != "S":  # the string category: text, varchar, char, citext...
        raise db.error(
            f"column {text_field!r} of {qualified} is {types[text_field][0]}, not text "
            "(set EMBEDDING_ASSETS_TEXT_FIELD)"
        )
    database, encoding = db.one("SELECT current_database(), current_setting('server_encoding')") or ("", "")
    return _Table(
        schema,
        name,
        oid,
        id_field,
        types[id_field][0],
        text_field,
        tuple((column, kind) for column, (kind, _) in types.items()),
        str(database),
        psycopg2.extensions.encodings.get(str(encoding), "utf-8"),
    )


def primary_key_problem(table: str, key: list[str], id_field: str) -> str | None:
    """Why a table with primary key columns ``key`` cannot be followed by ``id_field``, if it cannot."""
    if key == [id_field]:
        return None
    if not key:
        found = "has no primary key"
    elif len(key) > 1:
        found = f"has a composite primary key ({', '.join(key)})"
    else:
        found = f"has the primary key {key[0]!r}"
    return (
        f"table {table} {found}: a PostgreSQL source follows rows by a single-column primary key, "
        f"named by EMBEDDING_ASSETS_ID_FIELD (now {id_field!r})"
    )


def object_name(*parts: str) -> str:
    """A name for something the source creates: ``parts`` joined by ``_``, in ``[a-z0-9_]`` (a slot
    name's alphabet) and at most 63 characters; a longer one is cut and ends with a hash of the whole."""
    whole = "_".join(parts)
    name = re.sub(r"[^a-z0-9_]", "_", whole.lower())
    if len(name) <= _MAX_NAME:
        return name
    return f"{name[: _MAX_NAME - 9]}_{hashlib.blake2b(whole.encode(), digest_size=4).hexdigest()}"


def _table_part(table: _Table) -> str:
    return table.name if table.schema == "public" else f"{table.schema}_{table.name}"


# The feeds


class _Feed(ABC):
    """One mode's change feed: what ``PostgresTable`` delegates its feed methods to."""

    @abstractmethod
    def prepare(self) -> None: ...

    @abstractmethod
    def changes(self, cursor: str | None, limit: int) -> Changes: ...

    def acknowledge(self, changes: Changes) -> None:
        return None

    def metrics(self) -> dict[str, float]:
        return {}

    def drop(self) -> None:
        return None


@dataclass(frozen=True)
class _SlotState:
    status: str | None  # pg_replication_slots.wal_status: reserved, extended, unreserved or lost
    confirmed: int  # confirmed_flush_lsn: where the next peek starts


class _Logical(_Feed):
    """A logical replication slot over a key-only publication. The cursor is an LSN: where the slot
    stands once the batch is recorded (the batch's last commit when it was cut, else the WAL's end)."""

    def __init__(self, db: _Db, table: _Table, prefix: str) -> None:
        self.db, self.table = db, table
        self.publication = object_name(prefix, _table_part(table))
        self.slot = object_name(prefix, table.database, _table_part(table))

    def prepare(self) -> None:
        level = (self.db.one("SHOW wal_level") or ("",))[0]
        if problem := wal_level_problem(str(level), self.db.where):
            raise self.db.error(problem)
        row = self.db.one(
            "SELECT c.relreplident, coalesce(bool_or(i.indisprimary), false) FROM pg_class c "
            "LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisreplident WHERE c.oid = %s GROUP BY 1",
            (self.table.oid,),
        )
        if problem := replica_identity_problem(self.table.qualified, *(row or ("d", True))):
            raise self.db.error(problem)
        renewed = self._ensure_publication()
        existing = self.db.one(
            "SELECT plugin, slot_type, database FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
        )
        if existing is not None and existing != ("pgoutput", "logical", self.table.database):
            raise self.db.error(
                f"replication slot {self.slot!r} exists but is not this source's ({', '.join(map(str, existing))}): "
                "drop it, or give the source another name prefix"
            )
        if existing is None or renewed:  # a slot older than its publication fails on the older WAL
            self._create_slot()

    def _ensure_publication(self) -> bool:
        """Create the publication of the key column, or repair it; True when it was (re)created."""
        exists = self.db.one("SELECT 1 FROM pg_publication WHERE pubname = %s", (self.publication,))
        published = self.db.rows(
            "SELECT attnames FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s AND tablename = %s",
            (self.publication, self.table.schema, self.table.name),
        )
        if exists and published == [([self.table.key_column],)]:
            return False
        name = sql.Identifier(self.publication)
        with self.db.transaction():
            self.db.rows(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(name))
            # The column list must hold the replica identity (the key), or the table's UPDATEs fail.
            self.db.rows(
                sql.SQL("CREATE PUBLICATION {} FOR TABLE {} ({}) WITH (publish_via_partition_root = true)").format(
                    name, self.table.parts["table"], self.table.parts["key"]
                )
            )
        return True

    def _create_slot(self) -> str:
        """Drop the slot if it exists and create it afresh; returns its starting LSN."""
        self.db.rows(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
        )
        row = self.db.one("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (self.slot,))
        return str(row[0]) if row else ""

    def _state(self) -> _SlotState | None:
        row = self.db.one(
            "SELECT wal_status, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
        )
        if row is None:
            return None
        return _SlotState(row[0], parse_lsn(row[1]) if row[1] else 0)

    def changes(self, cursor: str | None, limit: int) -> Changes:
        """Peek the slot up to the WAL's end now. Resync when the slot is gone or lost (it is created
        again), or stands past ``cursor`` (recreated, or consumed by someone else): the changes between
        are gone. A slot behind ``cursor`` is first advanced to it, since the caller recorded that far."""
        state = self._state()
        if state is None or state.status == "lost":
            return Changes(resync=True, cursor=self._create_slot())
        try:
            recorded = parse_lsn(cursor) if cursor else None
        except ValueError:  # a cursor of another feed
            return Changes(resync=True, cursor=format_lsn(state.confirmed))
        if recorded is not None and state.confirmed > recorded:
            return Changes(resync=True, cursor=format_lsn(state.confirmed))
        if recorded is not None and recorded > state.confirmed:
            self._advance(format_lsn(recorded))
        upto = str((self.db.one("SELECT pg_current_wal_lsn()::text") or ("",))[0])
        try:
            rows = self.db.rows(
                "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, %s, "
                "'proto_version', '1', 'publication_names', %s)",
                (self.slot, upto, limit, self.publication),
                expected=(psycopg2.errors.UndefinedObject,),
            )
        except psycopg2.errors.UndefinedObject:  # the publication (or slot) was dropped behind our back
            self.prepare()
            state = self._state()
            return Changes(resync=True, cursor=format_lsn(state.confirmed if state else 0))
        return self._batch(rows, upto, limit)

    def _batch(self, rows: list[tuple[Any, ...]], upto: str, limit: int) -> Changes:
        """Keys from the decoded messages: the last event of a key decides whether it was deleted."""
        decoder = Decoder(self.table.encoding)
        keys: dict[str, bool] = {}  # key → deleted
        resync = False
        last_commit: str | None = None
        for lsn, data in rows:
            message = decoder.decode(bytes(data))
            if isinstance(message, Commit):
                last_commit = str(lsn)
            elif isinstance(message, Truncate):
                resync = resync or self.table.oid in message.relids
            elif isinstance(message, Insert | Update | Delete) and message.relation.relid == self.table.oid:
                for key, deleted in self._keys(message):
                    if key is None:  # a key sent without its value: only a listing can tell
                        resync = True
                    else:
                        keys[key] = deleted
        # Whole transactions come back, so a cut batch ends at a commit: the slot advances to it.
        more = len(rows) >= limit and last_commit is not None
        return Changes(
            changed=tuple(key for key, deleted in keys.items() if not deleted),
            deleted=tuple(key for key, deleted in keys.items() if deleted),
            cursor=last_commit if more and last_commit is not None else upto,
            resync=resync,
            more=more,
        )

    def _keys(self, message: Insert | Update | Delete) -> list[tuple[str | None, bool]]:
        """(key, deleted) pairs of one row message; an UPDATE of the key deletes the old one."""
        column, relation = self.table.key_column, message.relation
        if isinstance(message, Insert):
            return [(_key(relation.value(message.new, column)), False)]
        if isinstance(message, Delete):
            return [(_key(relation.value(message.old, column)), True)]
        new = _key(relation.value(message.new, column))
        old = _key(relation.value(message.old, column)) if message.old is not None else new
        return [(new, False)] if old == new else [(old, True), (new, False)]

    def acknowledge(self, changes: Changes) -> None:
        """Advance the slot to the batch's cursor (never backwards), releasing the WAL before it."""
        try:
            parse_lsn(changes.cursor)
        except ValueError:
            return
        self._advance(changes.cursor)

    def _advance(self, lsn: str) -> None:
        self.db.rows(
            "SELECT pg_replication_slot_advance(slot_name, %s::pg_lsn) FROM pg_replication_slots "
            "WHERE slot_name = %s AND confirmed_flush_lsn < %s::pg_lsn",
            (lsn, self.slot, lsn),
        )

    def metrics(self) -> dict[str, float]:
        """``slot_lag_bytes``: WAL not yet acknowledged; ``slot_retained_bytes``: WAL the slot keeps on disk."""
        row = self.db.one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) FROM pg_replication_slots WHERE slot_name = %s",
            (self.slot,),
        )
        names = ("slot_lag_bytes", "slot_retained_bytes")
        return {name: float(value) for name, value in zip(names, row or (), strict=False) if value is not None}

    def drop(self) -> None:
        self.db.rows(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
        )
        self.db.rows(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(self.publication)))


def _key(value: Value) -> str | None:
    return value if isinstance(value, str) else None


def wal_level_problem(level: str, where: str) -> str | None:
    """Why a server with this ``wal_level`` cannot feed logical mode, if it cannot."""
    if level == "logical":
        return None
    return (
        f"PostgreSQL at {where}: wal_level is {level!r}; logical mode needs wal_level=logical "
        "(set it in postgresql.conf and restart) or EMBEDDING_ASSETS_SOURCE_MODE=outbox|watermark"
    )


def replica_identity_problem(table: str, identity: str, by_primary_key: bool) -> str | None:
    """Why a table with this replica identity cannot be published by its key alone, if it cannot: the
    publication's column list must cover the replica identity, or the table's UPDATEs and DELETEs fail."""
    if identity == "d" or (identity == "i" and by_primary_key):
        return None
    found = {"f": "FULL", "n": "NOTHING", "i": "USING INDEX (not the primary key)"}.get(identity, identity)
    return (
        f"table {table} has REPLICA IDENTITY {found}; logical mode publishes only the primary key, which "
        f"needs ALTER TABLE {table} REPLICA IDENTITY DEFAULT, or EMBEDDING_ASSETS_SOURCE_MODE=outbox|watermark"
    )


# The capture trigger's body. prepare() compares the installed body with it, so a change to the
# function's definition (its SET clauses too) must change this text: bump the version.
_CAPTURE = """
-- embedding_assets capture, version 1
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO {changes} (key) VALUES (NULL);
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO {changes} (key) VALUES (OLD.{key}::text);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.{key} IS DISTINCT FROM OLD.{key}) THEN
        INSERT INTO {changes} (key) VALUES (NEW.{key}::text);
    END IF;
    RETURN NULL;
END
"""


class _Outbox(_Feed):
    """Triggers write each changed key (both keys of a key change; NULL for a TRUNCATE) to a change table.

    A batch is the table's oldest rows. Its cursor is ``<change table oid>:<ids>``, the ids it holds as
    ranges (``5-9,12``), and exactly those rows are deleted once it is recorded. Ids are not taken in
    commit order: a row with a smaller id can commit after a larger one was read, so a cursor of "the
    largest id" would lose it; the oid keeps a cursor from deleting the rows of a recreated table.
    """

    def __init__(self, db: _Db, table: _Table, prefix: str) -> None:
        self.db, self.table = db, table
        self.changes_table = sql.Identifier(table.schema, object_name(prefix, "changes", _table_part(table)))
        self.function = sql.Identifier(table.schema, object_name(prefix, "capture", _table_part(table)))
        self.triggers = (object_name(prefix, "capture"), object_name(prefix, "capture_truncate"))
        self.oid: int | None = None

    def prepare(self) -> None:
        """Create the change table, the function and the triggers where missing; the DDL (and its lock
        on the table) is skipped when everything is in place. A change table that lost its triggers
        gets a NULL row: the changes in between are gone, so the next batch asks for a resync."""
        conn = self.db.connection()
        body = sql.SQL(_CAPTURE).format(changes=self.changes_table, key=self.table.parts["key"]).as_string(conn)
        self.oid = self._oid()
        installed = self.db.rows(
            "SELECT t.tgname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
            "WHERE t.tgrelid = %s AND t.tgname = ANY(%s) AND t.tgenabled <> 'D' "
            "AND p.oid = to_regprocedure(%s) AND p.prosrc = %s",
            (self.table.oid, list(self.triggers), f"{self.function.as_string(conn)}()", body),
        )
        if self.oid is not None and len(installed) == len(self.triggers):
            return
        row_trigger, truncate_trigger = (sql.Identifier(name) for name in self.triggers)
        table = self.table.parts["table"]
        with self.db.transaction():
            self.db.rows(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} "
                    "(id bigserial PRIMARY KEY, key text, at timestamptz NOT NULL DEFAULT now())"
                ).format(self.changes_table)
            )
            # SECURITY DEFINER: the table's writers need no rights on the change table. The writer's
            # TimeZone and DateStyle must not change a key's text, so the function fixes them.
            self.db.rows(
                sql.SQL(
                    "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
                    "SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' "
                    "SET IntervalStyle = 'postgres' AS {}"
                ).format(self.function, sql.Literal(body))
            )
            self.db.rows(
                sql.SQL(
                    "CREATE OR REPLACE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} "
                    "FOR EACH ROW EXECUTE FUNCTION {}()"
                ).format(row_trigger, table, self.function)
            )
            self.db.rows(
                sql.SQL(
                    "CREATE OR REPLACE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()"
                ).format(truncate_trigger, table, self.function)
            )
            if self.oid is not None and len(installed) < len(self.triggers):
                self.db.rows(sql.SQL("INSERT INTO {} (key) VALUES (NULL)").format(self.changes_table))
        self.oid = self._oid()

    def _oid(self) -> int | None:
        row = self.db.one("SELECT to_regclass(%s)::oid", (self.changes_table.as_string(self.db.connection()),))
        return int(row[0]) if row and row[0] is not None else None

    def changes(self, cursor: str | None, limit: int) -> Changes:
        """The oldest ``limit`` rows of the change table. The rows of ``cursor`` were recorded, so they
        are deleted first; a cursor of another table (or feed) means a resync."""
        if self._oid() != self.oid or self.oid is None:  # the change table was dropped behind our back
            self.prepare()
            return self._batch(limit, resync=True)
        resync = False
        if cursor is not None:
            parsed = parse_outbox_cursor(cursor)
            if parsed is None or parsed[0] != self.oid:
                resync = True
            else:
                self._delete(parsed[1])
        return self._batch(limit, resync)

    def _batch(self, limit: int, resync: bool) -> Changes:
        rows = self.db.rows(sql.SQL("SELECT id, key FROM {} ORDER BY id LIMIT %s").format(self.changes_table), (limit,))
        keys = dict.fromkeys(str(key) for _, key in rows if key is not None)
        return Changes(
            changed=tuple(keys),
            cursor=f"{self.oid}:{id_ranges([int(row[0]) for row in rows])}",
            resync=resync or any(key is None for _, key in rows),
            more=len(rows) >= limit,
        )

    def acknowledge(self, changes: Changes) -> None:
        parsed = parse_outbox_cursor(changes.cursor)
        if parsed is not None and parsed[0] == self.oid:
            self._delete(parsed[1])

    def _delete(self, ranges: list[tuple[int, int]]) -> None:
        if ranges:
            self.db.rows(
                sql.SQL(
                    "DELETE FROM {} c USING unnest(%s::bigint[], %s::bigint[]) AS r(lo, hi) "
                    "WHERE c.id BETWEEN r.lo AND r.hi"
                ).format(self.changes_table),
                ([lo for lo, _ in ranges], [hi for _, hi in ranges]),
            )

    def metrics(self) -> dict[str, float]:
        """``outbox_depth``: change rows not yet acknowledged."""
        row = self.db.one(sql.SQL("SELECT count(*) FROM {}").format(self.changes_table))
        return {"outbox_depth": float(row[0]) if row else 0.0}

    def drop(self) -> None:
        for trigger in self.triggers:
            self.db.rows(
                sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(trigger), self.table.parts["table"])
            )
        self.db.rows(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(self.function))
        self.db.rows(sql.SQL("DROP TABLE IF EXISTS {}").format(self.changes_table))


def id_ranges(ids: list[int]) -> str:
    """Sorted ids as ranges: ``[5, 6, 7, 9]`` → ``"5-7,9"``."""
    ranges: list[list[int]] = []
    for value in sorted(ids):
        if ranges and value <= ranges[-1][1] + 1:
            ranges[-1][1] = max(ranges[-1][1], value)
        else:
            ranges.append([value, value])
    return ",".join(f"{lo}-{hi}" if hi > lo else str(lo) for lo, hi in ranges)


def parse_outbox_cursor(cursor: str) -> tuple[int, list[tuple[int, int]]] | None:
    """(change table oid, id ranges) of an outbox cursor; None when it is not one."""
    oid, sep, text = cursor.partition(":")
    if not sep or not oid.isdigit() or not re.fullmatch(r"(\d+(-\d+)?(,\d+(-\d+)?)*)?", text):
        return None
    ranges = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        ranges.append((int(lo), int(hi or lo)))
    return int(oid), ranges


@dataclass(frozen=True)
class WatermarkCursor:
    """The newest ``updated_field`` seen (never moving backwards) and, while a run of batches is cut at
    the limit, the (timestamp, key) position after which the next batch continues."""

    at: datetime | None
    after: tuple[datetime, str] | None = None

    def text(self) -> str:
        if self.at is None:
            return ""
        return self.at.isoformat() + (f"|{self.after[0].isoformat()}|{self.after[1]}" if self.after else "")

    @classmethod
    def parse(cls, text: str | None) -> "WatermarkCursor":
        """ValueError when ``text`` is no watermark cursor (or has no time zone)."""
        if not text:
            return cls(None)
        at, sep, rest = text.partition("|")
        stamp, sep_key, key = rest.partition("|")
        if sep and not sep_key:
            raise ValueError(f"not a watermark cursor: {text!r}")
        return cls(_aware(at, text), (_aware(stamp, text), key) if sep else None)


def _aware(stamp: str, cursor: str) -> datetime:
    """The time-zone-aware timestamp ``stamp`` of ``cursor``."""
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValueError(f"not a watermark cursor: {cursor!r}")
    return parsed


class _Watermark(_Feed):
    """Keys of rows whose ``updated_field`` is after the watermark less ``lag``, in (timestamp, key)
    order. Each run of batches starts again ``lag`` behind the watermark, so a row committed up to
    ``lag`` late is still seen; later commits and hard deletes are left to the listing reconcile.
    An index on ``updated_field`` keeps a batch from scanning the table."""

    def __init__(self, db: _Db, table: _Table, column: str, lag_seconds: float) -> None:
        self.db, self.table, self.column = db, table, column
        self.lag = timedelta(seconds=lag_seconds)

    def prepare(self) -> None:
        kind = self.table.column_type(self.column)
        if kind not in _TIMESTAMPS:
            found = "has no column" if kind is None else f"has a column of type {kind}, not a timestamp,"
            raise self.db.error(
                f"table {self.table.qualified} {found} {self.column!r}: watermark mode needs the timestamp "
                "of each row's last change (set EMBEDDING_ASSETS_UPDATED_FIELD)"
            )

    def changes(self, cursor: str | None, limit: int) -> Changes:
        """Every key is "changed": the read decides. A cursor of another feed means a resync from now."""
        try:
            mark = WatermarkCursor.parse(cursor)
        except ValueError:
            now = (self.db.one("SELECT now()") or (None,))[0]
            return Changes(resync=True, cursor=WatermarkCursor(now).text())
        parts = {**self.table.parts, "at": sql.Identifier(self.column)}
        select = "SELECT t.{key}::text, t.{at}::timestamptz FROM {table} t WHERE "
        order = " ORDER BY t.{at}, t.{key} LIMIT %s"  # t.: the table's columns, not the text output
        params: tuple[Any, ...]
        if mark.after is not None:
            where, params = "(t.{at}, t.{key}) > (%s, %s::{type})", (*mark.after, limit)
        elif mark.at is not None:
            where, params = "t.{at} > %s", (mark.at - self.lag, limit)
        else:
            where, params = "t.{at} IS NOT NULL", (limit,)
        rows = self.db.rows(sql.SQL(select + where + order).format(**parts), params)
        newest = max([stamp for _, stamp in rows] + ([mark.at] if mark.at else []), default=None)
        more = len(rows) >= limit
        after = (rows[-1][1], str(rows[-1][0])) if more else None
        return Changes(
            changed=tuple(dict.fromkeys(str(key) for key, _ in rows)),
            cursor=WatermarkCursor(newest, after).text(),
            more=more,
        )
