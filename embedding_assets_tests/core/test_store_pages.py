"""The ``page`` column: stored for paged documents, and added to a table made before it existed."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from embedding_assets.core.hashing import content_hash
from embedding_assets.core.store import VectorStore, row_schema

MODEL = "toy:pages@1/4d"
SHARD = "s000"


def rows(docs: dict[str, list[tuple[str, int | None]]], schema: pa.Schema) -> pa.Table:
    """Rows for doc id → [(chunk text, page)], in ``schema`` (a ``page``-less one drops the pages)."""
    records = [
        {
            "chunk_id": f"{doc_id}#{position}",
            "doc_id": doc_id,
            "shard": SHARD,
            "position": position,
            "text": text,
            "vector": (np.ones(4, dtype=np.float32) / 2).tolist(),
            "chunk_hash": content_hash(text),
            "doc_hash": content_hash("".join(t for t, _ in chunks)),
            "token_count": len(text.split()),
            "model_version": MODEL,
            "embedded_at": datetime(2026, 1, 1, tzinfo=UTC),
            "page": page,
        }
        for doc_id, chunks in docs.items()
        for position, (text, page) in enumerate(chunks)
    ]
    return pa.Table.from_pylist(records, schema=schema)


def schema_before_pages() -> pa.Schema:
    """The row schema of the release before pages: the same, without ``page``."""
    schema = row_schema(4, model_version=MODEL, shard_count=2)
    return schema.remove(schema.get_field_index("page"))


def test_pages_are_stored_and_searched(tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path / "lancedb"))
    schema = row_schema(4, model_version=MODEL, shard_count=2)
    store.replace_shard(SHARD, rows({"r.pdf": [("one", 1), ("two", 2)], "n.txt": [("plain", None)]}, schema))
    stored = store.shard_rows(MODEL, SHARD, ["chunk_id", "page"]).to_pylist()
    assert sorted((r["chunk_id"], r["page"]) for r in stored) == [("n.txt#0", None), ("r.pdf#0", 1), ("r.pdf#1", 2)]
    hits = store.search(MODEL, np.ones(4, dtype=np.float32), k=3)
    assert sorted(hits.column("page").to_pylist(), key=str) == [1, 2, None]


def test_a_table_made_before_pages_gains_the_column_and_accepts_writes(tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path / "lancedb"))
    store.replace_shard(SHARD, rows({"n.txt": [("plain", None)]}, schema_before_pages()))
    assert "page" not in store.table(MODEL).schema.names
    schema = row_schema(4, model_version=MODEL, shard_count=2)
    write = store.replace_shard(SHARD, rows({"n.txt": [("plain", None)], "r.pdf": [("one", 1), ("two", 2)]}, schema))
    assert (write.inserted, write.updated, write.unchanged) == (2, 0, 1), "the old row is not rewritten"
    table = store.table(MODEL)
    assert table.schema.field("page").type == pa.int32()
    assert table.schema.metadata[b"model_version"] == MODEL.encode(), "the model identity stays with the table"
    stored = {r["chunk_id"]: r["page"] for r in store.shard_rows(MODEL, SHARD, ["chunk_id", "page"]).to_pylist()}
    assert stored == {"n.txt#0": None, "r.pdf#0": 1, "r.pdf#1": 2}
    version = table.version
    again = VectorStore(str(tmp_path / "lancedb")).replace_shard(
        SHARD, rows({"n.txt": [("plain", None)], "r.pdf": [("one", 1), ("two", 2)]}, schema)
    )
    assert not again.committed and store.table(MODEL).version == version, "the column is added once"
