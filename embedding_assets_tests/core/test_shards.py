from collections import Counter

import pytest

from embedding_assets.core.change_index import ShardSummary
from embedding_assets.core.shards import RUN_THROUGH_CLEAN_SHARDS, run_through_gap, shard_keys, shard_of, shard_ranges
from embedding_assets.shard_runs import documents_per_shard, run_ranges


def test_keys_are_zero_padded_and_sorted() -> None:
    assert shard_keys(8) == ("s000", "s001", "s002", "s003", "s004", "s005", "s006", "s007")
    keys = shard_keys(4096)
    assert keys[0] == "s0000" and keys[-1] == "s4095"
    assert list(keys) == sorted(keys)


@pytest.mark.parametrize("count", [0, -1, 65_537])
def test_invalid_shard_counts_are_refused(count: int) -> None:
    with pytest.raises(ValueError, match="shard count"):
        shard_keys(count)


def test_documents_spread_evenly_and_stay_put() -> None:
    ids = [f"docs/page-{i}.md" for i in range(20_000)]
    counts = Counter(shard_of(i, 8) for i in ids)
    assert set(counts) == set(shard_keys(8))
    assert max(counts.values()) < 1.1 * min(counts.values())
    assert [shard_of(i, 8) for i in ids[:100]] == [shard_of(i, 8) for i in ids[:100]]


def test_shard_ranges_cover_exactly_the_listed_shards() -> None:
    assert shard_ranges(["s001", "s002", "s003", "s005", "s007", "s000"], 8) == [
        ("s000", "s003"),
        ("s005", "s005"),
        ("s007", "s007"),
    ]
    assert shard_ranges([], 8) == []
    assert shard_ranges(list(shard_keys(8)), 8, max_per_range=3) == [
        ("s000", "s002"),
        ("s003", "s005"),
        ("s006", "s007"),
    ]


def test_nearby_ranges_merge_across_small_gaps() -> None:
    stale = ["s000", "s002", "s003", "s006", "s015"]
    assert shard_ranges(stale, 16, max_gap=1) == [("s000", "s003"), ("s006", "s006"), ("s015", "s015")]
    assert shard_ranges(stale, 16, max_gap=2) == [("s000", "s006"), ("s015", "s015")]
    assert shard_ranges(stale, 16, max_gap=8) == [("s000", "s015")]
    assert shard_ranges(stale, 16, max_per_range=4, max_gap=8) == [("s000", "s003"), ("s006", "s006"), ("s015", "s015")]


def test_run_through_gap_follows_the_shard_size() -> None:
    # Small shards: a clean shard costs little beside a run, so a refresh runs through a few.
    assert run_through_gap(1_500) >= 4
    # At the planned 4,096 shards for 50M documents (12,200 a shard) a clean shard costs a third of a run.
    assert run_through_gap(12_200) <= 3
    assert run_through_gap(31_200) <= 2
    assert run_through_gap(200_000) == 0  # a clean shard of that size costs more than a run
    assert run_through_gap(0) > run_through_gap(1_500) >= run_through_gap(5_000) >= run_through_gap(12_200)
    assert run_through_gap(None) == RUN_THROUGH_CLEAN_SHARDS


def test_run_ranges_run_through_fewer_clean_shards_when_shards_are_large() -> None:
    stale = ["s000", "s002", "s003", "s006", "s015"]
    assert run_ranges(stale, 16, documents_per_shard=1_000) == [("s000", "s006"), ("s015", "s015")]
    assert run_ranges(stale, 16, documents_per_shard=200_000) == [
        ("s000", "s000"),
        ("s002", "s003"),
        ("s006", "s006"),
        ("s015", "s015"),
    ]
    assert run_ranges(stale, 16) == shard_ranges(stale, 16, max_gap=RUN_THROUGH_CLEAN_SHARDS)


def test_documents_per_shard_is_the_mean_over_known_shards() -> None:
    summaries = {s: ShardSummary(s, n, 0, "", "", 0) for s, n in (("s000", 10), ("s001", 30))}
    assert documents_per_shard(summaries) == 20
    assert documents_per_shard({}) is None
