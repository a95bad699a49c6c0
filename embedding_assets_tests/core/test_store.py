"""The LanceDB store on a real table in a temporary folder (toy vectors: the model is not under test)."""

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from embedding_assets.core import hashing
from embedding_assets.core import store as store_module
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.hashing import content_hash, set_hash
from embedding_assets.core.store import (
    STATE_COLUMNS,
    UNINDEXED_ROWS_MAX,
    UNINDEXED_ROWS_MIN,
    VectorStore,
    fingerprint,
    row_schema,
    shard_state,
    sql_string,
    state_table_name,
    table_name,
    unindexed_rows_allowed,
)

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


def documents_fingerprint(docs: dict[str, list[str]]) -> str:
    """The fingerprint the change index keeps for a shard holding ``docs``: the set hash of its
    (doc_id, doc_hash) pairs, with the document hash ``rows`` gives each document."""
    return set_hash((doc_id, content_hash("".join(texts))) for doc_id, texts in docs.items())


def indexed_columns(store: VectorStore) -> dict[str, str]:
    return {column: index.index_type for index in store.table(MODEL).list_indices() for column in index.columns}


def state_version(store: VectorStore) -> int:
    return int(store.db.open_table(state_table_name(MODEL)).version)


def test_writing_the_same_shard_twice_commits_once(store: VectorStore) -> None:
    first = store.replace_shard("s000", rows("s000", {"a": ["x", "y"], "b": ["z"]}))
    assert (first.inserted, first.updated, first.deleted, first.committed) == (3, 0, 0, True)
    before, states = sorted_rows(store, "s000"), state_version(store)
    again = store.replace_shard("s000", rows("s000", {"a": ["x", "y"], "b": ["z"]}))
    assert not again.committed and again.unchanged == 3
    assert again.table_version == first.table_version == store.table(MODEL).version
    assert state_version(store) == states  # nor is the shard's state rewritten
    assert sorted_rows(store, "s000") == before


def test_changes_shrinks_and_deletes_are_an_upsert_then_a_delete(store: VectorStore) -> None:
    store.replace_shard("s000", rows("s000", {"a": ["x", "y", "w"], "b": ["z"]}))
    store.replace_shard("s001", rows("s001", {"c": ["other shard"]}))
    before = store.table(MODEL).version
    write = store.replace_shard("s000", rows("s000", {"a": ["x", "changed"], "d": ["new"]}))
    # a#0 keeps its text but its document changed (doc_hash), so it is rewritten too
    assert (write.inserted, write.updated, write.deleted, write.unchanged) == (1, 2, 2, 0)
    assert [r["chunk_id"] for r in sorted_rows(store, "s000")] == ["a#0", "a#1", "d#0"]
    assert [r["text"] for r in sorted_rows(store, "s000")][1] == "changed"
    assert [r["chunk_id"] for r in sorted_rows(store, "s001")] == ["c#0"]
    assert write.table_version == store.table(MODEL).version == before + 2  # two commits, upsert then delete


def test_only_inserts_or_only_deletes_are_one_commit_and_an_empty_shard_is_deleted_whole(
    store: VectorStore,
) -> None:
    store.replace_shard("s000", rows("s000", {"a": ["x", "y", "w"]}))
    before = store.table(MODEL).version
    shrink = store.replace_shard("s000", rows("s000", {"a": ["x", "y", "w"]}).slice(0, 1))
    assert (shrink.inserted, shrink.updated, shrink.deleted, shrink.unchanged) == (0, 0, 2, 1)
    assert shrink.table_version == before + 1
    emptied = store.replace_shard("s000", rows("s000", {}))
    assert (emptied.deleted, emptied.table_version) == (1, before + 2)
    assert store.shard_rows(MODEL, "s000").num_rows == 0
    assert store.recorded_states(MODEL)["s000"] == shard_state("s000", rows("s000", {}), before + 2)


def test_vanished_ids_are_deleted_in_batches(store: VectorStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "DELETE_BATCH_IDS", 2)
    store.replace_shard("s000", rows("s000", {"a": [f"t{i}" for i in range(6)]}))
    before = store.table(MODEL).version
    write = store.replace_shard("s000", rows("s000", {"a": [f"t{i}" for i in range(6)]}).slice(0, 1))
    assert write.deleted == 5 and write.table_version == before + 3  # ceil(5 / 2) delete commits
    assert [r["chunk_id"] for r in sorted_rows(store, "s000")] == ["a#0"]


