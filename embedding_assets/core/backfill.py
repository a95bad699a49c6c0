"""When a model's first backfill may take its next range: in bounded runs, behind every other refresh.

A model added to the active list starts with every shard missing (never materialized). Its first
backfill runs in the background, one bounded range at a time, at a low run priority, at most a few runs
in flight, and it pauses while any other run waits for a slot or after one of its own runs failed (an
exhausted budget stops it there, never the live model's refreshes). Shards that exist but went stale
are the change sensor's, automation's and the schedule's, as for every model.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from embedding_assets.core.shards import shard_keys, shard_ranges

BACKFILL_TAG = "embedding_assets/backfill"  # the model a background backfill run is for
PRIORITY_TAG = "dagster/priority"  # the queue orders runs by it (default 0)
BACKFILL_PRIORITY = -1  # behind every refresh
BACKFILL_NICENESS = 10  # a backfill run's process, so a refresh on the same worker gets the CPU first
MAX_RUNS_IN_FLIGHT = 2  # per model: of the production profile's 8 run slots
SHARDS_PER_RANGE = 16  # a run's length bounds how long a refresh that arrives behind it can wait


@dataclass(frozen=True)
class BackfillState:
    """What the backfill sensor reads on a tick, for one model."""

    missing: Sequence[str]  # the model's shards its table was never written for
    shard_count: int
    queued_elsewhere: int  # runs waiting for a slot that are not this model's backfill runs
    in_flight: Collection[str]  # shards of this model's backfill runs queued or running
    runs_in_flight: int
    last_failure: str | None = None  # this model's newest backfill run, if it failed


@dataclass(frozen=True)
class BackfillStep:
    """The range to launch now (empty: none), and why, for the sensor's tick."""

    shards: list[str]
    reason: str


def next_backfill_range(
    state: BackfillState, *, max_runs: int = MAX_RUNS_IN_FLIGHT, max_shards: int = SHARDS_PER_RANGE
) -> BackfillStep:
    """The next bounded range of missing shards not already in flight, unless the backfill must wait."""
    done = state.shard_count - len(state.missing)
    progress = f"{done}/{state.shard_count} shards materialized"
    if not state.missing:
        return BackfillStep([], f"complete: {progress}")
    if state.last_failure:
        return BackfillStep(
            [], f"paused ({progress}): backfill run {state.last_failure} failed; re-execute it once fixed"
        )
    if state.queued_elsewhere:
        return BackfillStep([], f"waiting ({progress}): {state.queued_elsewhere} other run(s) queued")
    if state.runs_in_flight >= max_runs:
        return BackfillStep([], f"{state.runs_in_flight} backfill run(s) in flight ({progress})")
    waiting = [shard for shard in state.missing if shard not in set(state.in_flight)]
    if not waiting:
        return BackfillStep([], f"every missing shard is in a backfill run ({progress})")
    first, last = shard_ranges(waiting, state.shard_count, max_per_range=max_shards)[0]
    keys = shard_keys(state.shard_count)
    return BackfillStep(
        list(keys[keys.index(first) : keys.index(last) + 1]), f"{progress}; backfilling {first}...{last}"
    )
