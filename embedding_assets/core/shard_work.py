"""One shard's unit of work: the four pipeline stages for that shard, as the Dagster assets call them.

raw documents → chunks → embeddings → vector table. Each stage streams its input in bounded
batches and writes its output atomically, so a stage can be re-run any number of times.
A ``ShardWork`` knows the shard's staged files and their keys, and reads the shard's stored rows at
most once; the assets make a fresh one for each step, inside the shard's lock, so what a step reads
is what it writes from.

Work is proportional to change. Every staged file carries a key in its footer: the raw file the
hash of the documents it holds, every later file the hash of its input's key and of the code that
made it (chunker, model). A stage whose output already has the key its input calls for does
nothing; otherwise the chunker re-cuts only documents whose hash changed and the embedder embeds
only chunks whose text it has not embedded before.
"""

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from embedding_assets.core.chunking import Chunk, ChunkingConfig, chunk_document
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.hashing import Hasher, columns_digest
from embedding_assets.core.sources import Document, Item, Skip
from embedding_assets.core.staging import BATCH_ROWS, Row, Staging
from embedding_assets.core.store import VectorStore, document_keys, row_schema, table_name

RAW_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("doc_hash", pa.string()),
        ("source_path", pa.string()),
        ("text", pa.string()),
        ("encoding", pa.string()),  # the encoding detected for a text that is not UTF-8; null otherwise
    ]
)
CHUNK_SCHEMA = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("shard", pa.string()),
        ("position", pa.int32()),
        ("text", pa.string()),
        ("chunk_hash", pa.string()),
        ("doc_hash", pa.string()),
        ("token_count", pa.int32()),
        ("page", pa.int32()),  # the chunk's page (from 1) in a paged document (PDF); null otherwise
    ]
)
EMBED_BATCH_ROWS = 256  # texts per embedding request
# Rows of the chunks file taken together, so that a shard's few new chunks go to the model in one
# request (on 2 cores, requests of one text ran at 0.6x requests of five), not one per 256-row batch.
EMBED_GROUP_ROWS = 2048
KEY = "embedding_assets.key"  # footer metadata: what a staged file was derived from
MADE_BY = "embedding_assets.made_by"  # footer metadata: the code that made it (chunker or model identity)
INDEX = "embedding_assets.index"  # footer metadata: the index the file was staged for
GENERATION = "embedding_assets.generation"  # raw documents' footer: the change index generation they reflect
RAW_KEY_COLUMNS = ("doc_id", "doc_hash", "source_path")  # what a raw file's key hashes, row by row
RAW_STATS = "embedding_assets.raw_stats"  # raw documents' footer: characters, skips and encodings, as JSON


@dataclass(frozen=True)
class RawStats:
    documents: int
    characters: int
    skipped: list[Skip] = field(default_factory=list)
    encodings: dict[str, str] = field(default_factory=dict)  # doc_id → encoding detected, for texts not in UTF-8


@dataclass(frozen=True)
class Kept:
    """A run of consecutive documents whose staged copies already have the hashes the change index
    lists (``Index.listing``): a re-read copies them from the staged file column-wise."""

    doc_ids: pa.Array
    doc_hashes: pa.Array
    rows: pa.Array  # their row numbers in the staged copy the listing was given

    def __len__(self) -> int:
        return len(self.doc_ids)


class _StagedDocuments:
    """The shard's staged raw file as a re-read sees it: read once, on first use, and copied by row
    number into the new file (so kept documents never become Python objects)."""

    def __init__(self, staging: Staging, path: Path) -> None:
        self.staging, self.path = staging, path

    @cached_property
    def table(self) -> pa.Table:
        staged = self.staging.read(self.path)
        if "encoding" not in staged.column_names:  # staged before encodings were detected: all UTF-8
            staged = staged.append_column("encoding", pa.nulls(staged.num_rows, pa.string()))
        return staged.select(RAW_SCHEMA.names).cast(RAW_SCHEMA)

    def in_order(self, parts: list[pa.Table | pa.Array]) -> list[pa.Table]:
        """``parts`` as tables, each array of staged row numbers replaced by those rows (one take for all)."""
        numbers = [part for part in parts if isinstance(part, pa.Array)]
        if not numbers:  # all fresh (a first read needs no staged file)
            return [part for part in parts if isinstance(part, pa.Table)]
        taken = self.table.take(pa.concat_arrays(numbers))
        tables, offset = [], 0
        for part in parts:
            if isinstance(part, pa.Array):
                tables.append(taken.slice(offset, len(part)))
                offset += len(part)
            else:
                tables.append(part)
        return tables

    def document(self, doc_id: str) -> Document:
        row = self.table.slice(pc.index(self.table.column("doc_id"), doc_id).as_py(), 1).to_pylist()[0]
        return Document(row["doc_id"], row["text"], row["doc_hash"], row["source_path"], row["encoding"])


