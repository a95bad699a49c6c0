from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from embedding_assets.core.reconcile import CHUNK_COLUMNS, EXPECTED_SCHEMA, STORED_COLUMNS, diff_shard, stale_shards
from embedding_assets.core.store import ShardState, VectorStore, fingerprint, state_table_name
from embedding_assets_tests.core.test_store import MODEL, WHEN, documents_fingerprint, rows


def stored(*records: tuple[str, str, str, str, str]) -> pa.Table:
    names = ["chunk_id", "doc_id", "chunk_hash", "doc_hash", "model_version"]
    return pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in records])


EXPECTED = pa.Table.from_pylist(
    [
        dict(zip(CHUNK_COLUMNS, r, strict=True))
        for r in (("a#0", "a", "h0", "da"), ("a#1", "a", "h1", "da"), ("b#0", "b", "h2", "db"))
    ],
    EXPECTED_SCHEMA,
)


def test_an_exact_table_matches() -> None:
    diff = diff_shard(
        "s000",
        EXPECTED,
        stored(("a#0", "a", "h0", "da", MODEL), ("a#1", "a", "h1", "da", MODEL), ("b#0", "b", "h2", "db", MODEL)),
        MODEL,
    )
    assert diff.matches and diff.describe() == "s000: 3 rows match the source"


def test_every_kind_of_difference_is_listed() -> None:
    diff = diff_shard(
        "s000",
        EXPECTED,
        stored(
            ("a#0", "a", "h0", "da", MODEL),
            ("a#1", "a", "stale", "da", MODEL),  # text changed, vector not refreshed
            ("b#0", "b", "h2", "db", "other:model/4d"),  # embedded by another model
            ("c#0", "c", "h9", "dc", MODEL),  # document deleted from the source
            ("c#0", "c", "h9", "dc", MODEL),  # ... and duplicated
        ),
        MODEL,
    )
    assert not diff.matches
    assert (diff.missing, diff.extra, diff.changed, diff.wrong_model) == ([], ["c#0", "c#0"], ["a#1"], ["b#0"])
    assert "1 changed ['a#1']" in diff.describe() and "1 wrong model ['b#0']" in diff.describe()


def test_a_missing_table_misses_everything() -> None:
    diff = diff_shard("s001", EXPECTED, None, MODEL)
    assert diff.missing == ["a#0", "a#1", "b#0"] and diff.stored == 0


# On a real table: stale detection reads the recorded shard states, and the check holds them against the rows.


def source_fingerprints(**shards: dict[str, list[str]]) -> dict[str, str]:
    """shard → the change index's fingerprint of a source holding ``docs`` in it."""
    return {shard: documents_fingerprint(docs) for shard, docs in shards.items()}


def test_stale_shards_compare_the_source_with_the_recorded_states(tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path / "lancedb"))
    s000, s001 = {"a": ["x", "y"]}, {"b": ["z"]}
    assert stale_shards(source_fingerprints(s000=s000, s001={}), store, MODEL) == ["s000"]  # no table yet
    store.replace_shard("s000", rows("s000", s000))
    store.replace_shard("s001", rows("s001", s001))
    assert stale_shards(source_fingerprints(s000=s000, s001=s001), store, MODEL) == []
    assert stale_shards(source_fingerprints(s000=s000, s001={"b": ["z!"]}), store, MODEL) == ["s001"]
    fresh = source_fingerprints(s000=s000, s001=s001)
    assert stale_shards(fresh, store, MODEL, WHEN) == []
    assert stale_shards(fresh, store, MODEL, WHEN + timedelta(seconds=1)) == ["s000", "s001"]  # expired


class DiesBeforeItsState(VectorStore):
    """A process killed once the shard's rows are committed, before their state is recorded."""

    def _record_states(self, table: Any, states: Sequence[ShardState], *, fill: bool = False) -> None:
        if not fill and not any(state.pending for state in states):
            raise RuntimeError("killed")
        super()._record_states(table, states, fill=fill)


def test_a_write_that_dies_before_its_state_leaves_the_shard_stale(tmp_path: Path) -> None:
    uri = str(tmp_path / "lancedb")
    before, after = {"a": ["x", "y"], "b": ["z"]}, {"a": ["x", "y2"]}
    VectorStore(uri).replace_shard("s000", rows("s000", before))
    with pytest.raises(RuntimeError, match="killed"):
        DiesBeforeItsState(uri).replace_shard("s000", rows("s000", after))
    store = VectorStore(uri)
    assert fingerprint(store.shard_rows(MODEL, "s000")) == documents_fingerprint(after)  # the rows are new
    assert stale_shards(source_fingerprints(s000=after), store, MODEL) == ["s000"]
    # Even a source that went back to what the old state recorded finds the shard stale: it is pending.
    assert stale_shards(source_fingerprints(s000=before), store, MODEL) == ["s000"]
    rerun = store.replace_shard("s000", rows("s000", after))
    assert not rerun.committed  # the rows were already right: only their state is recorded
    assert stale_shards(source_fingerprints(s000=after), store, MODEL) == []


def test_a_shard_an_older_release_never_recorded_is_computed_from_its_rows(tmp_path: Path) -> None:
    uri = str(tmp_path / "lancedb")
    store = VectorStore(uri)
    store.replace_shard("s000", rows("s000", {"a": ["x"]}))
    state_table = store.db.open_table(state_table_name(MODEL))
    state_table.delete("shard = 's000'")  # as a table written before shard states existed
    assert "s000" not in store.recorded_states(MODEL)
    assert stale_shards(source_fingerprints(s000={"a": ["x"]}, s001={}), store, MODEL) == []
    assert store.recorded_states(MODEL)["s000"].fingerprint == documents_fingerprint({"a": ["x"]})


def test_a_tampered_fingerprint_fails_the_comparison_with_the_rows(tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path / "lancedb"))
    docs = {"a": ["x", "y"]}
    store.replace_shard("s000", rows("s000", docs))
    written = rows("s000", docs).to_pylist()
    expected = pa.Table.from_pylist(written).select(CHUNK_COLUMNS).cast(EXPECTED_SCHEMA)
    stored = store.shard_rows(MODEL, "s000", STORED_COLUMNS)
    honest = diff_shard("s000", expected, stored, MODEL, store.recorded_states(MODEL)["s000"])
    assert honest.matches and honest.figures()["fingerprint_matches"] is True
    assert (
        honest.figures()["recorded_fingerprint"] == honest.figures()["rows_fingerprint"] == documents_fingerprint(docs)
    )

    store.db.open_table(state_table_name(MODEL)).update(where="shard = 's000'", values={"fingerprint": "f" * 32})
    tampered = diff_shard("s000", expected, stored, MODEL, store.recorded_states(MODEL)["s000"])
    assert not tampered.matches and (tampered.missing, tampered.extra, tampered.changed) == ([], [], [])
    assert tampered.figures()["fingerprint_matches"] is False
    assert tampered.figures()["recorded_fingerprint"] == "f" * 32
    assert f"recorded fingerprint {'f' * 32} is not the rows' {documents_fingerprint(docs)}" in tampered.describe()
    assert stale_shards(source_fingerprints(s000=docs), store, MODEL) == ["s000"]  # and a refresh repairs it
    store.replace_shard("s000", rows("s000", docs))
    assert diff_shard("s000", expected, stored, MODEL, store.recorded_states(MODEL)["s000"]).matches
