"""The PostgreSQL source's one connection, and how its failures are reported.

The password never passes through this code: libpq finds it (the DSN, ``PGPASSWORD``, ``~/.pgpass``),
and it is kept out of the name, messages and metrics. A source holds one connection and is not
thread-safe.
"""

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from embedding_assets.core.sources.base import SourceError

_CONNECT = {"connect_timeout": 10, "application_name": "embedding_assets"}  # unless the DSN sets them
# Fixed output styles, so that a temporal key reads as the same text in every session.
_SESSION = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'"
_DDL_LOCK_TIMEOUT = "3s"  # a DDL lock waiting behind a long transaction would queue the table's writers


class PostgresConnection:
    """One autocommit connection, opened on first use and again once broken. Failures become a
    ``SourceError`` naming the server as host:port/dbname; known secrets are masked in every message."""

    def __init__(self, dsn: str, **connect_options: str) -> None:
        self._dsn = dsn
        self._options = connect_options  # e.g. a password from another variable, or session options
        self._conn: Any = None
        try:
            self._params: dict[str, str] | None = psycopg2.extensions.parse_dsn(dsn)
        except psycopg2.Error:  # its message quotes the DSN, password and all
            self._params = None
        params = self._params or {}
        candidates = (params.get("password"), connect_options.get("password"), os.environ.get("PGPASSWORD"))
        self._secrets = {s for s in candidates if s}
        self.where = describe_server(params)

    def connection(self) -> Any:
        if self._params is None:
            raise SourceError("the PostgreSQL DSN is neither a postgresql:// URI nor a key=value string")
        if self._conn is None or self._conn.closed:
            options = {name: value for name, value in _CONNECT.items() if name not in self._params} | self._options
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
        return SourceError(self.mask(message))

    def mask(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message

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
