"""The LanceDB vector table: one table per model version, written by shard (consecutive shards may
share their commits: ``ShardWriteBatch``).

A shard write costs what the shard holds, never what the table holds: an upsert (``merge_insert`` on
``chunk_id``) of only the shard's new and changed rows, then a delete of exactly its chunk ids that
are no longer produced (both found by scalar indexes). LanceDB 0.40 has no single commit that does
both at that cost (``when_not_matched_by_source_delete`` joins the whole table, whatever its
condition), so a write that both upserts and deletes is two commits, each atomic. A reader sees the
old shard, then (between the commits) every current chunk of the new shard plus the vanished chunks
about to be deleted, then the new shard: it may briefly see a vanished chunk, never miss a current
one, and a changed chunk is replaced in place, never absent. A write with nothing to change commits
nothing, so re-running a partition leaves even the table version untouched.

Beside each table, a small table ``shard_state__<table>`` holds one row per shard: the fingerprint of
the (doc_id, doc_hash) pairs its rows come from (the set hash the change index keeps for the
source), its rows, documents and oldest ``embedded_at``, and the table version. Stale detection and
the TTL read it instead of the table. A write marks its shard's state pending (a fingerprint that
matches no source) before its first commit and records the new state after its last, so a crash in
between leaves the shard looking stale, and the re-run repairs it; never the reverse.

Scalar indexes (BTREE on ``chunk_id`` and ``doc_id``, BITMAP on ``shard``) are made with the table, and
on the first write to a table made without them. Rows written since the last ``optimize`` are not in
them yet and a filtered read scans those rows, so ``compact`` (which optimizes) bounds that cost.
"""

import dataclasses
import functools
import random
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embedding_assets.core import ann, lance_upkeep
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.hashing import pair_hash, set_hash, set_hash_hex
from embedding_assets.core.object_store import storage_options
from embedding_assets.core.shards import shard_keys

TABLE_PREFIX = "chunks"
STATE_PREFIX = "shard_state"
# A stored row is rewritten only when one of these differs from what the pipeline produced.
CHANGE_COLUMNS = ("chunk_hash", "doc_hash", "embedded_at")
STATE_COLUMNS = ("doc_id", "doc_hash", "embedded_at", "token_count")  # what a shard's state is computed from
COMPACT_AFTER_SMALL_FRAGMENTS = 64
# Rows outside the scalar indexes that filtered reads and merges may scan before the indexes take them:
# this many, or this share of the indexed rows if more (a fold rewrites the index, so folding after a
# share of the table keeps its cost, spread over the rows written, proportional to them), but never
# more than the cap (what 64 shard commits of ~35,000 rows left before compaction folded them in).
UNINDEXED_ROWS_MIN = 50_000
UNINDEXED_SHARE = 0.05
UNINDEXED_ROWS_MAX = 2_000_000
STATE_COMPACT_AFTER_FRAGMENTS = 16  # compacting the state table (a row per shard) takes milliseconds
# Index type per column. doc_id has about one value per row: a BITMAP on it was 4x the size of the
# BTREE at 200k rows and no faster to query, while a shard has few values, each over many rows.
SCALAR_INDEXES = {"chunk_id": "BTREE", "shard": "BITMAP", "doc_id": "BTREE"}
DELETE_BATCH_IDS = 2_000  # vanished chunk ids per delete commit (one SQL IN list)
PENDING = ""  # the fingerprint of a shard whose write is under way: equal to no set hash
DOCUMENT_KEY_SEPARATOR = "\x1f"  # between a document's id and its hash in ``document_keys``
TABLE_ID = "table_id"  # schema metadata: which incarnation of a table a shard state belongs to


def table_name(model_version: str) -> str:
    """A LanceDB-safe table name per model version: ``chunks__local_all_minilm_l6_v2_...``."""
    return f"{TABLE_PREFIX}__" + re.sub(r"[^a-z0-9]+", "_", model_version.lower()).strip("_")


def state_table_name(model_version: str) -> str:
    """The small table of the model table's shard states: ``shard_state__chunks__...``."""
    return f"{STATE_PREFIX}__{table_name(model_version)}"


