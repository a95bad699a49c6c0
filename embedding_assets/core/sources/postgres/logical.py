"""The ``logical`` feed (the default): a logical replication slot with ``pgoutput``.

The slot follows a publication of the key column only, is read with
``pg_logical_slot_peek_binary_changes`` (so a crashed tick replays) and is advanced in ``acknowledge``.
Every message carries just the key, and the row is re-read, so TOAST's "unchanged" values never matter.
Needs ``wal_level=logical`` and REPLICATION (or superuser).
"""

from dataclasses import dataclass
from typing import Any

import psycopg2.errors
from psycopg2 import sql

from embedding_assets.core.sources.base import Changes
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
from embedding_assets.core.sources.postgres.catalog import _Table
from embedding_assets.core.sources.postgres.connection import PostgresConnection
from embedding_assets.core.sources.postgres.feed import _Feed, _table_part, object_name


@dataclass(frozen=True)
class _SlotState:
    status: str | None  # pg_replication_slots.wal_status: reserved, extended, unreserved or lost
    confirmed: int  # confirmed_flush_lsn: where the next peek starts


class _Logical(_Feed):
    """A logical replication slot over a key-only publication. The cursor is an LSN: where the slot
    stands once the batch is recorded (the batch's last commit when it was cut, else the WAL's end)."""

    def __init__(self, db: PostgresConnection, table: _Table, prefix: str) -> None:
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
        self._drop_slot()
        row = self.db.one("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (self.slot,))
        return str(row[0]) if row else ""

    def _drop_slot(self) -> None:
        """Drop the slot if it exists."""
        self.db.rows(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
        )

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
        ours, since = False, None  # the open transaction changed the table; the first such commit's time
        for lsn, data in rows:
            message = decoder.decode(bytes(data))
            if isinstance(message, Commit):
                last_commit = str(lsn)
                since = message.committed_at if ours and since is None else since
                ours = False
            elif isinstance(message, Truncate):
                resync = resync or self.table.oid in message.relids
            elif isinstance(message, Insert | Update | Delete) and message.relation.relid == self.table.oid:
                ours = True
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
            since=since,
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
        self._drop_slot()
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
