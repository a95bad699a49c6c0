"""Runs over ranges of shards, and observations of what the source holds: shared by the sensors,
the schedule and ``refresh``."""

from collections.abc import Mapping, Sequence

import dagster as dg

from embedding_assets.assets import SOURCE_DOCUMENTS
from embedding_assets.core.change_index import ShardSummary
from embedding_assets.core.shards import run_through_gap, shard_keys, shard_ranges

DATA_VERSION_TAG = "dagster/data_version"  # the tag Dagster reads an observation's data version from
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover the shards ``first`` to ``last``."""
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}


def run_shards(tags: Mapping[str, str], shard_count: int) -> list[str]:
    """The shards a ranged run covers, from its tags ([] for a run of no range)."""
    keys = shard_keys(shard_count)
    first, last = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if first not in keys or last not in keys:
        return []
    return list(keys[keys.index(first) : keys.index(last) + 1])


def run_ranges(
    shards: Sequence[str], shard_count: int, documents_per_shard: float | None = None
) -> list[tuple[str, str]]:
    """The ranges one refresh of ``shards`` runs, running through as many clean shards as cost less
    than another run, for shards of ``documents_per_shard`` documents (see ``run_through_gap``)."""
    return shard_ranges(list(shards), shard_count, max_gap=run_through_gap(documents_per_shard))


def range_requests(
    shards: Sequence[str],
    shard_count: int,
    assets: Sequence[dg.AssetKey],
    reason: str,
    documents_per_shard: float | None = None,
) -> list[dg.RunRequest]:
    """One run request per range of ``run_ranges``; ``reason`` + range is the run key, so a tick that
    sees the same state again does not launch the same work twice."""
    return [
        dg.RunRequest(run_key=f"{reason}:{first}...{last}", asset_selection=list(assets), tags=range_tags(first, last))
        for first, last in run_ranges(shards, shard_count, documents_per_shard)
    ]


def documents_per_shard(summaries: Mapping[str, ShardSummary]) -> float | None:
    """The mean documents of the shards the change index knows (None: it knows none yet)."""
    return sum(s.documents for s in summaries.values()) / len(summaries) if summaries else None


def source_observation(summary: ShardSummary, feed: Mapping[str, float] | None = None) -> dg.AssetObservation:
    """What the source holds for a shard, as an observation of source_documents (data version = its
    version), with the figures of the tick that found it changed (``feed``: keys read, slot lag, queue
    depth, numeric so the UI plots them)."""
    return dg.AssetObservation(
        SOURCE_DOCUMENTS,
        partition=summary.shard,
        tags={DATA_VERSION_TAG: summary.version},
        metadata={
            "documents": summary.documents,
            "skipped": summary.skipped,
            "fingerprint": summary.fingerprint,
            **(feed or {}),
        },
    )