STATE_SCHEMA = pa.schema(
    [
        pa.field("shard", pa.string(), nullable=False),
        pa.field("fingerprint", pa.string(), nullable=False),
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("documents", pa.int64(), nullable=False),
        pa.field("oldest_embedded_at", pa.timestamp("us", tz="UTC")),
        pa.field("table_id", pa.string(), nullable=False),
        pa.field("table_version", pa.int64(), nullable=False),
        pa.field("tokens", pa.int64()),  # null: recorded by a release before token totals
    ]
)


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
            # The chunk's page (from 1) in a paged document (PDF), else null. Last, where ``add_columns``
            # puts it in a table made before it existed (``open_for_write``).
            pa.field("page", pa.int32()),
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


def unindexed_rows_allowed(indexed_rows: int, min_rows: int = UNINDEXED_ROWS_MIN) -> int:
    """How many rows may stay outside the scalar indexes before ``index_new_rows`` folds them in."""
    return min(max(min_rows, int(UNINDEXED_SHARE * indexed_rows)), UNINDEXED_ROWS_MAX)


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
class ShardState:
    """What the table holds for one shard, recorded by the write that made it: read in place of the
    table by stale detection and the TTL."""

    shard: str
    fingerprint: str  # set hash of the (doc_id, doc_hash) pairs of its rows; PENDING while a write runs
    rows: int
    documents: int  # distinct (doc_id, doc_hash) pairs
    oldest_embedded_at: datetime | None  # None: no rows
    table_version: int  # the table version it was computed at
    tokens: int | None = None  # the rows' tokens in the model's tokenizer; None: recorded by an older release

    @property
    def pending(self) -> bool:
        return self.fingerprint == PENDING

    def same_content(self, other: "ShardState | None") -> bool:
        """Whether ``other`` records the same rows (whatever version it was computed at)."""
        return other is not None and dataclasses.replace(other, table_version=self.table_version) == self


def fingerprint(rows: pa.Table | None) -> str:
    """The set hash of the (doc_id, doc_hash) pairs ``rows`` come from: for a shard's rows, what the
    change index's fingerprint of its documents must equal (None: no rows)."""
    return set_hash(_as_tuples(_distinct_pairs(rows)))


def shard_state(
    shard: str,
    rows: pa.Table,
    table_version: int,
    recorded: "ShardState | None" = None,
    stored: pa.Table | None = None,
) -> ShardState:
    """The state of a shard whose rows are exactly ``rows`` (they need ``STATE_COLUMNS``). Given the
    ``recorded`` state of the ``stored`` rows they replace, its fingerprint moves by the pairs that came
    or went (``moved_fingerprint``); otherwise every pair is hashed."""
    pairs = _distinct_pairs(rows)
    oldest = pc.min(rows.column("embedded_at")).as_py() if rows.num_rows else None
    tokens = pc.sum(rows.column("token_count")).as_py() or 0
    digest = moved_fingerprint(recorded, stored, pairs) or set_hash(_as_tuples(pairs))
    return ShardState(shard, digest, rows.num_rows, pairs.num_rows, oldest, table_version, tokens)


