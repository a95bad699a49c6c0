"""A run's few new texts go to the model in one request for all its shards, and every shard still gets
exactly its own vectors (real Parquet staging and LanceDB, the toy embedder)."""

from pathlib import Path

import numpy as np

from embedding_assets.core.embedders.toy import ToyEmbedder
from embedding_assets.core.pooled_embedding import embed_together
from embedding_assets.core.shard_work import ShardWork
from embedding_assets.core.shards import shard_keys
from embedding_assets.core.sources import SourceFolder
from embedding_assets.core.staging import Staging
from embedding_assets.core.store import VectorStore
from embedding_assets_tests.core.test_shard_work import SMALL_CHUNKS, CountingToy, write_docs

SHARD_COUNT = 4


def works(root: Path, embedder: CountingToy) -> list[ShardWork]:
    """A fresh unit of work for every shard, as a step makes them."""
    staging, store = Staging(root / "staging"), VectorStore(str(root / "lancedb"))
    return [ShardWork(s, SHARD_COUNT, staging, store, embedder, SMALL_CHUNKS) for s in shard_keys(SHARD_COUNT)]


def stage(source: Path, root: Path, embedder: CountingToy) -> None:
    """The raw documents and chunks of every shard."""
    for work in works(root, embedder):
        work.read_raw_documents(SourceFolder(source).read_shard(work.shard, SHARD_COUNT))
    for work in works(root, embedder):
        work.chunk()


def test_a_runs_few_new_texts_go_to_the_model_once_and_each_shard_gets_its_own(tmp_path: Path) -> None:
    source, root, embedder = tmp_path / "source", tmp_path / "index", CountingToy()
    write_docs(source, 40)
    stage(source, root, embedder)
    for work in works(root, embedder):
        work.embed()
        work.store.replace_shard(work.shard, work.rows_to_write())
    for path in sorted(source.iterdir())[::4]:  # ten edits, spread over the shards
        path.write_text(path.read_text() + "\n\nAn edited closing paragraph.")
    stage(source, root, embedder)
    embedder.requests, embedder.embedded = 0, []

    pooled = embed_together(works(root, embedder), embedder)
    stats = [work.embed(pooled=pooled) for work in works(root, embedder)]
    assert embedder.requests == 1 and len(pooled) == len(embedder.embedded)
    assert sum(s.embedded for s in stats) == len(pooled) and sum(bool(s.embedded) for s in stats) > 1
    for work in works(root, embedder):  # each row's vector is its own text's
        rows = work.rows_to_write()
        expected = ToyEmbedder().embed(rows.column("text").to_pylist())
        stored = np.array(rows.column("vector").to_pylist(), dtype=np.float32)
        np.testing.assert_allclose(stored, expected, rtol=1e-6)


def test_more_new_texts_than_the_limit_are_left_to_each_shard(tmp_path: Path) -> None:
    source, root, embedder = tmp_path / "source", tmp_path / "index", CountingToy()
    write_docs(source, 40)
    stage(source, root, embedder)
    assert embed_together(works(root, embedder), embedder, limit=20) == {} and embedder.requests == 0
    stats = [work.embed() for work in works(root, embedder)]
    assert embedder.requests >= SHARD_COUNT and sum(s.embedded for s in stats) > 20


def test_one_shards_new_texts_are_left_to_it(tmp_path: Path) -> None:
    """Pooling saves requests only across shards; one shard's texts already go in one request."""
    source, root, embedder = tmp_path / "source", tmp_path / "index", CountingToy()
    write_docs(source, 40)
    stage(source, root, embedder)
    assert embed_together(works(root, embedder)[:1], embedder) == {} and embedder.requests == 0