def test_a_batch_of_shards_shares_its_commits_and_equals_their_writes_one_at_a_time(tmp_path: Path) -> None:
    shards = [f"s{i:03d}" for i in range(4)]
    before = {s: {f"{s}-a": ["x", "y", "w"], f"{s}-b": ["z"], f"{s}-c": ["kept"]} for s in shards}
    after = {  # per shard: a change and a vanished chunk, a new document, a shrink, an emptied shard
        "s000": {"s000-a": ["x", "changed"], "s000-c": ["kept"]},
        "s001": before["s001"] | {"s001-d": ["new"]},
        "s002": {"s002-a": ["x"], "s002-c": ["kept"]},
        "s003": {},
    }
    one, batched = VectorStore(str(tmp_path / "one")), VectorStore(str(tmp_path / "batched"))
    for target in (one, batched):
        for shard in shards:
            target.replace_shard(shard, rows(shard, before[shard], shard_count=4))
    singles = {s: one.replace_shard(s, rows(s, after[s], shard_count=4)) for s in shards}
    table_version, states = batched.table(MODEL).version, batched.db.open_table(state_table_name(MODEL)).version
    batch = batched.write_batch(rows("s000", {}, shard_count=4).schema)
    for shard in shards:
        batch.add(shard, rows(shard, after[shard], shard_count=4))
    writes = batch.commit()
    # One upsert, then the deletes (emptied shards, then vanished ids), and two state commits, for all four.
    assert batched.table(MODEL).version == table_version + 3
    assert batched.db.open_table(state_table_name(MODEL)).version == states + 2
    assert {s: w.table_version for s, w in writes.items()} == dict.fromkeys(shards, table_version + 3)
    counts = {s: (w.inserted, w.updated, w.deleted, w.unchanged) for s, w in writes.items()}
    assert counts == {s: (w.inserted, w.updated, w.deleted, w.unchanged) for s, w in singles.items()}
    for shard in shards:
        assert sorted_rows(batched, shard) == sorted_rows(one, shard)
        assert batched.recorded_states(MODEL)[shard].fingerprint == documents_fingerprint(after[shard])
    twice = batched.write_batch(rows("s000", {}, shard_count=4).schema)
    twice.add("s000", rows("s000", after["s000"], shard_count=4))
    with pytest.raises(ValueError, match="came twice"):
        twice.add("s000", rows("s000", after["s000"], shard_count=4))


def test_the_first_write_makes_the_scalar_indexes_and_a_state_per_shard(store: VectorStore) -> None:
    store.replace_shard("s000", rows("s000", {"a": ["x"]}))
    assert indexed_columns(store) == {"chunk_id": "BTree", "shard": "Bitmap", "doc_id": "BTree"}
    states = store.recorded_states(MODEL)
    assert sorted(states) == ["s000", "s001"] and states["s001"].rows == 0
    assert states["s000"].fingerprint == documents_fingerprint({"a": ["x"]}) and states["s000"].rows == 1

    def plan() -> str:
        return str(store.table(MODEL).search().where("shard = 's000'").explain_plan(verbose=True))

    assert "ScalarIndexQuery" not in plan()  # rows written since the index was made are scanned ...
    store.compact(MODEL, min_small_fragments=1)
    assert "ScalarIndexQuery: query=[shard = s000]@shard_idx(Bitmap)" in plan()  # ... until optimize folds them in


def test_a_table_of_an_older_release_gets_indexes_and_states(tmp_path: Path) -> None:
    uri = str(tmp_path / "lancedb")
    legacy = lancedb.connect(uri).create_table(
        table_name(MODEL), schema=row_schema(4, model_version=MODEL, shard_count=SHARDS)
    )
    legacy.add(rows("s000", {"a": ["x", "y"]}))
    legacy.add(rows("s001", {"b": ["z"]}))
    store = VectorStore(uri)
    assert store.recorded_states(MODEL) == {} and indexed_columns(store) == {}
    states = store.shard_states(MODEL, ["s000", "s001"])  # computed from each shard's rows, and recorded
    assert states["s000"].fingerprint == documents_fingerprint({"a": ["x", "y"]})
    assert states["s001"].fingerprint == documents_fingerprint({"b": ["z"]})
    assert store.recorded_states(MODEL) == states
    assert indexed_columns(store) == {"chunk_id": "BTree", "shard": "Bitmap", "doc_id": "BTree"}

    again = VectorStore(uri)  # a write to an older table, in a process that has not seen it yet
    lancedb.connect(uri).open_table(table_name(MODEL)).drop_index("doc_id_idx")
    again.replace_shard("s001", rows("s001", {"b": ["z", "w"]}))
    assert indexed_columns(again)["doc_id"] == "BTree"
    assert again.recorded_states(MODEL)["s001"].fingerprint == documents_fingerprint({"b": ["z", "w"]})


