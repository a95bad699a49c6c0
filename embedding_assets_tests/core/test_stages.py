"""The four stages on real Parquet staging and a real LanceDB table, with the toy embedder (the model is
not under test here): incremental work equals a from-scratch run, and memory stays bounded."""

import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from embedding_assets.core import stages
from embedding_assets.core.chunking import ChunkingConfig
from embedding_assets.core.embedders.toy import ToyEmbedder
from embedding_assets.core.hashing import content_hash
from embedding_assets.core.sources import Document, SourceFolder
from embedding_assets.core.staging import Staging
from embedding_assets.core.store import VectorStore
from embedding_assets.core.table_checks import sample_quota

SHARD, SHARD_COUNT = "s000", 1
WORDS = ["index", "vector", "shard", "chunk", "model", "table", "source", "refresh", "batch", "token", "query"]
SMALL_CHUNKS = ChunkingConfig(40, 8)


class CountingToy(ToyEmbedder):
    """The toy embedder, remembering every text it embedded and the largest request."""

    def __init__(self, remember: bool = True) -> None:
        super().__init__()
        self.embedded: list[str] = []
        self.remember = remember
        self.largest_request = 0

    def embed(self, texts):  # type: ignore[no-untyped-def]
        if self.remember:
            self.embedded.extend(texts)
        self.largest_request = max(self.largest_request, len(texts))
        return super().embed(texts)


def paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(" ".join(rng.choices(WORDS, k=12)).capitalize() + "." for _ in range(sentences))


def write_docs(folder: Path, count: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"doc{i:03}.txt").write_text("\n\n".join(paragraph(rng, 6) for _ in range(rng.randint(1, 5))))


def run_stages(
    source: Path, root: Path, embedder: CountingToy, config: ChunkingConfig = SMALL_CHUNKS
) -> tuple[stages.ChunkStats, stages.EmbedStats, pa.Table]:
    """raw → chunks → embeddings for the one shard; returns the chunk and embedding figures and the chunks."""
    staging, store = Staging(root / "staging"), VectorStore(str(root / "lancedb"))
    raw, chunks, vectors = (staging.path(a, SHARD) for a in ("raw_documents", "chunks", "embeddings"))
    stages.read_raw_documents(SourceFolder(source), SHARD, SHARD_COUNT, raw, staging)
    chunked = stages.chunk_raw_documents(raw, chunks, SHARD, config, embedder, staging)
    embedded = stages.embed_chunks(chunks, vectors, embedder, store, SHARD, SHARD_COUNT, staging)
    stages.write_vector_table(vectors, store, SHARD, staging)
    return chunked, embedded, staging.read(chunks)


def test_incremental_stages_equal_a_run_from_scratch_and_redo_only_what_changed(tmp_path: Path) -> None:
    source, embedder = tmp_path / "source", CountingToy()
    write_docs(source, 30)
    first, _, _ = run_stages(source, tmp_path / "index", embedder)
    assert first.rechunked == 30
    chunks_file = Staging(tmp_path / "index" / "staging").path("chunks", SHARD)
    untouched = chunks_file.stat().st_mtime_ns

    again, nothing, _ = run_stages(source, tmp_path / "index", embedder)
    assert (again.rechunked, nothing.embedded) == (0, 0)
    assert chunks_file.stat().st_mtime_ns == untouched  # an unchanged shard rewrites no staged file

    before = set(Staging(tmp_path / "index" / "staging").read(chunks_file).column("chunk_hash").to_pylist())
    (source / "doc004.txt").write_text((source / "doc004.txt").read_text() + "\n\nA new closing paragraph.")
    (source / "doc017.txt").unlink()
    (source / "doc100.txt").write_text("A brand new document about shards.")
    embedder.embedded.clear()
    changed, embedded, incremental = run_stages(source, tmp_path / "index", embedder)
    assert changed.rechunked == 2  # the edited and the added document
    _, _, scratch = run_stages(source, tmp_path / "scratch", CountingToy())
    assert incremental.to_pylist() == scratch.to_pylist()
    new_hashes = set(incremental.column("chunk_hash").to_pylist()) - before
    assert embedded.embedded == len(embedder.embedded) and {content_hash(t) for t in embedder.embedded} == new_hashes


def test_a_chunker_change_recuts_every_document(tmp_path: Path) -> None:
    source, embedder = tmp_path / "source", CountingToy()
    write_docs(source, 12)
    run_stages(source, tmp_path / "index", embedder)
    recut, _, chunks = run_stages(source, tmp_path / "index", embedder, ChunkingConfig(60, 8))
    _, _, scratch = run_stages(source, tmp_path / "scratch", CountingToy(), ChunkingConfig(60, 8))
    assert recut.rechunked == 12 and chunks.to_pylist() == scratch.to_pylist()


class GeneratedSource(SourceFolder):
    """Many documents made on demand, never held together, counting how many were asked for."""

    def __init__(self, count: int, size: int) -> None:
        super().__init__(".")
        self.count, self.size, self.produced = count, size, 0

    def read_shard(self, shard: str, shard_count: int) -> Iterator[Document]:
        for i in range(self.count):
            self.produced += 1
            text = (f"document {i} " * (self.size // 12))[: self.size]
            yield Document(f"doc{i}", text, content_hash(text), f"doc{i}.txt")


def test_stages_stream_with_a_bounded_number_of_rows_in_flight(tmp_path: Path) -> None:
    """10 MB of documents pass through raw → chunks → embeddings holding only a batch at a time."""
    source, staging, embedder = GeneratedSource(10_000, 1_000), Staging(tmp_path), CountingToy(remember=False)
    raw, chunks, vectors = (staging.path(a, SHARD) for a in ("raw_documents", "chunks", "embeddings"))
    store = VectorStore(str(tmp_path / "db"))
    assert store.model_versions() == []  # imports LanceDB before memory is traced
    tracemalloc.start()
    try:
        stages.read_raw_documents(source, SHARD, SHARD_COUNT, raw, staging)
        raw_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        stages.chunk_raw_documents(raw, chunks, SHARD, ChunkingConfig(100, 16), embedder, staging)
        stats = stages.embed_chunks(chunks, vectors, embedder, store, SHARD, SHARD_COUNT, staging)
        rest_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    total = source.count * source.size
    assert source.produced == source.count and staging.row_count(raw) == source.count
    assert stats.chunks == staging.row_count(chunks) > source.count
    assert embedder.largest_request <= stages.EMBED_BATCH_ROWS
    assert raw_peak < total / 3 and rest_peak < total / 3, (raw_peak, rest_peak, total)


def test_the_drift_sample_is_spread_over_the_shards_of_a_run() -> None:
    shards = [f"s{i:03}" for i in range(6)]
    quota = sample_quota(shards, 4, random.Random(1))
    assert sum(quota.values()) == 4 and sorted(quota.values()) == [0, 0, 1, 1, 1, 1]
    assert sample_quota(["s000"], 4, random.Random(1)) == {"s000": 4}
    assert sorted(sample_quota(shards[:2], 5, random.Random(1)).values()) == [2, 3]