def moved_fingerprint(recorded: "ShardState | None", stored: pa.Table | None, after: pa.Table) -> str | None:
    """The fingerprint of rows whose distinct (doc_id, doc_hash) pairs are ``after``, from the ``recorded``
    one of the ``stored`` rows they replace, hashing only the pairs that came or went (a shard write's
    cost follows the change). None when the record cannot be trusted for that: pending, missing, or not
    of ``stored``'s row count."""
    if recorded is None or recorded.pending:
        return None
    before = _distinct_pairs(stored)
    if (recorded.rows, recorded.documents) != (0 if stored is None else stored.num_rows, before.num_rows):
        return None
    came = after.filter(pc.invert(pc.is_in(document_keys(after), value_set=document_keys(before))))
    went = before.filter(pc.invert(pc.is_in(document_keys(before), value_set=document_keys(after))))
    moved = sum(pair_hash(*pair) for pair in _as_tuples(came)) - sum(pair_hash(*pair) for pair in _as_tuples(went))
    return set_hash_hex(int(recorded.fingerprint, 16) + moved)


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
        self._indexed: set[str] = set()  # tables whose scalar indexes this process has seen

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
        for name in (table_name(model_version), state_table_name(model_version)):
            self._tables.pop(name, None)
            self._indexed.discard(name)
        if state_table_name(model_version) in self.db.list_tables().tables:
            self.db.drop_table(state_table_name(model_version))
        self.db.drop_table(table_name(model_version))

    def open_for_write(self, schema: pa.Schema) -> Any:
        """The table for ``schema``'s model (created on first use, with its scalar indexes and an empty
        state for every shard); refuses a table of another layout."""
        meta = _metadata(schema)
        model_version = meta["model_version"]
        dimensions, shard_count = int(meta["dimensions"]), int(meta["shard_count"])
        info = self.info(model_version)
        if info is None:
            table = self._create(model_version, schema, shard_count)
            return table if table is not None else self.open_for_write(schema)  # None: another process made it
        if (info.model_version, info.dimensions, info.shard_count) != (model_version, dimensions, shard_count):
            raise ConfigError(
                f"table {info.name} holds {info.model_version} ({info.dimensions}d, {info.shard_count} shards) "
                f"but the pipeline is configured for {model_version} ({dimensions}d, {shard_count} shards); "
                "a different shard count needs a new LanceDB location (EMBEDDING_ASSETS_LANCEDB_URI)"
            )
        table = self.table(model_version)
        self._add_columns(table, schema)
        self._ensure_indexes(table)
        return table

    def _add_columns(self, table: Any, schema: pa.Schema) -> None:
        """Give a table made by an older release the nullable columns of ``schema`` it lacks (``page``),
        all null: one commit, once, that rewrites no data. A writer adding them meanwhile is fine."""
        missing = [f for f in schema if f.nullable and f.name not in table.schema.names]
        if not missing:
            return
        try:
            table.add_columns(missing)
        except (RuntimeError, OSError, ValueError):  # another process added them first
            if any(f.name not in table.schema.names for f in missing):
                raise

    def _create(self, model_version: str, schema: pa.Schema, shard_count: int) -> Any | None:
        """A new table for ``schema`` with its indexes and an empty state per shard, or None when
        another process created it meanwhile. Its fresh id keeps the states a dropped table of the
        same name left behind from being taken for its own."""
        fresh = schema.with_metadata(_metadata(schema) | {TABLE_ID: uuid.uuid4().hex})
        try:
            table = self.db.create_table(table_name(model_version), schema=fresh)
        except ValueError as err:
            if "already exists" in str(err):
                return None
            raise
        self._indexed.discard(table.name)
        self._ensure_indexes(table)
        empty = [ShardState(s, set_hash(()), 0, 0, None, table.version, 0) for s in shard_keys(shard_count)]
        self._record_states(table, empty, fill=True)
        return table

    def shard_rows(self, model_version: str, shard: str, columns: Sequence[str] | None = None) -> pa.Table | None:
        """The rows stored for ``shard`` (found by the ``shard`` index), or None when the model has no
        table yet."""
        table = self.table(model_version)
        if table is None:
            return None
        query = table.search().where(f"shard = {sql_string(shard)}")
        return (query.select(list(columns)) if columns else query).to_arrow()

    def sample_rows(self, model_version: str, count: int, columns: Sequence[str], seed: str) -> pa.Table | None:
        """Up to ``count`` rows at random offsets of the whole table (None: no table): O(count) reads."""
        table = self.table(model_version)
        if table is None:
            return None
        total = table.count_rows()
        offsets = random.Random(seed).sample(range(total), min(count, total))
        return table.take_offsets(sorted(offsets)).select(list(columns)).to_arrow()

    def replace_shard(self, shard: str, rows: pa.Table) -> ShardWrite:
        """Make the table's rows for ``shard`` exactly ``rows`` (whose schema metadata names the model):
        a batch of one (``ShardWriteBatch``)."""
        batch = self.write_batch(rows.schema)
        batch.add(shard, rows)
        return batch.commit()[shard]

    def write_batch(self, schema: pa.Schema) -> "ShardWriteBatch":
        """A batch of shard writes to the table of ``schema``'s model, committed together."""
        return ShardWriteBatch(self, self.open_for_write(schema))

    def _upsert(self, table: Any, rows: pa.Table) -> Any:
        """The first commit of a batch's rows: its shards' new and changed rows, matched on ``chunk_id``."""
        return table.merge_insert("chunk_id").when_matched_update_all().when_not_matched_insert_all().execute(rows)

    def _delete_chunks(self, table: Any, chunk_ids: list[str], emptied: list[str]) -> int:
        """The second commit (one per ``DELETE_BATCH_IDS`` ids): the vanished chunk ids, found by the
        ``chunk_id`` index, and every row of the ``emptied`` shards (none of theirs remains), found by the
        ``shard`` index. Returns the table version after the last."""
        version = table.version
        if emptied:
            version = table.delete(f"shard IN ({', '.join(map(sql_string, emptied))})").version
        for start in range(0, len(chunk_ids), DELETE_BATCH_IDS):
            batch = chunk_ids[start : start + DELETE_BATCH_IDS]
            version = table.delete(f"chunk_id IN ({', '.join(map(sql_string, batch))})").version
        return int(version)

    def _mark_pending(self, table: Any, states: Sequence[ShardState]) -> None:
        """Before a batch's first commit: its shards' states match no source until the write records them."""
        self._record_states(table, states)

    def _record_written(self, table: Any, states: Sequence[ShardState]) -> None:
        """After a batch's last commit: the states of the rows it wrote."""
        self._record_states(table, states)

    def _record_states(self, table: Any, states: Sequence[ShardState], *, fill: bool = False) -> None:
        """Write shard states of ``table`` in one commit. With ``fill``, only where none of this table
        is recorded: what a concurrent write recorded meanwhile stays."""
        model_version = _metadata(table.schema)["model_version"]
        table_id = _metadata(table.schema).get(TABLE_ID, "")
        name = state_table_name(model_version)
        if name not in self._tables:
            self._tables[name] = self.db.create_table(name, schema=STATE_SCHEMA, exist_ok=True)
        self._add_columns(self._tables[name], STATE_SCHEMA)  # ``tokens``, on a table of an older release
        data = pa.Table.from_pylist(
            [dataclasses.asdict(s) | {"table_id": table_id} for s in states], schema=STATE_SCHEMA
        )
        merge = self._tables[name].merge_insert("shard")
        merge.when_matched_update_all(where="target.table_id != source.table_id" if fill else None)
        merge.when_not_matched_insert_all().execute(data)

    def _read_states(self, model_version: str, shard: str | None = None) -> dict[str, ShardState]:
        """The recorded states of the model table's shards (or of ``shard``): one read of the small
        table. Rows of another incarnation of the table are ignored; copies that disagree (two
        concurrent first records) read as pending."""
        table, state = self.table(model_version), self._state_table(model_version)
        if table is None or state is None:
            return {}
        query = state.search()
        if shard is not None:
            query = query.where(f"shard = {sql_string(shard)}")
        table_id = _metadata(table.schema).get(TABLE_ID, "")
        states: dict[str, ShardState] = {}
        for row in query.to_arrow().to_pylist():
            if row.pop("table_id") != table_id:
                continue
            recorded = ShardState(**row)
            seen = states.setdefault(recorded.shard, recorded)
            if not seen.same_content(recorded):
                states[recorded.shard] = dataclasses.replace(seen, fingerprint=PENDING)
        return states

    def _state_table(self, model_version: str) -> Any | None:
        name = state_table_name(model_version)
        if name not in self._tables and name in self.db.list_tables().tables:
            self._tables[name] = self.db.open_table(name)
        return self._tables.get(name)

    def _ensure_indexes(self, table: Any) -> None:
        """Create the scalar indexes ``table`` lacks (a table made by an older release has none)."""
        if table.name in self._indexed:
            return
        from lancedb.index import Bitmap, BTree

        def indexed() -> set[str]:
            return {column for index in table.list_indices() for column in index.columns}

        present = indexed()
        for column, kind in SCALAR_INDEXES.items():
            if column not in present:
                try:
                    table.create_index(column, config=BTree() if kind == "BTREE" else Bitmap(), replace=False)
                except (RuntimeError, OSError, ValueError):  # another process made it first (or is making it)
                    if column not in indexed():
                        raise
        self._indexed.add(table.name)

    def recorded_states(self, model_version: str) -> dict[str, ShardState]:
        """shard → its state as recorded (no table read): what ``index_matches_source`` holds against
        the rows. A shard missing here was never recorded (a table of an older release)."""
        return self._read_states(model_version)

    def shard_states(self, model_version: str, shards: Iterable[str]) -> dict[str, ShardState]:
        """shard → its state, for each of ``shards`` ({} when the model has no table): one read of the
        small state table. A shard an older release never recorded is computed from its rows (an
        indexed read of one shard) and recorded, once."""
        table = self.table(model_version)
        if table is None:
            return {}
        wanted = list(shards)
        states = self._read_states(model_version)
        missing = [s for s in wanted if s not in states]
        if missing:
            self._ensure_indexes(table)
            version = table.version  # before the reads: a write that lands meanwhile records a later one
            filled = [shard_state(s, self.shard_rows(model_version, s, STATE_COLUMNS), version) for s in missing]
            self._record_states(table, filled, fill=True)
            states |= {s.shard: s for s in filled}
        return {s: states[s] for s in wanted}

    def compact(self, model_version: str, min_small_fragments: int = COMPACT_AFTER_SMALL_FRAGMENTS) -> int | None:
        """Merge the table's small fragments (every shard commit adds some) once there are at least
        ``min_small_fragments``, keeping old versions for a week. Returns the fragments before, or None
        when nothing was done. Searches slow down as fragments pile up; compaction restores them.

        It also folds the rows written since into the scalar indexes: until then a filtered read scans
        them (0.2-0.6 ms per 1,000 rows, measured), so this bounds that cost by the rows that
        ``min_small_fragments`` shard writes change. The vector index is ``maintain_vector_index``'s
        (``lance_upkeep``: LanceDB's ``optimize`` would rebuild it here). The state table (two one-row commits per shard
        write, each a fragment that every stale detection opens) is compacted after fewer."""
        state = self._state_table(model_version)
        if state is not None:
            pieces = state.stats()["fragment_stats"]["num_fragments"]
            if pieces >= min(min_small_fragments, STATE_COMPACT_AFTER_FRAGMENTS):
                state.optimize(cleanup_older_than=timedelta(days=7))
        table = self.table(model_version)
        if table is None:
            return None
        fragments = table.stats()["fragment_stats"]  # a dict, despite the annotation
        if fragments["num_small_fragments"] < min_small_fragments:
            return None
        scalar = _scalar_index_names(table)
        lance_upkeep.compact(table, scalar)
        return int(fragments["num_fragments"])

    def index_new_rows(self, model_version: str, min_rows: int = UNINDEXED_ROWS_MIN) -> int | None:
        """Fold the rows written since into the scalar indexes once more than ``unindexed_rows_allowed``
        are outside them. Compaction does it too, but a batch of shards is one commit of many rows in
        few fragments: a first ingest would otherwise leave every row unindexed, and every shard read
        and merge would scan the table. Returns the rows folded in, or None when nothing was done."""
        table = self.table(model_version)
        if table is None:
            return None
        scalar = _scalar_index_names(table)
        stats = [table.index_stats(name) for name in scalar]
        outside = max((s.num_unindexed_rows for s in stats if s is not None), default=0)
        inside = min((s.num_indexed_rows for s in stats if s is not None), default=0)
        if outside <= unindexed_rows_allowed(inside, min_rows):
            return None
        lance_upkeep.fold_into_scalar_indexes(table, scalar)
        return outside

    def search(self, model_version: str, vector: np.ndarray, k: int = 10) -> pa.Table:
        """Top-``k`` chunks by cosine similarity, with a ``score`` column (1 = identical direction),
        through the table's vector index when it has one (``ann.query_options``: nprobes, and the exact
        re-rank that keeps scores cosine), else an exact scan. The schema metadata says which
        (``vector_index``, empty for exact) and how long the query took (``search_ms``)."""
        table = self.table(model_version)
        if table is None:
            raise LookupError(f"no table for {model_version} in {self.uri}; materialize the pipeline first")
        columns = ["chunk_id", "doc_id", "shard", "text"] + ["page"] * ("page" in table.schema.names)
        index = ann.state(table)
        started = time.perf_counter()
        query = ann.vector_query(table, vector, k, exact=index is None, **ann.query_options(index))
        hits = query.select([*columns, "_distance"]).to_arrow()
        elapsed_ms = (time.perf_counter() - started) * 1000
        scores = pc.subtract(1.0, hits.column("_distance"))
        found = hits.drop_columns(["_distance"]).append_column("score", scores)
        return found.replace_schema_metadata(
            {"vector_index": index.name if index else "", "search_ms": f"{elapsed_ms:.2f}"}
        )

    def vector_index(self, model_version: str) -> "ann.IndexState | None":
        """The table's vector index (None: none yet, or no table)."""
        table = self.table(model_version)
        return None if table is None else ann.state(table)

    def maintain_vector_index(self, model_version: str, min_rows: int) -> "ann.Maintained | None":
        """Build, refresh or retrain the table's vector index (``ann.maintain``); None without a table."""
        info, table = self.info(model_version), self.table(model_version)
        if info is None or table is None:
            return None
        return ann.maintain(table, info.dimensions, min_rows)

    def ann_recall(self, model_version: str, sample: int, seed: int = 0, **options: int) -> "ann.Recall | None":
        """Recall@10 of the indexed search against exact search, for ``sample`` stored vectors as
        queries (None: no table, or no index)."""
        table = self.table(model_version)
        if table is None or ann.state(table) is None:
            return None
        queries = ann.sample_vectors(table, sample, np.random.default_rng(seed))
        return ann.measure_recall(table, queries, **options)

    def expired_shards(self, model_version: str, before: datetime) -> list[str]:
        """Shards holding vectors embedded before ``before`` (a UTC moment), from the shard states (a
        pending state keeps the older of its old and new rows' oldest)."""
        info = self.info(model_version)
        if info is None:
            return []
        states = self.shard_states(model_version, shard_keys(info.shard_count))
        return [s for s, state in states.items() if state.oldest_embedded_at and state.oldest_embedded_at < before]

    def documents_present(self, model_version: str, doc_ids: Iterable[str]) -> set[str]:
        """Which of ``doc_ids`` have rows in the model's table: one read through the doc_id index."""
        table, wanted = self.table(model_version), sorted(set(doc_ids))
        if table is None or not wanted:
            return set()
        found = table.search().where(f"doc_id IN ({', '.join(map(sql_string, wanted))})").select(["doc_id"])
        return set(found.limit(None).to_arrow().column("doc_id").to_pylist())

    def shard_counts(self, model_version: str) -> dict[str, int]:
        """shard → rows stored, for the shards that hold any: one indexed count per shard."""
        info, table = self.info(model_version), self.table(model_version)
        if info is None or table is None:
            return {}
        counts = {s: table.count_rows(f"shard = {sql_string(s)}") for s in shard_keys(info.shard_count)}
        return {s: n for s, n in counts.items() if n}