def test_states_of_a_dropped_table_are_not_taken_for_the_new_ones(tmp_path: Path) -> None:
    uri = str(tmp_path / "lancedb")
    VectorStore(uri).replace_shard("s000", rows("s000", {"a": ["x"]}))
    lancedb.connect(uri).drop_table(table_name(MODEL))  # dropped by hand: its states stay behind
    store = VectorStore(uri)
    store.replace_shard("s001", rows("s001", {"b": ["z"]}))
    states = store.recorded_states(MODEL)
    assert states["s000"].rows == 0 and states["s000"].fingerprint == set_hash(())
    assert states["s001"].fingerprint == documents_fingerprint({"b": ["z"]})
    store.drop(MODEL)
    assert state_table_name(MODEL) not in store.db.list_tables().tables


def test_recorded_states_equal_the_rows_after_random_rewrites(
    store: VectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "DELETE_BATCH_IDS", 2)  # several delete commits per write, too
    rng = random.Random(13)
    written: dict[str, dict[str, list[str]]] = {"s000": {}, "s001": {}}
    for step in range(30):
        shard = rng.choice(sorted(written))
        docs = {
            f"{shard}-d{i}": [f"doc {i} v{rng.randrange(3)} part {p}" for p in range(rng.randrange(1, 5))]
            for i in rng.sample(range(8), rng.randrange(0, 6))
        }
        store.replace_shard(shard, rows(shard, docs))
        written[shard] = docs
        stored = store.shard_rows(MODEL, shard, ["chunk_id", "chunk_hash", "doc_hash"])
        want = rows(shard, docs).select(["chunk_id", "chunk_hash", "doc_hash"])
        assert sorted(stored.to_pylist(), key=str) == sorted(want.to_pylist(), key=str), f"step {step}"
        recorded = store.recorded_states(MODEL)
        for key, held in written.items():
            actual = store.shard_rows(MODEL, key, STATE_COLUMNS)
            assert recorded[key].same_content(shard_state(key, actual, 0)), f"step {step}, {key}"
            assert recorded[key].fingerprint == fingerprint(actual) == documents_fingerprint(held)
            assert not recorded[key].pending


