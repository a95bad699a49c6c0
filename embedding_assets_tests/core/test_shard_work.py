"""One shard's four stages on real Parquet staging and a real LanceDB table, with the toy embedder (the
model is not under test here): incremental work equals a from-scratch run, and memory stays bounded."""

import dataclasses
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedding_assets.core.chunking import ChunkingConfig
from embedding_assets.core.embedders.toy import ToyEmbedder
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.hashing import content_hash
from embedding_assets.core.shard_work import (
    EMBED_BATCH_ROWS,
    EMBED_GROUP_ROWS,
    INDEX,
    ChunkStats,
    EmbedStats,
    ShardWork,
)
from embedding_assets.core.sources import Document, SourceFolder
from embedding_assets.core.staging import Staging
from embedding_assets.core.store import ShardWrite, VectorStore

SHARD, SHARD_COUNT = "s000", 1
WORDS = ["index", "vector", "shard", "chunk", "model", "table", "source", "refresh", "batch", "token", "query"]
SMALL_CHUNKS = ChunkingConfig(40, 8)


class CountingToy(ToyEmbedder):
    """The toy embedder, remembering every text it embedded, its requests and the largest."""

    def __init__(self, remember: bool = True) -> None:
        super().__init__()
        self.embedded: list[str] = []
        self.remember = remember
        self.largest_request = 0
        self.requests = 0

    def embed(self, texts):  # type: ignore[no-untyped-def]
        self.requests += 1
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


def work(root: Path, embedder: CountingToy, config: ChunkingConfig = SMALL_CHUNKS) -> ShardWork:
    """A fresh unit of work for the one shard, as each asset step makes it."""
    return ShardWork(
        SHARD, SHARD_COUNT, Staging(root / "staging"), VectorStore(str(root / "lancedb")), embedder, config
    )


def commit(shard: ShardWork) -> ShardWrite:
    """The vector_table step for the one shard: its staged rows written to the table."""
    return shard.store.replace_shard(shard.shard, shard.rows_to_write())


def run_stages(
    source: Path, root: Path, embedder: CountingToy, config: ChunkingConfig = SMALL_CHUNKS
) -> tuple[ChunkStats, EmbedStats, pa.Table]:
    """raw → chunks → embeddings → table for the one shard, a step each; returns the chunk and embedding
    figures and the chunks."""
    work(root, embedder, config).read_raw_documents(SourceFolder(source).read_shard(SHARD, SHARD_COUNT))
    chunked = work(root, embedder, config).chunk()
    embedded = work(root, embedder, config).embed()
    commit(work(root, embedder, config))
    return chunked, embedded, Staging(root / "staging").read(work(root, embedder, config).chunks_path)


def test_incremental_stages_equal_a_run_from_scratch_and_redo_only_what_changed(tmp_path: Path) -> None:
    source, embedder = tmp_path / "source", CountingToy()
    write_docs(source, 30)
    first, _, _ = run_stages(source, tmp_path / "index", embedder)
    assert first.rechunked == 30
    chunks_file = work(tmp_path / "index", embedder).chunks_path
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
    source, embedder = GeneratedSource(10_000, 1_000), CountingToy(remember=False)
    shard = work(tmp_path, embedder, ChunkingConfig(100, 16))
    assert shard.store.model_versions() == []  # imports LanceDB before memory is traced
    tracemalloc.start()
    try:
        shard.read_raw_documents(source.read_shard(SHARD, SHARD_COUNT))
        raw_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        shard.chunk()
        stats = shard.embed()
        rest_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    total = source.count * source.size
    assert source.produced == source.count and shard.staging.row_count(shard.raw_path) == source.count
    assert stats.chunks == shard.staging.row_count(shard.chunks_path) > source.count
    assert embedder.largest_request <= EMBED_BATCH_ROWS
    assert raw_peak < total / 3 and rest_peak < total / 3, (raw_peak, rest_peak, total)