class ShardWriteBatch:
    """Writes of several shards of one table in the commits of one: a pending mark for every changed
    shard, one upsert of their new and changed rows, the deletes of their vanished ids, then their
    states (four commits a shard were most of a small refresh's table time). What a reader or a crash
    can see in between is what it sees of a single shard's write, for every shard of the batch at
    once. The caller holds each shard's lock from ``add`` to ``commit``; only changed rows are kept."""

    def __init__(self, store: VectorStore, table: Any) -> None:
        self.store, self.table = store, table
        self.model_version = _metadata(table.schema)["model_version"]
        self.upserts: list[pa.Table] = []
        self.vanished: list[str] = []
        self.emptied: list[str] = []
        self.pending: list[ShardState] = []
        self.written: list[ShardState] = []
        self.repaired: list[ShardState] = []
        self.counts: dict[str, tuple[int, int, int, int]] = {}  # shard → inserted, updated, deleted, unchanged

    @property
    def nbytes(self) -> int:
        """The changed rows held until ``commit``."""
        return sum(t.nbytes for t in self.upserts)

    def add(self, shard: str, rows: pa.Table) -> None:
        """Plan making the table's rows for ``shard`` exactly ``rows``: its diff against the stored rows
        (nothing, beyond repairing a state that disagrees with them, if they are equal)."""
        table = self.table
        rows = rows.select(table.schema.names).cast(table.schema)
        if set(rows.column("shard").unique().to_pylist()) - {shard} or shard in self.counts:
            raise ValueError(f"rows for shard {shard} contain rows of other shards, or came twice")
        version = table.version
        stored = self.store.shard_rows(self.model_version, shard, ["chunk_id", "doc_id", *CHANGE_COLUMNS])
        new, changed, deleted = _diff(stored, rows)
        recorded = self.store._read_states(self.model_version, shard).get(shard)
        self.counts[shard] = (len(new), len(changed), len(deleted), rows.num_rows - len(new) - len(changed))
        if not (new or changed or deleted):
            after = shard_state(shard, rows, version)  # every pair hashed: this is where a wrong record is repaired
            if not after.same_content(recorded):
                self.repaired.append(after)  # a write that died before its state: repaired here
            return
        after = shard_state(shard, rows, version, recorded, stored)
        stamps = [t for t in (after.oldest_embedded_at, _oldest(stored)) if t is not None]
        self.pending.append(
            dataclasses.replace(after, fingerprint=PENDING, oldest_embedded_at=min(stamps, default=None))
        )
        self.written.append(after)
        if new or changed:
            self.upserts.append(
                rows.filter(pc.is_in(rows.column("chunk_id"), pa.array(sorted(new | changed), pa.string())))
            )
        if rows.num_rows == 0:
            self.emptied.append(shard)
        else:
            self.vanished.extend(sorted(deleted))

    def commit(self) -> dict[str, ShardWrite]:
        """Commit what ``add`` planned: shard → its write (none commits for a batch without changes)."""
        table, store = self.table, self.store
        version, attempts = table.version, 0
        if self.written:
            store._mark_pending(table, self.pending)
            if self.upserts:
                result = store._upsert(table, pa.concat_tables(self.upserts))
                version, attempts = result.version, result.num_attempts
            if self.vanished or self.emptied:
                version = store._delete_chunks(table, self.vanished, self.emptied)
            written = [dataclasses.replace(s, table_version=version) for s in self.written]
            store._record_written(table, written + self.repaired)
        elif self.repaired:
            store._record_states(table, self.repaired)
        return {
            shard: ShardWrite(*counts, version, attempts if counts[0] or counts[1] else 0)
            for shard, counts in self.counts.items()
        }


