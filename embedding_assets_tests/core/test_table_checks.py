"""The shard integrity check on plain rows (toy vectors: the model is not under test), and the drift sample."""

import random

import pyarrow as pa

from embedding_assets.core.shards import shard_of
from embedding_assets.core.store import TableInfo
from embedding_assets.core.table_checks import INTEGRITY_PARTS, VECTOR_TABLE_INTEGRITY, check_shard, sample_quota
from embedding_assets_tests.core.test_store import MODEL, SHARDS, rows

INFO = TableInfo("chunks__toy", MODEL, 4, SHARDS, version=1, rows=0)


def shard_rows() -> tuple[str, pa.Table]:
    docs = {d: ["one text", "two text"] for d in ("a", "b", "c", "d", "e", "f")}
    shard = shard_of("a", SHARDS)
    return shard, rows(shard, {d: texts for d, texts in docs.items() if shard_of(d, SHARDS) == shard})


def test_a_sound_shard_passes_every_part() -> None:
    shard, table = shard_rows()
    outcome = check_shard(
        shard, table, INFO, model_version=MODEL, dimensions=4, expected_chunk_ids=table.column("chunk_id").to_pylist()
    )
    assert outcome.name == VECTOR_TABLE_INTEGRITY and outcome.passed
    assert all(outcome.metadata[part] for part in INTEGRITY_PARTS)


def test_each_broken_part_is_named() -> None:
    shard, table = shard_rows()
    expected = table.column("chunk_id").to_pylist()
    vectors = table.column("vector").to_pylist()
    vectors[0] = [float("nan")] * 4
    broken = table.set_column(
        table.schema.get_field_index("vector"),
        table.schema.field("vector"),
        pa.array(vectors, type=table.schema.field("vector").type),
    )
    broken = pa.concat_tables([broken, broken.slice(1, 1)])  # a duplicated row
    outcome = check_shard(shard, broken, INFO, model_version=MODEL, dimensions=4, expected_chunk_ids=expected)
    assert not outcome.passed
    failed = {part for part in INTEGRITY_PARTS if not outcome.metadata[part]}
    assert failed == {"vectors_are_valid", "chunk_ids_unique", "row_count_matches_chunks"}
    assert all(part in outcome.description for part in failed) and outcome.metadata["nan_vectors"] == 1
    assert not check_shard(shard, table, INFO, model_version=MODEL, dimensions=8, expected_chunk_ids=expected).passed


def test_the_drift_sample_is_spread_over_the_shards_of_a_run() -> None:
    shards = [f"s{i:03}" for i in range(6)]
    quota = sample_quota(shards, 4, random.Random(1))
    assert sum(quota.values()) == 4 and sorted(quota.values()) == [0, 0, 1, 1, 1, 1]
    assert sample_quota(["s000"], 4, random.Random(1)) == {"s000": 4}
    assert sorted(sample_quota(shards[:2], 5, random.Random(1)).values()) == [2, 3]