def test_a_write_hashes_only_the_documents_that_came_or_went_and_a_write_of_nothing_rehashes_all(
    store: VectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = {f"d{i}": [f"doc {i} part {p}" for p in range(3)] for i in range(50)}
    store.replace_shard("s000", rows("s000", docs))
    hashed: list[tuple[str, str]] = []
    monkeypatch.setattr(store_module, "pair_hash", lambda *pair: hashed.append(pair) or hashing.pair_hash(*pair))
    edited = docs | {"d3": ["doc 3 edited"], "new": ["a new document"]}
    del edited["d7"]
    store.replace_shard("s000", rows("s000", edited))
    assert sorted(doc_id for doc_id, _ in hashed) == ["d3", "d3", "d7", "new"]  # d3's old and new hash
    assert store.recorded_states(MODEL)["s000"].fingerprint == documents_fingerprint(edited)

    # A record that is not the rows' own (set by hand here) is carried by the next change, which trusts
    # it; index_matches_source reports it, and a write with nothing to change recomputes and repairs it.
    state = store.recorded_states(MODEL)["s000"]
    store._record_states(store.table(MODEL), [dataclasses.replace(state, fingerprint="0" * 32)])
    store.replace_shard("s000", rows("s000", edited))
    assert store.recorded_states(MODEL)["s000"].fingerprint == documents_fingerprint(edited)


def test_a_write_that_dies_between_upsert_and_delete_never_hides_a_current_chunk(tmp_path: Path) -> None:
    class DiesBeforeTheDelete(VectorStore):
        def _delete_chunks(self, *args: Any, **kwargs: Any) -> int:
            raise RuntimeError("killed")

    uri = str(tmp_path / "lancedb")
    VectorStore(uri).replace_shard("s000", rows("s000", {"a": ["x", "y", "w"], "b": ["z"]}))
    with pytest.raises(RuntimeError, match="killed"):
        DiesBeforeTheDelete(uri).replace_shard("s000", rows("s000", {"a": ["x", "changed"], "d": ["new"]}))
    store = VectorStore(uri)
    seen = {r["chunk_id"]: r["chunk_hash"] for r in sorted_rows(store, "s000")}
    current = {r["chunk_id"]: r["chunk_hash"] for r in rows("s000", {"a": ["x", "changed"], "d": ["new"]}).to_pylist()}
    assert seen.items() >= current.items()  # every current chunk, already new
    assert set(seen) - set(current) == {"a#2", "b#0"}  # and the vanished ones, until the re-run
    assert store.recorded_states(MODEL)["s000"].pending
    store.replace_shard("s000", rows("s000", {"a": ["x", "changed"], "d": ["new"]}))
    assert {r["chunk_id"] for r in sorted_rows(store, "s000")} == set(current)
    assert store.recorded_states(MODEL)["s000"].fingerprint == documents_fingerprint(
        {"a": ["x", "changed"], "d": ["new"]}
    )


def test_expired_shards_and_counts_come_from_states_and_indexes(store: VectorStore) -> None:
    store.replace_shard("s000", rows("s000", {"a": ["x", "y"]}))
    assert store.expired_shards(MODEL, WHEN) == []
    assert store.expired_shards(MODEL, WHEN + timedelta(seconds=1)) == ["s000"]  # s001 holds no vector
    assert store.shard_counts(MODEL) == {"s000": 2}
    assert store.expired_shards("other:model/4d", WHEN) == [] and store.shard_counts("other:model/4d") == {}


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


def test_rows_written_in_few_fragments_are_folded_into_the_scalar_indexes(store: VectorStore) -> None:
    """A batch of shards is one commit, so fragment counts never trigger compaction; the unindexed
    row count does, and the indexes then cover every row."""
    store.replace_shard("s000", rows("s000", {f"d{j}": ["a", "b"] for j in range(30)}))
    table = store.table(MODEL)

    def outside() -> set[int]:
        return {table.index_stats(i.name).num_unindexed_rows for i in table.list_indices()}

    before = sorted_rows(store, "s000")
    assert outside() == {60}
    assert store.index_new_rows(MODEL, min_rows=100) is None and outside() == {60}
    assert store.index_new_rows(MODEL, min_rows=50) == 60 and outside() == {0}
    assert sorted_rows(store, "s000") == before
    store.replace_shard("s001", rows("s001", {"e": ["c"]}))  # 1 row: under 5% of the 60 indexed
    assert store.index_new_rows(MODEL, min_rows=0) is None


def test_the_rows_left_outside_the_scalar_indexes_grow_with_the_table_up_to_a_cap() -> None:
    assert unindexed_rows_allowed(0) == unindexed_rows_allowed(1_000_000) == UNINDEXED_ROWS_MIN
    assert unindexed_rows_allowed(10_000_000) == 500_000  # 5% of the indexed rows
    assert unindexed_rows_allowed(145_000_000) == UNINDEXED_ROWS_MAX  # not 7.25M


def test_a_sample_of_the_table_is_distinct_rows_of_every_shard_and_repeats_with_its_seed(store: VectorStore) -> None:
    assert store.sample_rows(MODEL, 3, ["chunk_id"], "seed") is None  # no table yet
    for shard in ("s000", "s001"):
        store.replace_shard(shard, rows(shard, {f"{shard}-{d}": ["x", "y"] for d in range(10)}))
    sample = store.sample_rows(MODEL, 30, ["chunk_id", "shard"], "seed")
    assert sample is not None and sample.num_rows == 30 and len(set(sample.column("chunk_id").to_pylist())) == 30
    assert set(sample.column("shard").to_pylist()) == {"s000", "s001"}
    assert store.sample_rows(MODEL, 100, ["chunk_id"], "seed").num_rows == 40  # at most the table
    again, other = (store.sample_rows(MODEL, 5, ["chunk_id"], seed) for seed in ("seed", "other"))
    assert again == store.sample_rows(MODEL, 5, ["chunk_id"], "seed") != other