def _metadata(schema: pa.Schema) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}


def _scalar_index_names(table: Any) -> list[str]:
    """The names of ``table``'s scalar indexes (those on ``SCALAR_INDEXES``' columns), which compaction
    and ``index_new_rows`` fold new rows into."""
    return [i.name for i in table.list_indices() if set(i.columns) & SCALAR_INDEXES.keys()]


def _distinct_pairs(rows: pa.Table | None) -> pa.Table:
    """The distinct (doc_id, doc_hash) pairs of ``rows``, in Arrow (a shard has a row per chunk)."""
    if rows is None or rows.num_rows == 0:
        return pa.table({"doc_id": pa.array([], pa.string()), "doc_hash": pa.array([], pa.string())})
    return rows.select(["doc_id", "doc_hash"]).group_by(["doc_id", "doc_hash"]).aggregate([])


def document_keys(rows: pa.Table) -> pa.ChunkedArray:
    """Each row's document and its hash as one string: what says a staged chunk still belongs to its
    document, and which (doc_id, doc_hash) pairs a write adds or removes."""
    return pc.binary_join_element_wise(rows.column("doc_id"), rows.column("doc_hash"), DOCUMENT_KEY_SEPARATOR)


def _as_tuples(pairs: pa.Table) -> set[tuple[str, str]]:
    return set(zip(pairs.column("doc_id").to_pylist(), pairs.column("doc_hash").to_pylist(), strict=True))