def test_a_file_staged_for_another_index_is_never_committed(tmp_path: Path) -> None:
    source, root, embedder = tmp_path / "source", tmp_path / "index", CountingToy()
    write_docs(source, 5)
    run_stages(source, root, embedder)
    other = dataclasses.replace(work(root, embedder), index_id="another")  # its folder, copied by hand
    with pytest.raises(ConfigError, match=r"staged for index \(unknown\), not this one \(another\)"):
        commit(other)
    other.read_raw_documents(SourceFolder(source).read_shard(SHARD, SHARD_COUNT))
    other.chunk()
    other.embed()  # its keys differ from the files there, so every stage is rewritten for it
    assert {other.staging.metadata(p)[INDEX] for p in (other.raw_path, other.chunks_path, other.embeddings_path)} == {
        "another"
    }
    assert commit(other).unchanged > 0  # then it commits (the same rows here: nothing changes)


def test_staged_documents_at_the_current_generation_are_not_restaged(tmp_path: Path) -> None:
    """The footer says which change-index generation the staged documents reflect, and what a read
    found (characters, skips, encodings): at that generation and index, the stats come back without a
    read; at another generation, or for another index, there are none to take."""
    source, root = tmp_path / "source", tmp_path / "index"
    write_docs(source, 6)
    (source / "empty.txt").write_text("   ")  # skipped, with its reason
    (source / "latin1.txt").write_bytes("Café déjà vu, naïve façade, crème brûlée et œuvre complète.".encode("cp1252"))
    staged = work(root, CountingToy()).read_raw_documents(SourceFolder(source).read_shard(SHARD, SHARD_COUNT), 7)
    assert staged.skipped and staged.encodings  # the stats under test are not empty
    again = work(root, CountingToy()).staged_raw_stats(7)
    assert again == staged
    assert work(root, CountingToy()).staged_raw_stats(8) is None
    assert dataclasses.replace(work(root, CountingToy()), index_id="another").staged_raw_stats(7) is None


def test_an_embedder_returning_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    class Short(CountingToy):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            return [vector[:-1] for vector in super().embed(texts)]  # one dimension short

    source, root = tmp_path / "source", tmp_path / "index"
    write_docs(source, 2)
    work(root, Short()).read_raw_documents(SourceFolder(source).read_shard(SHARD, SHARD_COUNT))
    work(root, Short()).chunk()
    with pytest.raises(ValueError, match=r"toy:hashing.*32d returned vectors of shape \(\d+, 31\) for \d+ texts"):
        work(root, Short()).embed()


def test_staged_files_have_no_dictionary_pages(tmp_path: Path) -> None:
    """Every staged column is written plain: a dictionary on mostly distinct values (real vectors above
    all) only costs write time and size."""
    source, root, embedder = tmp_path / "source", tmp_path / "index", CountingToy()
    write_docs(source, 5)
    run_stages(source, root, embedder)
    shard = work(root, embedder)
    for path in (shard.raw_path, shard.chunks_path, shard.embeddings_path):
        row_group = pq.ParquetFile(path).metadata.row_group(0)
        encodings = {e for c in range(row_group.num_columns) for e in row_group.column(c).encodings}
        assert not encodings & {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}, (path.name, encodings)


def test_a_shards_few_new_chunks_go_to_the_model_in_one_request(tmp_path: Path) -> None:
    """New chunks spread over the chunks file's batches are embedded together (a request of one text
    leaves a core idle), while a request never exceeds EMBED_BATCH_ROWS texts."""
    source, root, embedder = tmp_path / "source", tmp_path / "index", CountingToy()
    write_docs(source, 300)
    run_stages(source, root, embedder)
    chunks = Staging(root / "staging").read(work(root, embedder).chunks_path)
    assert 3 * EMBED_BATCH_ROWS < chunks.num_rows <= EMBED_GROUP_ROWS  # several batches, one group
    for name in sorted(p.name for p in source.iterdir())[::50]:  # documents spread over the file
        (source / name).write_text((source / name).read_text() + " Edited.")
    embedder.requests = 0
    _, embedded, _ = run_stages(source, root, embedder)
    assert embedded.embedded >= 5 and embedder.requests == 1