@dataclass(frozen=True)
class ChunkStats:
    documents: int
    chunks: int
    tokens: int
    rechunked: int  # documents cut by the chunker in this run; the others kept their chunks


@dataclass(frozen=True)
class EmbedStats:
    chunks: int
    embedded: int
    reused: int
    tokens_embedded: int
    dimensions: int


@dataclass(frozen=True)
class ShardWork:
    """The stages of one shard. Paths and keys are computed once; the stored rows are read at most once."""

    shard: str
    shard_count: int
    staging: Staging
    store: VectorStore
    embedder: Embedder
    chunking: ChunkingConfig
    expire_before: datetime | None = None
    index_id: str = ""  # the index this staging belongs to: in every key and footer, checked before a commit

    @property
    def model_version(self) -> str:
        return self.embedder.model_version

    @cached_property
    def raw_path(self) -> Path:
        return self.staging.path("raw_documents", self.shard)

    @cached_property
    def chunks_path(self) -> Path:
        """Per chunking profile, so models with different tokenizers never overwrite each other's chunks."""
        return self.staging.path("chunks", self.shard, chunk_profile(self.embedder))

    @cached_property
    def embeddings_path(self) -> Path:
        """Per model table, so two models' vectors of one shard never overwrite each other."""
        return self.staging.path("embeddings", self.shard, table_name(self.model_version))

    @cached_property
    def chunker_identity(self) -> str:
        return chunker_identity(self.chunking, self.embedder)

    def read_raw_documents(self, items: Iterable[Item | Kept], generation: int = 0) -> RawStats:
        """Stage the shard's documents (``Index.listing``); skips are counted, not staged, and ``Kept``
        documents are copied from the staged file column-wise. The file's key is the hash of every
        (doc_id, doc_hash, source_path) it holds, in order; it also records the change index's
        ``generation`` the documents are at least as new as. Fresh documents stream in batches."""
        skipped: list[Skip] = []
        encodings: dict[str, str] = {}
        characters = documents = pending = 0
        footer = {GENERATION: str(generation), INDEX: self.index_id}
        batch: list[pa.Table | pa.Array] = []  # the next rows, in order: fresh rows, or kept rows' numbers
        fresh: list[Row] = []  # the fresh run being read
        written: list[pa.Table] = []  # what the file holds so far, for its key

        def close_fresh() -> None:
            if fresh:
                batch.append(pa.Table.from_pylist(fresh, RAW_SCHEMA))
                fresh.clear()

        def flush(writer: pq.ParquetWriter) -> None:
            nonlocal characters, documents, pending
            close_fresh()
            rows = pa.concat_tables(self._staged.in_order(batch))
            writer.write_table(rows, row_group_size=BATCH_ROWS)
            written.append(rows.select(RAW_KEY_COLUMNS))
            characters += pc.sum(pc.utf8_length(rows.column("text"))).as_py() or 0
            documents += rows.num_rows
            detected = rows.filter(pc.is_valid(rows.column("encoding"))).select(["doc_id", "encoding"])
            encodings.update((row["doc_id"], row["encoding"]) for row in detected.to_pylist())
            batch.clear()
            pending = 0

        with self.staging.writer(self.raw_path, RAW_SCHEMA, footer) as writer:
            for item in items:
                if isinstance(item, Skip):
                    skipped.append(item)
                    continue
                if isinstance(item, Kept):
                    close_fresh()
                    batch.append(item.rows)
                    pending += len(item)
                else:
                    fresh.append(_raw_row(item))
                    pending += 1
                if pending >= BATCH_ROWS:
                    flush(writer)
            if pending:
                flush(writer)
            held = pa.concat_tables(written) if written else RAW_SCHEMA.empty_table().select(RAW_KEY_COLUMNS)
            footer[KEY] = columns_digest(self.index_id, [held.column(c) for c in RAW_KEY_COLUMNS])
            skips = [[s.doc_id, s.reason] for s in skipped]
            footer[RAW_STATS] = json.dumps({"characters": characters, "skipped": skips, "encodings": encodings})
        return RawStats(documents, characters, skipped, encodings)

    def staged_raw_stats(self, generation: int) -> RawStats | None:
        """The staged documents' stats if they already reflect the change index's ``generation`` for
        this shard (a shard a run passes through unchanged), else None. Then the documents a re-read
        would stage are exactly these, so nothing needs reading or writing."""
        footer = self.staging.metadata(self.raw_path)
        if footer.get(GENERATION) != str(generation) or footer.get(INDEX) != self.index_id or RAW_STATS not in footer:
            return None
        stats = json.loads(footer[RAW_STATS])
        skipped = [Skip(doc_id, reason) for doc_id, reason in stats["skipped"]]
        return RawStats(self.staging.row_count(self.raw_path) or 0, stats["characters"], skipped, stats["encodings"])

    def source_generation(self) -> int:
        """The change index's generation the staged documents reflect (0 before the first run)."""
        return int(self.staging.metadata(self.raw_path).get(GENERATION, "0"))

    def staged_keys(self) -> pa.Table | None:
        """The doc_id and doc_hash of the shard's staged raw documents, in the file's order (None before
        the first run): what a re-read may keep (``Index.listing``)."""
        if not self.raw_path.exists():
            return None
        return self.staging.read(self.raw_path, ["doc_id", "doc_hash"])

    def staged_document(self, doc_id: str) -> Document:
        """The staged copy of ``doc_id`` (a ``Kept`` document; the file is read once per unit of work)."""
        return self._staged.document(doc_id)

    @cached_property
    def _staged(self) -> _StagedDocuments:
        return _StagedDocuments(self.staging, self.raw_path)

    def chunk(self) -> ChunkStats:
        """Chunk every document of the shard with the embedder's own tokenizer. A document whose hash
        is unchanged keeps the chunks it had (same chunker); nothing is rewritten when none changed."""
        staging, out, made_by = self.staging, self.chunks_path, self.chunker_identity
        key = _derived_key(staging, self.raw_path, made_by)
        if key is not None and staging.metadata(out).get(KEY) == key:
            return _chunk_stats(staging.read(out, ["doc_id", "token_count"]), rechunked=0)
        footer = {KEY: key or "", MADE_BY: made_by, INDEX: self.index_id}
        previous = self.staged_chunks()
        if previous is None:  # the first cut, or another chunker: every document, streamed
            return self._chunk_all(footer)
        # A re-cut: column-wise, so an edit of a few documents costs Arrow's time per row, not Python's.
        documents = staging.read(self.raw_path)
        kept = previous.filter(pc.is_in(document_keys(previous), value_set=document_keys(documents)))
        changed = documents.filter(pc.invert(pc.is_in(document_keys(documents), value_set=document_keys(kept))))
        cut = pa.Table.from_pylist(
            list(self._cut(changed.select(["doc_id", "text", "doc_hash"]).to_pylist())), CHUNK_SCHEMA
        )
        chunks = pa.concat_tables([_with_page(kept).select(CHUNK_SCHEMA.names).cast(CHUNK_SCHEMA), cut])
        order = pc.index_in(chunks.column("doc_id"), value_set=documents.column("doc_id"))  # the documents' order
        chunks = chunks.append_column("order", order).sort_by([("order", "ascending"), ("position", "ascending")])
        with staging.writer(out, CHUNK_SCHEMA, footer) as writer:
            writer.write_table(chunks.drop_columns(["order"]), row_group_size=BATCH_ROWS)
        return ChunkStats(
            documents.num_rows, chunks.num_rows, pc.sum(chunks.column("token_count")).as_py() or 0, changed.num_rows
        )

    def _chunk_all(self, footer: dict[str, str]) -> ChunkStats:
        """Cut every staged document, streaming the raw file in batches (memory bounded by a batch)."""
        totals = {"documents": 0, "tokens": 0}

        def rows() -> Iterator[Row]:
            for batch in self.staging.read_batches(self.raw_path):
                documents = batch.select(["doc_id", "text", "doc_hash"]).to_pylist()
                totals["documents"] += len(documents)
                for row in self._cut(documents):
                    totals["tokens"] += row["token_count"]
                    yield row

        chunks = self.staging.write_rows(self.chunks_path, CHUNK_SCHEMA, rows(), footer)
        return ChunkStats(totals["documents"], chunks, totals["tokens"], totals["documents"])

    def _cut(self, documents: Iterable[Row]) -> Iterator[Row]:
        """The chunk rows of raw document rows (doc_id, text, doc_hash), in order."""
        count_tokens = self.embedder.count_tokens
        for doc in documents:
            for chunk in chunk_document(doc["doc_id"], doc["text"], self.chunking, count_tokens):
                yield _chunk_row(chunk, self.shard, doc["doc_hash"])

    def staged_chunks(self, columns: Sequence[str] | None = None) -> pa.Table | None:
        """The staged chunks (only ``columns``, if given) if this chunker and tokenizer made them, else None."""
        if self.staging.metadata(self.chunks_path).get(MADE_BY) != self.chunker_identity:
            return None
        return self.staging.read(self.chunks_path, list(columns) if columns else None)

    def tokens_to_embed(self) -> int:
        """Tokens ``embed`` would send to the model for this shard now (what the run budget counts)."""
        if self._embeddings_up_to_date:
            return 0
        chunks = self.staging.read(self.chunks_path, ["chunk_hash", "token_count"])
        new = self._stored_hashes.rows_of(chunks.column("chunk_hash")) < 0
        return int(chunks.column("token_count").to_numpy()[new].sum())

    def new_chunks(self) -> pa.Table:
        """The ``chunk_hash`` and ``text`` of the chunks ``embed`` would send to the model now."""
        if self._embeddings_up_to_date:
            return pa.table({"chunk_hash": pa.array([], pa.string()), "text": pa.array([], pa.string())})
        chunks = self.staging.read(self.chunks_path, ["chunk_hash", "text"])
        return chunks.filter(pa.array(self._stored_hashes.rows_of(chunks.column("chunk_hash")) < 0))

    def embed(self, now: datetime | None = None, pooled: Mapping[str, np.ndarray] | None = None) -> EmbedStats:
        """Vectors for the shard's chunks: reused from the table when this model already embedded the
        same ``chunk_hash`` (keeping its ``embedded_at``) after ``expire_before``, taken from ``pooled``
        (vectors the run made for several shards at once, by chunk_hash), computed otherwise. Rows get
        the table's exact schema."""
        embedder, staging, out, model = self.embedder, self.staging, self.embeddings_path, self.model_version
        if self._embeddings_up_to_date:
            count = staging.row_count(out) or 0
            return EmbedStats(count, 0, count, 0, embedder.dimensions)
        schema = row_schema(
            embedder.dimensions,
            model_version=model,
            shard_count=self.shard_count,
            model_spec=embedder.spec,
            requested_dimensions=embedder.requested_dimensions,
        )
        now_us = np.datetime64((now or datetime.now(UTC)).replace(tzinfo=None), "us")
        stored, dimensions = self._stored_with_vectors, embedder.dimensions
        embedded = reused = tokens = 0
        # Each chunk's stored row with the same text (-1: new text), found once for the file.
        reusable = stored.rows_of(staging.read(self.chunks_path, ["chunk_hash"]).column("chunk_hash"))
        with staging.writer(out, schema, {KEY: self._embeddings_key or "", INDEX: self.index_id}) as writer:
            for group, at in _embedding_groups(staging.read_batches(self.chunks_path, EMBED_BATCH_ROWS), reusable):
                missing, kept = np.flatnonzero(at < 0), np.flatnonzero(at >= 0)
                matrix = np.empty((len(at), dimensions), dtype=np.float32)
                stamps = np.full(len(at), now_us)
                if len(kept):  # vectors this model already made for the same text, copied column-wise
                    matrix[kept], stamps[kept] = stored.vectors[at[kept]], stored.embedded_at[at[kept]]
                to_model = missing
                if pooled and len(missing):
                    hashes = group.column("chunk_hash").take(pa.array(missing)).to_pylist()
                    found = np.array([h in pooled for h in hashes])
                    if found.any():
                        matrix[missing[found]] = [pooled[h] for h in hashes if h in pooled]
                    to_model = missing[~found]
                for start in range(0, len(to_model), EMBED_BATCH_ROWS):
                    request = to_model[start : start + EMBED_BATCH_ROWS]
                    texts = group.column("text").take(pa.array(request)).to_pylist()
                    matrix[request] = checked_vectors(embedder, embedder.embed(texts), len(request))
                tokens += int(group.column("token_count").to_numpy()[missing].sum())
                embedded += len(missing)
                reused += len(kept)
                vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), dimensions)
                writer.write_table(
                    _with_page(group)
                    .select(CHUNK_SCHEMA.names)
                    .append_column("vector", vectors)
                    .append_column("model_version", pa.array([model] * len(at)))
                    .append_column("embedded_at", pa.array(stamps).cast(schema.field("embedded_at").type))
                    .select(schema.names)
                    .cast(schema)
                )
        return EmbedStats(embedded + reused, embedded, reused, tokens, embedder.dimensions)

    def rows_to_write(self) -> pa.Table:
        """The staged embeddings, the shard's rows in the model's LanceDB table once written
        (``table_writes``). Refuses a file staged for another index (a staging folder copied or mounted
        by hand)."""
        staged_for = self.staging.metadata(self.embeddings_path).get(INDEX, "")
        if staged_for != self.index_id:
            raise ConfigError(
                f"{self.embeddings_path} was staged for index {staged_for or '(unknown)'}, not this one "
                f"({self.index_id}); staging folders belong to one index: re-materialize {self.shard}"
            )
        return _with_page(self.staging.read(self.embeddings_path))

    @cached_property
    def _embeddings_key(self) -> str | None:
        return _derived_key(self.staging, self.chunks_path, self.model_version)

    @cached_property
    def _embeddings_up_to_date(self) -> bool:
        """Whether the staged embeddings were made from the current chunks by this model and none expired."""
        key, staging, path = self._embeddings_key, self.staging, self.embeddings_path
        if key is None or staging.metadata(path).get(KEY) != key:
            return False
        oldest = pc.min(staging.read(path, ["embedded_at"]).column("embedded_at")).as_py()
        return self.expire_before is None or oldest is None or oldest >= self.expire_before

    @cached_property
    def _stored_with_vectors(self) -> "StoredVectors":
        """The shard's unexpired stored rows by chunk_hash: one read, vectors included."""
        return _stored_vectors(self.store, self.model_version, self.shard, self.expire_before, self.embedder.dimensions)

    @cached_property
    def _stored_hashes(self) -> "StoredVectors":
        """The shard's unexpired stored rows by chunk_hash, without their vectors (what the budget pass needs)."""
        return _stored_vectors(self.store, self.model_version, self.shard, self.expire_before)


