"""The four pipeline stages for one shard, as plain functions the Dagster assets call.

raw documents → chunks → embeddings → vector table. Each stage streams its input in bounded
batches and writes its output atomically, so a stage can be re-run any number of times.

Work is proportional to change. Every staged file carries a key in its footer: the raw file the
hash of the documents it holds, every later file the hash of its input's key and of the code that
made it (chunker, model). A stage whose output already has the key its input calls for does
nothing; otherwise the chunker re-cuts only documents whose hash changed and the embedder embeds
only chunks whose text it has not embedded before.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embedding_assets.core.chunking import ChunkingConfig, chunk_document
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.hashing import Hasher
from embedding_assets.core.sources import Document, Skip, SourceFolder
from embedding_assets.core.staging import Staging
from embedding_assets.core.store import ShardWrite, VectorStore, row_schema

RAW_SCHEMA = pa.schema(
    [("doc_id", pa.string()), ("doc_hash", pa.string()), ("source_path", pa.string()), ("text", pa.string())]
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
    ]
)
EMBED_BATCH_ROWS = 256
KEY = "embedding_assets.key"  # footer metadata: what a staged file was derived from
MADE_BY = "embedding_assets.made_by"  # footer metadata: the code that made it (chunker or model identity)


@dataclass(frozen=True)
class RawStats:
    documents: int
    characters: int
    skipped: list[Skip] = field(default_factory=list)


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


def read_raw_documents(source: SourceFolder, shard: str, shard_count: int, out: Path, staging: Staging) -> RawStats:
    """Read the shard's documents from the source folder into ``out``; unreadable ones are skipped.
    The file's key is the hash of every (doc_id, doc_hash, source_path) it holds, in order."""
    skipped: list[Skip] = []
    totals = {"characters": 0}
    key, footer = Hasher(), {}

    def rows() -> Iterator[dict]:
        for item in source.read_shard(shard, shard_count):
            if isinstance(item, Skip):
                skipped.append(item)
                continue
            totals["characters"] += len(item.text)
            key.update(item.doc_id, item.doc_hash, item.source_path)
            yield _raw_row(item)
        footer[KEY] = key.hexdigest()

    documents = staging.write_rows(out, RAW_SCHEMA, rows(), footer)
    return RawStats(documents, totals["characters"], skipped)


def _raw_row(doc: Document) -> dict:
    return {"doc_id": doc.doc_id, "doc_hash": doc.doc_hash, "source_path": doc.source_path, "text": doc.text}


def chunk_raw_documents(
    raw: Path, out: Path, shard: str, config: ChunkingConfig, embedder: Embedder, staging: Staging
) -> ChunkStats:
    """Chunk every document of the shard with the embedder's own tokenizer. A document whose hash is
    unchanged keeps the chunks it had (same chunker); nothing is rewritten when no document changed."""
    made_by = chunker_identity(config, embedder)
    key = _derived_key(staging, raw, made_by)
    if key is not None and staging.metadata(out).get(KEY) == key:
        return _chunk_stats(staging.read(out, ["doc_id", "token_count"]), rechunked=0)
    previous = staged_chunks(staging, out, config, embedder)
    kept = _chunks_by_document(previous) if previous is not None else {}
    totals = {"documents": 0, "tokens": 0, "rechunked": 0}

    def rows() -> Iterator[dict]:
        for batch in staging.read_batches(raw):
            for doc in batch.to_pylist():
                totals["documents"] += 1
                doc_hash, chunks = kept.get(doc["doc_id"], ("", []))
                if doc_hash != doc["doc_hash"]:
                    totals["rechunked"] += 1
                    chunks = [
                        {
                            "chunk_id": c.chunk_id,
                            "doc_id": c.doc_id,
                            "shard": shard,
                            "position": c.position,
                            "text": c.text,
                            "chunk_hash": c.chunk_hash,
                            "doc_hash": doc["doc_hash"],
                            "token_count": c.token_count,
                        }
                        for c in chunk_document(doc["doc_id"], doc["text"], config, embedder.count_tokens)
                    ]
                totals["tokens"] += sum(c["token_count"] for c in chunks)
                yield from chunks

    chunks = staging.write_rows(out, CHUNK_SCHEMA, rows(), {KEY: key or "", MADE_BY: made_by})
    return ChunkStats(totals["documents"], chunks, totals["tokens"], totals["rechunked"])


def chunker_identity(config: ChunkingConfig, embedder: Embedder) -> str:
    return f"{config.identity}/{embedder.tokenizer_id}"


def staged_chunks(staging: Staging, path: Path, config: ChunkingConfig, embedder: Embedder) -> pa.Table | None:
    """The staged chunks at ``path`` if this chunker and tokenizer made them, else None."""
    return staging.read(path) if staging.metadata(path).get(MADE_BY) == chunker_identity(config, embedder) else None


def _derived_key(staging: Staging, source: Path, made_by: str) -> str | None:
    """The key of what ``made_by`` makes from the staged file ``source`` (None if that file has no key)."""
    upstream = staging.metadata(source).get(KEY)
    return Hasher().update(upstream, made_by).hexdigest() if upstream else None