def _oldest(rows: pa.Table | None) -> datetime | None:
    return pc.min(rows.column("embedded_at")).as_py() if rows is not None and rows.num_rows else None


def _diff(stored: pa.Table | None, rows: pa.Table) -> tuple[set[str], set[str], set[str]]:
    """(new, changed, deleted) chunk ids between the stored shard and the rows to write, in Arrow (a
    shard's timestamps as Python objects cost more than its commits)."""
    ids = rows.column("chunk_id").combine_chunks()
    if len(pc.unique(ids)) != rows.num_rows:
        raise ValueError("rows to write contain duplicate chunk ids")
    if stored is None or stored.num_rows == 0:
        return set(ids.to_pylist()), set(), set()
    stored_ids = stored.column("chunk_id").combine_chunks()
    new = ids.filter(pc.invert(pc.is_in(ids, value_set=stored_ids)))
    deleted = stored_ids.filter(pc.invert(pc.is_in(stored_ids, value_set=ids)))
    keys = ["chunk_id", *CHANGE_COLUMNS]
    both = rows.select(keys).join(stored.select(keys), "chunk_id", join_type="inner", right_suffix="_stored")
    differs = functools.reduce(pc.or_, [pc.not_equal(both[c], both[f"{c}_stored"]) for c in CHANGE_COLUMNS])
    changed = both.filter(differs).column("chunk_id")
    return set(new.to_pylist()), set(changed.to_pylist()), set(deleted.to_pylist())