def _embedding_groups(batches: Iterable[pa.RecordBatch], reusable: np.ndarray) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """The chunks file's batches, taken together in order until a group holds ``EMBED_GROUP_ROWS`` rows
    or ``EMBED_BATCH_ROWS`` chunks to embed, each with its rows' slice of ``reusable`` (< 0: to embed)."""
    pending: list[pa.RecordBatch] = []
    start = rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        at = reusable[start : start + rows]
        if rows >= EMBED_GROUP_ROWS or int((at < 0).sum()) >= EMBED_BATCH_ROWS:
            yield pa.Table.from_batches(pending), at
            pending, start, rows = [], start + rows, 0
    if pending:
        yield pa.Table.from_batches(pending), reusable[start : start + rows]


def chunk_profile(embedder: Embedder) -> str:
    """The name of the chunks a model reads: its tokenizer's (chunks are sized in its tokens)."""
    return re.sub(r"[^a-z0-9]+", "_", embedder.tokenizer_id.lower()).strip("_")


def chunker_identity(chunking: ChunkingConfig, embedder: Embedder) -> str:
    """The chunker, its sizes and the tokenizer: what cut a shard's chunks. A change re-cuts every document."""
    return f"{chunking.identity}/{embedder.tokenizer_id}"


def _chunk_row(chunk: Chunk, shard: str, doc_hash: str) -> Row:
    return {
        "chunk_id": chunk.chunk_id,
        "doc_id": chunk.doc_id,
        "shard": shard,
        "position": chunk.position,
        "text": chunk.text,
        "chunk_hash": chunk.chunk_hash,
        "doc_hash": doc_hash,
        "token_count": chunk.token_count,
        "page": chunk.page,
    }


