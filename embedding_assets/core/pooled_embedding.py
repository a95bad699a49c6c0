"""A run's few new texts embedded together, before its shards are: a refresh that changed a chunk or
two in each of many shards sends one request, not one per shard. On 2 cores 40 texts took 1.17 s in
one request and ~1.5 s in eight; an API counts every request against its rate limit."""

from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from embedding_assets.core.embedders import Embedder
from embedding_assets.core.shard_work import EMBED_BATCH_ROWS, ShardWork, checked_vectors


def embed_together(
    works: Iterable[ShardWork], embedder: Embedder, limit: int = EMBED_BATCH_ROWS
) -> dict[str, np.ndarray]:
    """Vectors by chunk_hash for the new texts of all ``works``, from one request, when there are at most
    ``limit`` of them from two shards or more; otherwise none, and each shard embeds its own (a full
    ingest's shards fill their requests alone). Vectors are content-addressed, so this may run outside
    the shards' locks: a shard that changed since only misses, and sends its new text itself."""
    found: list[pa.Table] = []
    for work in works:  # one at a time: a unit of work holds its shard's stored hashes
        new = work.new_chunks()
        if new.num_rows:
            found.append(new)
        if sum(t.num_rows for t in found) > limit:
            return {}
    if len(found) < 2:
        return {}
    chunks = pa.concat_tables(found)
    texts = dict(zip(chunks.column("chunk_hash").to_pylist(), chunks.column("text").to_pylist(), strict=True))
    vectors = checked_vectors(embedder, embedder.embed(list(texts.values())), len(texts))
    return dict(zip(texts, vectors, strict=True))
