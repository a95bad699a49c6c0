"""The ``outbox`` feed: row and TRUNCATE triggers write every changed key to a change table; a batch's
rows are deleted once it is recorded."""

import re

from psycopg2 import sql

from embedding_assets.core.sources.base import Changes
from embedding_assets.core.sources.postgres.catalog import _Table
from embedding_assets.core.sources.postgres.connection import PostgresConnection
from embedding_assets.core.sources.postgres.feed import _Feed, _table_part, object_name

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

    def __init__(self, db: PostgresConnection, table: _Table, prefix: str) -> None:
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
