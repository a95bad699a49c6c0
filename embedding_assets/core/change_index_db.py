"""Where the change index lives: a SQLite file in the staging folder (one host), or a schema of a
PostgreSQL database that every run worker reaches (the production profile's instance database).

Both run the same SQL: ``?`` placeholders (rewritten to psycopg2's ``%s``) and ``ON CONFLICT`` upserts.
A transaction admits one writer at a time, so two syncs never interleave their batches.
"""

import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from embedding_assets.core.errors import ChangeIndexError

if TYPE_CHECKING:
    from embedding_assets.core.sources.postgres.connection import PostgresConnection

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, version TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    key TEXT NOT NULL, position INTEGER NOT NULL, doc_id TEXT NOT NULL, shard TEXT NOT NULL,
    doc_hash TEXT, skip_reason TEXT, PRIMARY KEY (key, position));
CREATE INDEX IF NOT EXISTS items_by_shard_key ON items (shard, key, position, doc_id, doc_hash, skip_reason);
DROP INDEX IF EXISTS items_by_shard;
CREATE INDEX IF NOT EXISTS items_by_doc ON items (doc_id);
CREATE TABLE IF NOT EXISTS shards (
    shard TEXT PRIMARY KEY, documents INTEGER NOT NULL, doc_sum TEXT NOT NULL, skips INTEGER NOT NULL,
    skip_sum TEXT NOT NULL, generation INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS shards_by_generation ON shards (generation);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (
    shard TEXT NOT NULL, generation INTEGER NOT NULL, since REAL NOT NULL, PRIMARY KEY (shard, generation));
CREATE TABLE IF NOT EXISTS settled (
    shard TEXT NOT NULL, consumer TEXT NOT NULL, generation INTEGER NOT NULL, PRIMARY KEY (shard, consumer));
"""
# items_by_shard_key covers ``ChangeIndex.shard_items`` (a shard's items in key order): one range of the
# index, already sorted, instead of a sort and a lookup into the table per item, whose pages are spread
# over the whole table (measured at 10^6 items: 1.6x faster warm; the lookups are what grows with the
# table once it outgrows the page cache). It replaces the index on ``shard`` alone.
_PG_BATCH = 1_000  # rows per round trip of a bulk insert


class Connection(Protocol):
    """The part of a DB-API connection the change index uses (``sqlite3.Connection`` has it as is)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...


class IndexDatabase(ABC):
    """A database holding one change index."""

    where: str  # for messages: a path, or host:port/dbname and schema (never a password)

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Connection]:
        """One transaction, committed when the block ends; writers wait for each other."""

    @abstractmethod
    def session(self) -> AbstractContextManager[Connection]:
        """A separate autocommit session, for a temporary table read beside the transactions."""


class SqliteDatabase(IndexDatabase):
    """The SQLite file ``path`` (WAL): one host's processes share it. Not for network file systems."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        return db

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")  # IMMEDIATE: the write lock now, not at the first write
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    @contextmanager
    def session(self) -> Iterator[Connection]:
        db = self._connect()
        try:
            yield db
        finally:
            db.close()


class PostgresDatabase(IndexDatabase):
    """The schema ``schema`` of the PostgreSQL database ``dsn`` (created on first use). libpq finds
    the password (``PGPASSWORD``, ``~/.pgpass``) unless ``password`` is given; it is never shown."""

    def __init__(self, dsn: str, schema: str, password: str | None = None) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise ValueError(f"not a plain PostgreSQL schema name: {schema!r}")
        self.schema = schema
        self._dsn, self._password = dsn, password
        self._db = self._open()
        self.where = f"{self._db.where} schema {schema}"
        self._ready = False  # the schema and its tables exist

    def _open(self) -> "PostgresConnection":
        from embedding_assets.core.sources.postgres.connection import PostgresConnection

        options = {"options": f"-c search_path={self.schema}"}
        return PostgresConnection(self._dsn, **options, **({"password": self._password} if self._password else {}))

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        import psycopg2

        conn = self._db.connection()
        conn.autocommit = False
        try:
            with conn.cursor() as cur:
                # One writer per index; the lock goes with the transaction, or with a process that dies.
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.schema,))
                if not self._ready:
                    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                    cur.execute(SCHEMA)
            yield _PgConnection(conn)
            conn.commit()
            self._ready = True
        except psycopg2.Error as err:
            message = f"the change index at {self.where}: {' '.join(str(err).split())}"
            raise ChangeIndexError(self._db.mask(message)) from None
        finally:
            if not conn.closed:
                conn.rollback()  # nothing left to roll back after a commit
                conn.autocommit = True

    @contextmanager
    def session(self) -> Iterator[Connection]:
        db = self._open()
        try:
            yield _PgConnection(db.connection())
        finally:
            db.close()


class _PgConnection:
    """A psycopg2 connection behind the sqlite3 calls the change index makes."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self._conn.cursor()
        cur.execute(sql.replace("?", "%s"), tuple(params))
        return cur

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        from psycopg2.extras import execute_batch

        cur = self._conn.cursor()
        execute_batch(cur, sql.replace("?", "%s"), list(rows), page_size=_PG_BATCH)
        return cur
