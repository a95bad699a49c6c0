"""A PostgreSQL table as a source (``PostgresTable``), with three change feeds chosen by ``mode``.

- ``table``: ``PostgresTable`` itself: listing, reads, and the feed it delegates to.
- ``connection``: the one connection, its session settings, and messages that never hold the password.
- ``catalog``: what the catalog says about the table, checked in ``prepare``.
- ``feed``: the interface every feed follows, and the names of what a feed creates.
- ``logical``, ``outbox``, ``watermark``: one module per feed.

The protocol decoder the logical feed reads with is ``embedding_assets.core.sources.pgoutput``. The
constants re-exported here are copies: ``table`` reads ``LISTING_BATCH`` and ``READ_BATCH``, so change
them there.
"""

from embedding_assets.core.sources.postgres.catalog import primary_key_problem
from embedding_assets.core.sources.postgres.connection import describe_server
from embedding_assets.core.sources.postgres.feed import object_name
from embedding_assets.core.sources.postgres.logical import replica_identity_problem, wal_level_problem
from embedding_assets.core.sources.postgres.outbox import id_ranges, parse_outbox_cursor
from embedding_assets.core.sources.postgres.table import LISTING_BATCH, MODES, NULL_VERSION, READ_BATCH, PostgresTable
from embedding_assets.core.sources.postgres.watermark import WATERMARK_RECONCILE_SECONDS, WatermarkCursor

__all__ = [
    "LISTING_BATCH",
    "MODES",
    "NULL_VERSION",
    "READ_BATCH",
    "WATERMARK_RECONCILE_SECONDS",
    "PostgresTable",
    "WatermarkCursor",
    "describe_server",
    "id_ranges",
    "object_name",
    "parse_outbox_cursor",
    "primary_key_problem",
    "replica_identity_problem",
    "wal_level_problem",
]
