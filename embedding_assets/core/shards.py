"""Shards: the fixed, stable partitioning of the document-id space that every asset shares."""

from functools import cache

from embedding_assets.core.hashing import stable_bucket

MAX_SHARDS = 65_536


@cache
def shard_keys(shard_count: int) -> tuple[str, ...]:
    """All shard keys in order: ``s000``, ``s001``, ... (zero-padded so they sort and range correctly)."""
    if not 1 <= shard_count <= MAX_SHARDS:
        raise ValueError(f"shard count must be between 1 and {MAX_SHARDS}, got {shard_count}")
    width = max(3, len(str(shard_count - 1)))
    return tuple(f"s{i:0{width}d}" for i in range(shard_count))


def shard_of(doc_id: str, shard_count: int) -> str:
    """The shard key that owns ``doc_id``."""
    return shard_keys(shard_count)[stable_bucket(doc_id, shard_count)]


# Clean shards a refresh runs through rather than start another run, when the shards' size is unknown.
# `make bench` (item 4b) measured a run at ~0.57 s and an unchanged shard inside one at ~0.14 s (mostly
# the events the instance stores), on shards of a few hundred documents.
RUN_THROUGH_CLEAN_SHARDS = 4
# What a refresh pays for one more run, and for one clean shard inside a run, on the local profile's
# SQLite instance, from benchmarks/pipeline_scale.py's per-run figures (10^6 documents over 64 shards,
# 15,600 a shard, a 10-document edit, measured at a14d845): a run ~3.0 s of its own (~30 events,
# creating it, starting five steps); a clean shard's ~10 events and its reads ~0.5 s at 15,600
# documents (its stages answer from the staged files' keys; the table write and the checks still read
# it). Checked again at b8facc2 (stages column-wise, the run heap frozen as it then was): a run
# ~1.45 s (its span less one stale shard's ~0.55 s, plus ~0.5 s outside it) and a clean shard
# ~0.42 s (~0.27 s of its own, measured outside Dagster, and ~0.15 s of events) still give 3 at
# 15,600 documents; the constants are the older, larger pair, whose ratio is about the same.
RUN_SECONDS = 3.0
CLEAN_SHARD_SECONDS = 0.5
CLEAN_SHARD_SECONDS_PER_DOCUMENT = 0.5 / 15_600


def run_through_gap(documents_per_shard: float | None) -> int:
    """How many clean shards a refresh runs through rather than start another run: as many as cost less
    than a run, for shards of ``documents_per_shard`` documents (None: ``RUN_THROUGH_CLEAN_SHARDS``).
    A clean shard inside a run pays its events and its O(shard) reads, so large shards get none."""
    if documents_per_shard is None:
        return RUN_THROUGH_CLEAN_SHARDS
    clean = CLEAN_SHARD_SECONDS + CLEAN_SHARD_SECONDS_PER_DOCUMENT * max(0.0, documents_per_shard)
    return int(RUN_SECONDS // clean)


def shard_ranges(
    shards: list[str], shard_count: int, max_per_range: int = 256, max_gap: int = 0
) -> list[tuple[str, str]]:
    """Cover ``shards`` with inclusive ranges of consecutive keys (one Dagster run each), none longer
    than ``max_per_range``. Two ranges at most ``max_gap`` unlisted shards apart become one: an
    unchanged shard inside a run costs milliseconds (its stages find their inputs unchanged), a run
    far more. With ``max_gap=0`` no unlisted shard is ever inside a range."""
    keys = shard_keys(shard_count)
    index = {key: i for i, key in enumerate(keys)}
    ranges: list[tuple[str, str]] = []
    # The open range is keys[start..previous]; previous is read only once start is set.
    start: int | None = None
    previous = 0
    for i in sorted(index[s] for s in set(shards)):
        if start is None or i > previous + 1 + max_gap or i - start >= max_per_range:
            if start is not None:
                ranges.append((keys[start], keys[previous]))
            start = i
        previous = i
    if start is not None:
        ranges.append((keys[start], keys[previous]))
    return ranges