def _raw_row(doc: Document) -> Row:
    return {
        "doc_id": doc.doc_id,
        "doc_hash": doc.doc_hash,
        "source_path": doc.source_path,
        "text": doc.text,
        "encoding": doc.encoding,
    }


def _with_page(chunks: pa.Table) -> pa.Table:
    """Staged chunks or embeddings with their ``page`` column (null in a file staged before chunks had
    pages, when every document was unpaged)."""
    if "page" in chunks.column_names:
        return chunks
    return chunks.append_column("page", pa.nulls(chunks.num_rows, pa.int32()))


def _derived_key(staging: Staging, source: Path, made_by: str) -> str | None:
    """The key of what ``made_by`` makes from the staged file ``source`` (None if that file has no key)."""
    upstream = staging.metadata(source).get(KEY)
    return Hasher().update(upstream, made_by).hexdigest() if upstream else None


def _chunk_stats(chunks: pa.Table, rechunked: int) -> ChunkStats:
    return ChunkStats(
        pc.count_distinct(chunks.column("doc_id")).as_py(),
        chunks.num_rows,
        pc.sum(chunks.column("token_count")).as_py() or 0,
        rechunked,
    )


@dataclass(frozen=True)
class StoredVectors:
    """A shard's unexpired stored rows, column-wise: their ``chunk_hashes``, ``vectors`` (float32, one
    per row; none when read without them) and ``embedded_at`` (microseconds, UTC)."""

    chunk_hashes: pa.Array
    vectors: np.ndarray
    embedded_at: np.ndarray

    def rows_of(self, chunk_hashes: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """For each of ``chunk_hashes``, a stored row with that text (-1: none), found column-wise."""
        found = pc.fill_null(pc.index_in(chunk_hashes, value_set=self.chunk_hashes), -1)
        return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64)


