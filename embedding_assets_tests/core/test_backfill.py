"""When a model's background backfill takes its next range, and when it waits."""

from embedding_assets.core.backfill import BackfillState, next_backfill_range
from embedding_assets.core.shards import shard_keys

SHARDS = 8
ALL = list(shard_keys(SHARDS))


def state(**changes: object) -> BackfillState:
    values: dict[str, object] = {
        "missing": ALL,
        "shard_count": SHARDS,
        "queued_elsewhere": 0,
        "in_flight": [],
        "runs_in_flight": 0,
    }
    return BackfillState(**(values | changes))  # type: ignore[arg-type]


def test_ranges_are_bounded_and_skip_the_shards_in_flight() -> None:
    step = next_backfill_range(state(), max_shards=3)
    assert step.shards == ["s000", "s001", "s002"] and "0/8 shards materialized" in step.reason
    step = next_backfill_range(state(in_flight=["s000", "s001", "s002"], runs_in_flight=1), max_shards=3)
    assert step.shards == ["s003", "s004", "s005"]
    # Only consecutive missing shards share a run: a materialized shard ends the range.
    assert next_backfill_range(state(missing=["s001", "s002", "s005"]), max_shards=3).shards == ["s001", "s002"]


def test_it_waits_behind_other_runs_and_its_own_cap() -> None:
    waiting = next_backfill_range(state(queued_elsewhere=2))
    assert waiting.shards == [] and "2 other run(s) queued" in waiting.reason
    capped = next_backfill_range(state(in_flight=["s000"], runs_in_flight=2), max_runs=2)
    assert capped.shards == [] and "2 backfill run(s) in flight" in capped.reason


def test_a_failed_run_pauses_it_and_a_fresh_table_completes_it() -> None:
    paused = next_backfill_range(state(last_failure="run-1"))
    assert paused.shards == [] and "run-1 failed" in paused.reason
    done = next_backfill_range(state(missing=[]))
    assert done.shards == [] and done.reason == "complete: 8/8 shards materialized"
    everything_running = next_backfill_range(state(in_flight=ALL, runs_in_flight=1))
    assert everything_running.shards == [] and "every missing shard is in a backfill run" in everything_running.reason
