"""What vector_table does once a run's shards are written, on real tables (toy vectors)."""

from pathlib import Path

from embedding_assets.core.registry import Registry
from embedding_assets.core.store import VectorStore
from embedding_assets.core.table_policy import settle_table
from embedding_assets_tests.core.test_store import MODEL, rows

OTHER = "toy:hashing@2/4d"


def test_the_first_table_becomes_live_and_later_ones_wait_for_promote(tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path / "lancedb"))
    registry = Registry(store.db)
    store.replace_shard("s000", rows("s000", {"d1": ["one"]}))
    settled = settle_table(store, registry, MODEL)
    assert registry.state().live == MODEL
    assert settled.notes == [f"{MODEL} is the first table and is now live"] and settled.warnings == []

    assert settle_table(store, registry, MODEL).notes == []  # already live: no second promotion
    assert settle_table(store, registry, OTHER).notes == []
    assert registry.state().live == MODEL and len(registry.events()) == 1


def test_small_fragments_are_compacted_once_enough_have_piled_up(tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path / "lancedb"))
    registry = Registry(store.db)
    for i in range(4):  # four commits, four small fragments
        store.replace_shard("s000", rows("s000", {f"d{j}": [f"text {j}"] for j in range(i + 1)}))
    before = store.shard_rows(MODEL, "s000")
    settle_table(store, registry, MODEL, compact_after=10)
    table = store.table(MODEL)
    assert table is not None and table.stats()["fragment_stats"]["num_fragments"] == 4

    settled = settle_table(store, registry, MODEL, compact_after=3)
    assert settled.notes == [f"compacted {MODEL}: 4 fragments merged"]
    assert table.stats()["fragment_stats"]["num_fragments"] == 1
    assert store.shard_rows(MODEL, "s000") == before


class LosingStore(VectorStore):
    """A store whose compaction loses its commit to a concurrent writer, as LanceDB reports it."""

    def compact(self, model_version: str, min_small_fragments: int = 0) -> int | None:
        raise RuntimeError("Commit conflict for version 7: retryable")


def test_a_lost_compaction_is_a_warning_and_the_first_table_still_goes_live(tmp_path: Path) -> None:
    store = LosingStore(str(tmp_path / "lancedb"))
    store.replace_shard("s000", rows("s000", {"d1": ["one"]}))
    settled = settle_table(store, Registry(store.db), MODEL)
    assert settled.warnings == [f"compaction of {MODEL} skipped: Commit conflict for version 7: retryable"]
    assert Registry(store.db).state().live == MODEL
