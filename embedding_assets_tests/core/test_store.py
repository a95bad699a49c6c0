"""The LanceDB store on a real table in a temporary folder (toy vectors: the model is not under test)."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from embedding_assets.core.errors import ConfigError
from embedding_assets.core.hashing import content_hash
from embedding_assets.core.store import VectorStore, row_schema, sql_string, table_name

MODEL = "toy:hashing@1/4d"
SHARDS = 2
WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def rows(shard: str, docs: dict[str, list[str]], shard_count: int = SHARDS) -> pa.Table:
    """Table rows for ``docs`` (doc id → chunk texts), as the embeddings stage would produce them."""
    records = []
    for doc_id, texts in docs.items():
        for position, text in enumerate(texts):
            vector = np.ones(4, dtype=np.float32) * (position + 1)
            records.append(
                {
                    "chunk_id": f"{doc_id}#{position}",
                    "doc_id": doc_id,
                    "shard": shard,
                    "position": position,
                    "text": text,
                    "vector": (vector / np.linalg.norm(vector)).tolist(),
                    "chunk_hash": content_hash(text),
                    "doc_hash": content_hash("".join(texts)),
                    "token_count": len(text.split()),
                    "model_version": MODEL,
                    "embedded_at": WHEN,
                }
            )
    return pa.Table.from_pylist(records, schema=row_schema(4, model_version=MODEL, shard_count=shard_count))


@pytest.fixture
def store(tmp_path: Path) -> VectorStore:
    return VectorStore(str(tmp_path / "lancedb"))


def sorted_rows(store: VectorStore, shard: str) -> list[dict]:
    table = store.shard_rows(MODEL, shard)
    assert table is not None
    return sorted(table.to_pylist(), key=lambda r: r["chunk_id"])


def test_writing_the_same_shard_twice_commits_once(store: VectorStore) -> None:
    first = store.replace_shard("s000", rows("s000", {"a": ["x", "y"], "b": ["z"]}))
    assert (first.inserted, first.updated, first.deleted, first.committed) == (3, 0, 0, True)
    before = sorted_rows(store, "s000")
    again = store.replace_shard("s000", rows("s000", {"a": ["x", "y"], "b": ["z"]}))
    assert not again.committed and again.unchanged == 3
    assert again.table_version == first.table_version
    assert sorted_rows(store, "s000") == before


def test_changes_shrinks_and_deletes_are_applied_in_one_commit(store: VectorStore) -> None:
    store.replace_shard("s000", rows("s000", {"a": ["x", "y", "w"], "b": ["z"]}))
    store.replace_shard("s001", rows("s001", {"c": ["other shard"]}))
    write = store.replace_shard("s000", rows("s000", {"a": ["x", "changed"], "d": ["new"]}))
    # a#0 keeps its text but its document changed (doc_hash), so it is rewritten too
    assert (write.inserted, write.updated, write.deleted, write.unchanged) == (1, 2, 2, 0)
    assert [r["chunk_id"] for r in sorted_rows(store, "s000")] == ["a#0", "a#1", "d#0"]
    assert [r["text"] for r in sorted_rows(store, "s000")][1] == "changed"
    assert [r["chunk_id"] for r in sorted_rows(store, "s001")] == ["c#0"]
    versions = [v["version"] for v in store.table(MODEL).list_versions()]
    assert versions[-1] == write.table_version == versions[-2] + 1


def test_ids_with_quotes_are_data_not_sql(store: VectorStore) -> None:
    hostile = "x' OR '1'='1"
    store.replace_shard("s000", rows("s000", {hostile: ["a"], "plain": ["b"]}))
    table = store.table(MODEL)
    assert table.count_rows(f"doc_id = {sql_string(hostile)}") == 1
    assert sql_string("it's") == "'it''s'"


def test_the_table_carries_its_model_and_refuses_another_layout(store: VectorStore) -> None:
    store.replace_shard("s000", rows("s000", {"a": ["x"]}))
    info = store.info(MODEL)
    assert info is not None and info.name == table_name(MODEL) == "chunks__toy_hashing_1_4d"
    assert (info.model_version, info.dimensions, info.shard_count, info.rows) == (MODEL, 4, SHARDS, 1)
    with pytest.raises(ConfigError, match="2 shards"):
        store.replace_shard("s000", rows("s000", {"a": ["x"]}, shard_count=8))


def test_rows_of_another_shard_or_duplicate_ids_are_refused(store: VectorStore) -> None:
    with pytest.raises(ValueError, match="other shards"):
        store.replace_shard("s000", rows("s001", {"a": ["x"]}))
    doubled = pa.concat_tables([rows("s000", {"a": ["x"]})] * 2)
    with pytest.raises(ValueError, match="duplicate chunk ids"):
        store.replace_shard("s000", doubled)


def test_search_scores_by_cosine_and_counts_by_shard(store: VectorStore) -> None:
    store.replace_shard("s000", rows("s000", {"a": ["x", "y"]}))
    store.replace_shard("s001", rows("s001", {"c": ["z"]}))
    hits = store.search(MODEL, np.ones(4, dtype=np.float32) / 2, k=2).to_pylist()
    assert len(hits) == 2 and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert store.shard_counts(MODEL) == {"s000": 2, "s001": 1}
    with pytest.raises(LookupError, match="materialize"):
        store.search("other:model/4d", np.ones(4, dtype=np.float32), k=1)


def test_compaction_merges_small_fragments_and_keeps_every_row(store: VectorStore) -> None:
    for i in range(6):  # six commits, each adding its own small fragment
        store.replace_shard("s000", rows("s000", {f"d{j}": [f"text {j}"] for j in range(i + 1)}))
    table = store.table(MODEL)
    before = sorted_rows(store, "s000")
    assert store.compact(MODEL, min_small_fragments=100) is None
    assert store.compact(MODEL, min_small_fragments=2) >= 2
    assert table.stats()["fragment_stats"]["num_fragments"] == 1
    assert sorted_rows(store, "s000") == before