def _stored_vectors(
    store: VectorStore, model_version: str, shard: str, expire_before: datetime | None, dimensions: int = 0
) -> StoredVectors:
    """The shard's stored rows that have not expired, with their vectors when ``dimensions`` is given:
    numbers stay in numpy arrays (a Python float costs eight times a float32, and time to make)."""
    stored = store.shard_rows(model_version, shard, ["chunk_hash", "embedded_at"] + ["vector"] * bool(dimensions))
    if stored is None:
        return StoredVectors(
            pa.array([], pa.string()), np.empty((0, dimensions), np.float32), np.empty(0, "datetime64[us]")
        )
    if expire_before is not None:
        stored = stored.filter(pc.greater_equal(stored.column("embedded_at"), pa.scalar(expire_before)))
    vectors = np.empty((stored.num_rows, 0), np.float32)
    if dimensions:
        flat = stored.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vectors = flat.astype(np.float32, copy=False).reshape(stored.num_rows, dimensions)
    stamps = stored.column("embedded_at").cast(pa.timestamp("us")).to_numpy(zero_copy_only=False)
    return StoredVectors(stored.column("chunk_hash").combine_chunks(), vectors, stamps)


def checked_vectors(embedder: Embedder, vectors: Any, count: int) -> np.ndarray:
    """The embedder's ``vectors`` as a float32 matrix, refused unless it is ``count`` x its dimensions."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.shape != (count, embedder.dimensions):
        raise ValueError(
            f"{embedder.model_version} returned vectors of shape {matrix.shape} for {count} texts; "
            f"expected ({count}, {embedder.dimensions})"
        )
    return matrix