def _chunks_by_document(chunks: pa.Table) -> dict[str, tuple[str, list[dict]]]:
    """doc_id → (doc_hash, its chunk rows) of a staged chunks file (one shard, read once)."""
    grouped: dict[str, tuple[str, list[dict]]] = {}
    for row in chunks.to_pylist():
        grouped.setdefault(row["doc_id"], (row["doc_hash"], []))[1].append(row)
    return grouped


def _chunk_stats(chunks: pa.Table, rechunked: int) -> ChunkStats:
    return ChunkStats(
        pc.count_distinct(chunks.column("doc_id")).as_py(),
        chunks.num_rows,
        pc.sum(chunks.column("token_count")).as_py() or 0,
        rechunked,
    )


def embed_chunks(
    chunks: Path,
    out: Path,
    embedder: Embedder,
    store: VectorStore,
    shard: str,
    shard_count: int,
    staging: Staging,
    *,
    expire_before: datetime | None = None,
    now: datetime | None = None,
) -> EmbedStats:
    """Vectors for the shard's chunks: reused from the table when this model already embedded the
    same ``chunk_hash`` (keeping its ``embedded_at``) after ``expire_before``, computed otherwise.
    Rows get the table's exact schema."""
    model = embedder.model_version
    key = _derived_key(staging, chunks, model)
    if _up_to_date(out, key, expire_before, staging):
        rows = staging.row_count(out) or 0
        return EmbedStats(rows, 0, rows, 0, embedder.dimensions)
    schema = row_schema(
        embedder.dimensions,
        model_version=model,
        shard_count=shard_count,
        model_spec=embedder.spec,
        requested_dimensions=embedder.requested_dimensions,
    )
    stamp = now or datetime.now(UTC)
    reusable = _stored_vectors(store, model, shard, expire_before)
    embedded = reused = tokens = 0
    with staging.writer(out, schema, {KEY: key or ""}) as writer:
        for batch in staging.read_batches(chunks, EMBED_BATCH_ROWS):
            hashes = batch.column("chunk_hash").to_pylist()
            missing = [i for i, h in enumerate(hashes) if h not in reusable]
            texts = batch.column("text").to_pylist()
            fresh = iter(embedder.embed([texts[i] for i in missing]) if missing else [])
            rows = [(next(fresh), stamp) if h not in reusable else reusable[h] for h in hashes]
            token_counts = batch.column("token_count").to_pylist()
            tokens += sum(token_counts[i] for i in missing)
            embedded += len(missing)
            reused += len(hashes) - len(missing)
            vectors = pa.array([np.asarray(v, dtype=np.float32) for v, _ in rows], type=schema.field("vector").type)
            stamps = pa.array([t for _, t in rows], type=schema.field("embedded_at").type)
            writer.write_table(
                pa.Table.from_batches([batch])
                .select(CHUNK_SCHEMA.names)
                .append_column("vector", vectors)
                .append_column("model_version", pa.array([model] * len(hashes)))
                .append_column("embedded_at", stamps)
                .select(schema.names)
                .cast(schema)
            )
    return EmbedStats(embedded + reused, embedded, reused, tokens, embedder.dimensions)


def _up_to_date(embeddings: Path, key: str | None, expire_before: datetime | None, staging: Staging) -> bool:
    """Whether the staged embeddings were made from the current chunks by this model and none expired."""
    if key is None or staging.metadata(embeddings).get(KEY) != key:
        return False
    oldest = pc.min(staging.read(embeddings, ["embedded_at"]).column("embedded_at")).as_py()
    return expire_before is None or oldest is None or oldest >= expire_before


def tokens_to_embed(
    chunks: Path,
    embeddings: Path,
    store: VectorStore,
    model_version: str,
    shard: str,
    expire_before: datetime | None,
    staging: Staging,
) -> int:
    """Tokens ``embed_chunks`` would send to the model for this shard now (what the budget counts)."""
    if _up_to_date(embeddings, _derived_key(staging, chunks, model_version), expire_before, staging):
        return 0
    reusable = _stored_vectors(store, model_version, shard, expire_before, with_vectors=False)
    return sum(
        n
        for batch in staging.read_batches(chunks)
        for h, n in zip(batch.column("chunk_hash").to_pylist(), batch.column("token_count").to_pylist(), strict=True)
        if h not in reusable
    )


def _stored_vectors(
    store: VectorStore, model_version: str, shard: str, expire_before: datetime | None, with_vectors: bool = True
) -> dict[str, tuple[list | None, datetime]]:
    """chunk_hash → (vector, embedded_at) of the shard's stored rows that have not expired."""
    stored = store.shard_rows(model_version, shard, ["chunk_hash", "embedded_at"] + ["vector"] * with_vectors)
    if stored is None:
        return {}
    hashes, stamps = stored.column("chunk_hash").to_pylist(), stored.column("embedded_at").to_pylist()
    vectors = stored.column("vector").to_pylist() if with_vectors else [None] * len(hashes)
    return {
        h: (v, t)
        for h, v, t in zip(hashes, vectors, stamps, strict=True)
        if expire_before is None or t >= expire_before
    }


def write_vector_table(embeddings: Path, store: VectorStore, shard: str, staging: Staging) -> ShardWrite:
    """Replace the shard's rows in the model's LanceDB table with the staged embeddings, atomically."""
    return store.replace_shard(shard, staging.read(embeddings))
