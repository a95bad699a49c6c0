"""How often one refresh reads the LanceDB table: each step reads a changed shard's stored rows once.

The toy embedder stands in for the model (what is counted is the pipeline's own reads); the
instance, the staging files and the table are real.
"""

import dataclasses
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from embedding_assets.core.index import Index
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_of
from embedding_assets.core.store import VectorStore
from embedding_assets.refresh import refresh

READS = ("shard_rows", "shard_states", "recorded_states", "expired_shards", "shard_counts")
HELPERS = {"_stored_vectors"}  # name the caller that needs the read, not the helper that makes it


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every table read of ``VectorStore``, counted as ``method <- calling function``."""
    counted: Counter[str] = Counter()
    for name in READS:
        original = getattr(VectorStore, name)

        def counting(self: VectorStore, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            callers = [frame.name for frame in traceback.extract_stack()[:-1] if frame.name not in HELPERS]
            counted[f"{_name} <- {callers[-1]}"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(VectorStore, name, counting)
    return counted


def test_a_one_shard_refresh_reads_the_shard_once_per_step(settings: Settings, reads: Counter[str]) -> None:
    toy = dataclasses.replace(settings, model="toy:hashing")
    source = Path(toy.source_dir)
    with dg.instance_for_test() as instance:
        refresh(Index(toy), instance)
        (source / "while.txt").write_text("The while statement, rewritten.\n\nA second paragraph.")
        reads.clear()
        report = refresh(Index(toy), instance)
        assert report.stale == [shard_of("while.txt", toy.shards)]
        assert reads == {
            "shard_states <- stale_shards": 1,  # which shards are stale: the small state table, not the rows
            "shard_rows <- _stored_with_vectors": 1,  # embeddings: the stored vectors it may reuse
            "shard_rows <- add": 1,  # vector_table: what the commit must change (ShardWriteBatch.add)
            "shard_rows <- vector_table_checks": 1,  # all three checks, from one read
            "recorded_states <- vector_table_checks": 1,  # the fingerprints index_matches_source holds against it
            "shard_states <- table_summary": 1,  # vector_table's totals of the whole index: the state table
        }

        # With a run budget, the budget pass reads the stored hashes once more, before the shard's lock.
        (source / "while.txt").write_text("The while statement, rewritten again.")
        reads.clear()
        refresh(Index(dataclasses.replace(toy, run_budget_usd=1.0)), instance)
        assert reads["shard_rows <- _stored_hashes"] == 1
        assert sum(reads.values()) == 7
