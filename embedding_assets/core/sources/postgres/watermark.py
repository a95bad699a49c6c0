"""The ``watermark`` feed: rows whose ``updated_field`` is newer than the last batch, less ``lag_seconds``.

It cannot see hard deletes or rows that commit late, so ``reconcile_seconds`` asks for periodic listings.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg2 import sql

from embedding_assets.core.sources.base import Changes
from embedding_assets.core.sources.postgres.catalog import _Table
from embedding_assets.core.sources.postgres.connection import PostgresConnection
from embedding_assets.core.sources.postgres.feed import _Feed

WATERMARK_RECONCILE_SECONDS = 600.0  # a watermark misses late commits and hard deletes: list this often
_TIMESTAMPS = frozenset({"timestamp with time zone", "timestamp without time zone"})


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

    def __init__(self, db: PostgresConnection, table: _Table, column: str, lag_seconds: float) -> None:
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
