"""The index's totals, a run's totals, the table's columns and preview, on a real LanceDB table."""

from pathlib import Path

import pytest

from embedding_assets.core.index_totals import (
    column_types,
    declared_dimensions,
    index_totals,
    preview,
    run_totals,
    table_uri,
)
from embedding_assets.core.shards import shard_keys
from embedding_assets.core.store import VectorStore, state_table_name
from embedding_assets_tests.core.test_store import MODEL, WHEN, rows


def test_totals_come_from_the_shard_states_and_match_the_table(tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path / "lancedb"))
    store.replace_shard("s000", rows("s000", {"a.txt": ["one", "two", "three"], "b.txt": ["four"]}))
    store.replace_shard("s001", rows("s001", {"c.txt": ["five " * 100, "six"]}))
    totals = index_totals(store.shard_states(MODEL, shard_keys(2)))
    assert totals == {
        "rows": 6,
        "documents": 3,
        "tokens": sum(len(text.split()) for text in ["one", "two", "three", "four", "five " * 100, "six"]),
        "shards_with_rows": 2,
        "shards_being_written": 0,
        "oldest_embedded_at": WHEN,
    }
    assert totals["rows"] == store.table(MODEL).count_rows()
    assert table_uri(store.uri, MODEL) == f"{tmp_path}/lancedb/chunks__toy_hashing_1_4d.lance"
    assert ("vector", "fixed_size_list<item: float>[4]") in column_types(store.table(MODEL).schema)
    shown = preview(store, MODEL, rows=3)
    assert len(shown) == 3 and "vector" not in shown[0]
    assert all(len(row["text"]) <= 120 for row in shown)


@pytest.mark.parametrize(
    ("model_version", "dimensions"),
    [("local:all-MiniLM-L6-v2-onnx-int8@1.0.0/384d", 384), ("openai:my-model/native", None), ("toy:x/12d", 12)],
)
def test_the_declared_vector_size_comes_from_the_model_version(model_version: str, dimensions: int | None) -> None:
    assert declared_dimensions(model_version) == dimensions


def test_nothing_to_preview_without_a_table(tmp_path: Path) -> None:
    assert preview(VectorStore(str(tmp_path / "lancedb")), MODEL) == []


def test_a_run_adds_up_its_shards_figures_and_skips_flags() -> None:
    shards = [
        {"chunks_embedded": 60, "chunks_reused": 0, "cost_usd": 0.001, "committed": True, "path": "x"},
        {"chunks_embedded": 2, "chunks_reused": 58, "cost_usd": 0.0005, "committed": False},
    ]
    assert run_totals(shards, ("chunks_embedded", "chunks_reused", "cost_usd", "committed")) == {
        "run_shards": 2,
        "run_chunks_embedded": 62,
        "run_chunks_reused": 58,
        "run_cost_usd": 0.0015,
    }


def test_states_of_an_older_release_have_no_tokens_until_their_shard_is_written_again(tmp_path: Path) -> None:
    uri = str(tmp_path / "lancedb")
    store = VectorStore(uri)
    store.replace_shard("s000", rows("s000", {"a.txt": ["one two"]}))
    store.replace_shard("s001", rows("s001", {"b.txt": ["three four five"]}))
    store.db.open_table(state_table_name(MODEL)).drop_columns(["tokens"])  # as an older release wrote it
    older = VectorStore(uri)
    assert index_totals(older.shard_states(MODEL, shard_keys(2)))["tokens"] is None
    older.replace_shard("s000", rows("s000", {"a.txt": ["one two six"]}))  # adds the column, records s000's
    states = VectorStore(uri).shard_states(MODEL, shard_keys(2))
    assert (states["s000"].tokens, states["s001"].tokens) == (3, None)
    older.replace_shard("s001", rows("s001", {"b.txt": ["three four five seven"]}))
    assert index_totals(VectorStore(uri).shard_states(MODEL, shard_keys(2)))["tokens"] == 7
