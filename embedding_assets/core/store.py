"""The LanceDB vector table: one table per model version, written one shard at a time.

A shard is replaced in a single ``merge_insert`` commit keyed on ``chunk_id``: changed chunks are
updated, new ones inserted, and the shard's chunks that are no longer produced are deleted, so a
reader sees the old shard or the new one, never a mix. A write with nothing to change commits
nothing, so re-running a partition leaves even the table version untouched.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embedding_assets.core.errors import ConfigError
from embedding_assets.core.object_store import storage_options

TABLE_PREFIX = "chunks"
# A stored row is rewritten only when one of these differs from what the pipeline produced.
CHANGE_COLUMNS = ("chunk_hash", "doc_hash", "embedded_at")
COMPACT_AFTER_SMALL_FRAGMENTS = 64


def table_name(model_version: str) -> str:
    """A LanceDB-safe table name per model version: ``chunks__local_all_minilm_l6_v2_...``."""
    return f"{TABLE_PREFIX}__" + re.sub(r"[^a-z0-9]+", "_", model_version.lower()).strip("_")


def row_schema(
    dimensions: int,
    *,
    model_version: str,
    shard_count: int,
    model_spec: str = "",
    requested_dimensions: int | None = None,
) -> pa.Schema:
    """The table's columns. The model identity (version, and the spec and dimensions that rebuild the
    embedder for queries) and the shard count travel in its schema metadata."""
    return pa.schema(
        [
            pa.field("chunk_id", pa.string(), nullable=False),
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("shard", pa.string(), nullable=False),
            pa.field("position", pa.int32(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dimensions)),
            pa.field("chunk_hash", pa.string(), nullable=False),
            pa.field("doc_hash", pa.string(), nullable=False),
            pa.field("token_count", pa.int32(), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("embedded_at", pa.timestamp("us", tz="UTC"), nullable=False),
        ],
        metadata={
            "model_version": model_version,
            "dimensions": str(dimensions),
            "shard_count": str(shard_count),
            "model_spec": model_spec,
            "requested_dimensions": str(requested_dimensions or ""),
        },
    )


def expire_before(ttl_days: float | None) -> datetime | None:
    """Vectors embedded before this moment have outlived ``ttl_days`` (None: they never expire)."""
    return None if ttl_days is None else datetime.now(UTC) - timedelta(days=ttl_days)


def sql_string(value: str) -> str:
    """A SQL string literal for LanceDB filters; quotes in ids can never end the literal."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class ShardWrite:
    inserted: int
    updated: int
    deleted: int
    unchanged: int
    table_version: int
    commit_attempts: int = 0  # LanceDB retries commits that conflict with concurrent writers

    @property
    def committed(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)


@dataclass(frozen=True)
class TableInfo:
    name: str
    model_version: str
    dimensions: int
    shard_count: int
    version: int
    rows: int
    model_spec: str = ""
    requested_dimensions: int | None = None


