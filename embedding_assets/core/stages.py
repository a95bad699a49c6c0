"""The four pipeline stages for one shard, as plain functions the Dagster assets call.

raw documents → chunks → embeddings → vector table. Each stage streams its input in bounded
batches and writes its output atomically, so a stage can be re-run any number of times.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from embedding_assets.core.chunking import ChunkingConfig, chunk_document
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.sources import Document, Skip, SourceFolder
from embedding_assets.core.staging import Staging
from embedding_assets.core.store import ShardWrite, VectorStore, row_schema

RAW_SCHEMA = pa.schema([("doc_id", pa.string()), ("doc_hash", pa.string()),
                        ("source_path", pa.string()), ("text", pa.string())])
CHUNK_SCHEMA = pa.schema([("chunk_id", pa.string()), ("doc_id", pa.string()), ("shard", pa.string()),
                          ("position", pa.int32()), ("text", pa.string()), ("chunk_hash", pa.string()),
                          ("doc_hash", pa.string()), ("token_count", pa.int32())])
EMBED_BATCH_ROWS = 256


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


@dataclass(frozen=True)
class EmbedStats:
    chunks: int
    embedded: int
    reused: int
    tokens_embedded: int
    dimensions: int


def read_raw_documents(source: SourceFolder, shard: str, shard_count: int, out: Path,
                       staging: Staging) -> RawStats:
    """Read the shard's documents from the source folder into ``out``; unreadable ones are skipped."""
    skipped: list[Skip] = []
    totals = {"characters": 0}

    def rows() -> Iterator[dict]:
        for item in source.read_shard(shard, shard_count):
            if isinstance(item, Skip):
                skipped.append(item)
                continue
            totals["characters"] += len(item.text)
            yield _raw_row(item)

    documents = staging.write_rows(out, RAW_SCHEMA, rows())
    return RawStats(documents, totals["characters"], skipped)


def _raw_row(doc: Document) -> dict:
    return {"doc_id": doc.doc_id, "doc_hash": doc.doc_hash, "source_path": doc.source_path, "text": doc.text}


def chunk_raw_documents(raw: Path, out: Path, shard: str, config: ChunkingConfig, embedder: Embedder,
                        staging: Staging) -> ChunkStats:
    """Chunk every document of the shard with the embedder's own tokenizer."""
    totals = {"documents": 0, "tokens": 0}

    def rows() -> Iterator[dict]:
        for batch in staging.read_batches(raw):
            for doc in batch.to_pylist():
                totals["documents"] += 1
                for chunk in chunk_document(doc["doc_id"], doc["text"], config, embedder.count_tokens):
                    totals["tokens"] += chunk.token_count
                    yield {"chunk_id": chunk.chunk_id, "doc_id": chunk.doc_id, "shard": shard,
                           "position": chunk.position, "text": chunk.text, "chunk_hash": chunk.chunk_hash,
                           "doc_hash": doc["doc_hash"], "token_count": chunk.token_count}

    chunks = staging.write_rows(out, CHUNK_SCHEMA, rows())
    return ChunkStats(totals["documents"], chunks, totals["tokens"])


def embed_chunks(chunks: Path, out: Path, embedder: Embedder, store: VectorStore, shard: str,
                 shard_count: int, staging: Staging, *, expire_before: datetime | None = None,
                 now: datetime | None = None) -> EmbedStats:
    """Vectors for the shard's chunks: reused from the table when this model already embedded the
    same ``chunk_hash`` (keeping its ``embedded_at``) after ``expire_before``, computed otherwise.
    Rows get the table's exact schema."""
    model = embedder.model_version
    schema = row_schema(embedder.dimensions, model_version=model, shard_count=shard_count,
                        model_spec=embedder.spec, requested_dimensions=embedder.requested_dimensions)
    stamp = now or datetime.now(UTC)
    reusable = _stored_vectors(store, model, shard, expire_before)
    embedded = reused = tokens = 0
    with staging.writer(out, schema) as writer:
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
            writer.write_table(pa.Table.from_batches([batch]).select(CHUNK_SCHEMA.names)
                               .append_column("vector", vectors)
                               .append_column("model_version", pa.array([model] * len(hashes)))
                               .append_column("embedded_at", stamps)
                               .select(schema.names).cast(schema))
    return EmbedStats(embedded + reused, embedded, reused, tokens, embedder.dimensions)


def tokens_to_embed(chunks: Path, store: VectorStore, model_version: str, shard: str,
                    expire_before: datetime | None, staging: Staging) -> int:
    """Tokens ``embed_chunks`` would send to the model for this shard now (what the budget counts)."""
    reusable = _stored_vectors(store, model_version, shard, expire_before, with_vectors=False)
    return sum(n for batch in staging.read_batches(chunks)
               for h, n in zip(batch.column("chunk_hash").to_pylist(), batch.column("token_count").to_pylist(),
                               strict=True) if h not in reusable)


def _stored_vectors(store: VectorStore, model_version: str, shard: str, expire_before: datetime | None,
                    with_vectors: bool = True) -> dict[str, tuple[list | None, datetime]]:
    """chunk_hash → (vector, embedded_at) of the shard's stored rows that have not expired."""
    stored = store.shard_rows(model_version, shard, ["chunk_hash", "embedded_at"] + ["vector"] * with_vectors)
    if stored is None:
        return {}
    hashes, stamps = stored.column("chunk_hash").to_pylist(), stored.column("embedded_at").to_pylist()
    vectors = stored.column("vector").to_pylist() if with_vectors else [None] * len(hashes)
    return {h: (v, t) for h, v, t in zip(hashes, vectors, stamps, strict=True)
            if expire_before is None or t >= expire_before}


def write_vector_table(embeddings: Path, store: VectorStore, shard: str, staging: Staging) -> ShardWrite:
    """Replace the shard's rows in the model's LanceDB table with the staged embeddings, atomically."""
    return store.replace_shard(shard, staging.read(embeddings))