class VectorStore:
    """The LanceDB database at ``uri`` (a local folder, or an object-store URI)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._db: Any = None
        self._tables: dict[str, Any] = {}

    @property
    def db(self) -> Any:
        if self._db is None:
            import lancedb

            # Every read sees the latest committed version, even through a long-lived handle.
            self._db = lancedb.connect(
                self.uri, read_consistency_interval=timedelta(0), storage_options=storage_options(self.uri)
            )
        return self._db

    def table(self, model_version: str) -> Any | None:
        """The model's table, or None. Open handles are kept: with ``read_consistency_interval=0``
        every read through them still sees the latest version."""
        name = table_name(model_version)
        if name not in self._tables and name in self.db.list_tables().tables:
            self._tables[name] = self.db.open_table(name)
        return self._tables.get(name)

    def info(self, model_version: str) -> TableInfo | None:
        table = self.table(model_version)
        if table is None:
            return None
        meta = _metadata(table.schema)
        return TableInfo(
            table.name,
            meta.get("model_version", "?"),
            int(meta.get("dimensions", 0)),
            int(meta.get("shard_count", 0)),
            table.version,
            table.count_rows(),
            meta.get("model_spec", ""),
            int(meta["requested_dimensions"]) if meta.get("requested_dimensions") else None,
        )

    def model_versions(self) -> list[str]:
        """The model versions that have a table here, in table-name order."""
        names = [n for n in self.db.list_tables().tables if n.startswith(f"{TABLE_PREFIX}__")]
        return [_metadata(self.db.open_table(n).schema).get("model_version", n) for n in sorted(names)]

    def drop(self, model_version: str) -> None:
        self._tables.pop(table_name(model_version), None)
        self.db.drop_table(table_name(model_version))

    def open_for_write(self, schema: pa.Schema) -> Any:
        """The table for ``schema``'s model (created on first use); refuses a table of another layout."""
        meta = _metadata(schema)
        model_version = meta["model_version"]
        dimensions, shard_count = int(meta["dimensions"]), int(meta["shard_count"])
        info = self.info(model_version)
        if info is None:
            return self.db.create_table(table_name(model_version), schema=schema, exist_ok=True)
        if (info.model_version, info.dimensions, info.shard_count) != (model_version, dimensions, shard_count):
            raise ConfigError(
                f"table {info.name} holds {info.model_version} ({info.dimensions}d, {info.shard_count} shards) "
                f"but the pipeline is configured for {model_version} ({dimensions}d, {shard_count} shards); "
                "a different shard count needs a new LanceDB location (EMBEDDING_ASSETS_LANCEDB_URI)"
            )
        return self.table(model_version)

    def shard_rows(self, model_version: str, shard: str, columns: Sequence[str] | None = None) -> pa.Table | None:
        """The rows stored for ``shard``, or None when the model has no table yet."""
        table = self.table(model_version)
        if table is None:
            return None
        query = table.search().where(f"shard = {sql_string(shard)}")
        return (query.select(list(columns)) if columns else query).to_arrow()

    def replace_shard(self, shard: str, rows: pa.Table) -> ShardWrite:
        """Make the table's rows for ``shard`` exactly ``rows`` (whose schema metadata names the model),
        in one commit, or none if they are equal."""
        table = self.open_for_write(rows.schema)
        model_version = _metadata(rows.schema)["model_version"]
        rows = rows.select(table.schema.names).cast(table.schema)
        if set(rows.column("shard").unique().to_pylist()) - {shard}:
            raise ValueError(f"rows for shard {shard} contain rows of other shards")
        stored = self.shard_rows(model_version, shard, ["chunk_id", *CHANGE_COLUMNS])
        new, changed, deleted = _diff(stored, rows)
        if not (new or changed or deleted):
            return ShardWrite(0, 0, 0, rows.num_rows, table.version)
        result = (
            table.merge_insert("chunk_id")
            .when_matched_update_all(where=" OR ".join(f"target.{c} != source.{c}" for c in CHANGE_COLUMNS))
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(f"shard = {sql_string(shard)}")
            .execute(rows)
        )
        return ShardWrite(
            result.num_inserted_rows,
            result.num_updated_rows,
            result.num_deleted_rows,
            rows.num_rows - result.num_inserted_rows - result.num_updated_rows,
            result.version,
            result.num_attempts,
        )

    def compact(self, model_version: str, min_small_fragments: int = COMPACT_AFTER_SMALL_FRAGMENTS) -> int | None:
        """Merge the table's small fragments (every shard commit adds some) once there are at least
        ``min_small_fragments``, keeping old versions for a week. Returns the fragments before, or None
        when nothing was done. Searches slow down as fragments pile up; compaction restores them."""
        table = self.table(model_version)
        if table is None:
            return None
        fragments = table.stats()["fragment_stats"]  # a dict, despite the annotation
        if fragments["num_small_fragments"] < min_small_fragments:
            return None
        table.optimize(cleanup_older_than=timedelta(days=7))
        return int(fragments["num_fragments"])

    def search(self, model_version: str, vector: np.ndarray, k: int = 10) -> pa.Table:
        """Top-``k`` chunks by cosine similarity, with a ``score`` column (1 = identical direction)."""
        table = self.table(model_version)
        if table is None:
            raise LookupError(f"no table for {model_version} in {self.uri}; materialize the pipeline first")
        hits = (
            table.search(vector.astype(np.float32))
            .distance_type("cosine")
            .limit(k)
            .select(["chunk_id", "doc_id", "shard", "text", "_distance"])
            .to_arrow()
        )
        scores = pc.subtract(1.0, hits.column("_distance"))
        return hits.drop_columns(["_distance"]).append_column("score", scores)

    def expired_shards(self, model_version: str, before: datetime) -> list[str]:
        """Shards holding vectors embedded before ``before`` (a UTC moment)."""
        table = self.table(model_version)
        if table is None:
            return []
        moment = before.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        rows = table.search().where(f"embedded_at < TIMESTAMP '{moment}'").select(["shard"]).to_arrow()
        return sorted(set(rows.column("shard").to_pylist()))

    def documents_by_shard(self, model_version: str) -> dict[str, set[tuple[str, str]]]:
        """shard → the (doc_id, doc_hash) pairs its rows came from; one read of three columns."""
        table = self.table(model_version)
        if table is None:
            return {}
        rows = table.search().select(["shard", "doc_id", "doc_hash"]).to_arrow()
        documents: dict[str, set[tuple[str, str]]] = {}
        for shard, doc_id, doc_hash in zip(
            *(rows.column(c).to_pylist() for c in ("shard", "doc_id", "doc_hash")), strict=True
        ):
            documents.setdefault(shard, set()).add((doc_id, doc_hash))
        return documents

    def shard_counts(self, model_version: str) -> dict[str, int]:
        table = self.table(model_version)
        if table is None:
            return {}
        shards = table.search().select(["shard"]).to_arrow().column("shard")
        counts = pc.value_counts(shards).to_pylist()
        return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}


def _metadata(schema: pa.Schema) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}


def _diff(stored: pa.Table | None, rows: pa.Table) -> tuple[set[str], set[str], set[str]]:
    """(new, changed, deleted) chunk ids between the stored shard and the rows to write."""

    def keyed(table: pa.Table) -> dict[str, tuple[Any, ...]]:
        columns = [table.column(c).to_pylist() for c in ("chunk_id", *CHANGE_COLUMNS)]
        return {values[0]: values[1:] for values in zip(*columns, strict=True)}

    before = keyed(stored) if stored is not None else {}
    after = keyed(rows)
    if len(after) != rows.num_rows:
        raise ValueError("rows to write contain duplicate chunk ids")
    new = after.keys() - before.keys()
    deleted = before.keys() - after.keys()
    changed = {k for k in after.keys() & before.keys() if after[k] != before[k]}
    return new, changed, deleted
