"""The change sensor, the TTL sensor and the refresh schedule, ticked against a real instance."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from embedding_assets.assembly import build_definitions, build_resources
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_keys, shard_of
from embedding_assets_tests.pipeline_helpers import asset_key, materialize, metadata, tick_sensor

RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def tick(settings: Settings, instance: dg.DagsterInstance, name: str, cursor: str | None = None):
    return tick_sensor(build_definitions(settings), name, settings, instance, cursor)


def ranges(result: dg.SensorResult) -> list[tuple[str, str]]:
    return [(r.tags[RANGE[0]], r.tags[RANGE[1]]) for r in result.run_requests]


def test_change_sensor_requests_exactly_the_changed_shards(settings: Settings) -> None:
    source = Path(settings.source_dir)
    with dg.instance_for_test() as instance:
        first = tick(settings, instance, "source_change_sensor")
        assert ranges(first) == [("s000", "s003")]
        chain = ["raw_documents", "chunks", "embeddings", "vector_table"]  # the (live) model's whole chain, in one run
        assert first.run_requests[0].asset_selection == [asset_key(settings, a) for a in chain]
        observed = {e.partition: e.tags["dagster/data_version"] for e in first.asset_events}
        assert set(observed) == set(shard_keys(settings.shards))

        unchanged = tick(settings, instance, "source_change_sensor", first.cursor)
        assert isinstance(unchanged, dg.SkipReason)
        assert unchanged.skip_message.startswith("no change to index (keys_read ")  # files just written are re-read

        (source / "while.txt").write_text("The while statement, rewritten.")
        edited = tick(settings, instance, "source_change_sensor", first.cursor)
        shard = shard_of("while.txt", settings.shards)
        assert ranges(edited) == [(shard, shard)]
        assert [e.partition for e in edited.asset_events] == [shard]
        assert edited.asset_events[0].tags["dagster/data_version"] != observed[shard]
        # A tick that recorded the change but crashed before its cursor was saved replays to the same run key.
        replayed = tick(settings, instance, "source_change_sensor", first.cursor)
        assert [r.run_key for r in replayed.run_requests] == [r.run_key for r in edited.run_requests]

        (source / "if.txt").unlink()
        deleted = tick(settings, instance, "source_change_sensor", edited.cursor)
        assert ranges(deleted) == [(shard_of("if.txt", settings.shards),) * 2]


@pytest.mark.slow
def test_the_first_tick_over_an_existing_index_requests_nothing(settings: Settings, minilm: Embedder) -> None:
    """Opening the UI on an index built by `make demo` (no sensor cursor yet) launches no run."""
    with dg.instance_for_test() as instance:
        materialize(settings, instance)
        first = tick(settings, instance, "source_change_sensor")
        assert isinstance(first, dg.SensorResult) and first.run_requests == [] and first.cursor == "1"
        assert first.skip_reason is not None and "no change to index" in first.skip_reason.skip_message
        (Path(settings.source_dir) / "while.txt").write_text("The while statement, rewritten.")
        edited = tick(settings, instance, "source_change_sensor", first.cursor)
        assert ranges(edited) == [(shard_of("while.txt", settings.shards),) * 2]


@pytest.mark.slow
def test_ttl_sensor_and_ttl_refresh_re_embed_expired_vectors(settings: Settings, minilm: Embedder) -> None:
    with dg.instance_for_test() as instance:
        materialize(settings, instance)
        off = tick(settings, instance, "ttl_expiry_sensor")
        assert isinstance(off, dg.SkipReason) and "TTL_DAYS is not set" in off.skip_message
        assert build_definitions(settings).resolve_sensor_def("ttl_expiry_sensor").default_status == (
            dg.DefaultSensorStatus.STOPPED
        )

        expiring = Settings(**{**settings.__dict__, "ttl_days": 1e-9})  # every stored vector has expired
        expired = tick(expiring, instance, "ttl_expiry_sensor")
        assert ranges(expired) == [("s000", "s003")]
        reembed = [asset_key(settings, "embeddings"), asset_key(settings, "vector_table")]
        assert expired.run_requests[0].asset_selection == reembed

        job = build_definitions(expiring).resolve_implicit_global_asset_job_def()
        job.execute_in_process(instance=instance, partition_key="s001", asset_selection=reembed)
        figures = metadata(instance, reembed[0], "s001")
        assert figures["chunks_embedded"] == figures["chunks"] > 0 and figures["chunks_reused"] == 0
        assert metadata(instance, reembed[1], "s001")["chunks_updated"] == figures["chunks"]


@pytest.mark.slow
def test_refresh_schedule_reconciles_with_the_table(settings: Settings, minilm: Embedder) -> None:
    assert not build_definitions(settings).schedules  # no cron set: no schedule
    with pytest.raises(ConfigError, match="EMBEDDING_ASSETS_REFRESH_CRON must be a cron of 5 fields"):
        build_definitions(Settings(**{**settings.__dict__, "refresh_cron": "hourly"}))
    settings = Settings(**{**settings.__dict__, "refresh_cron": "0 * * * *"})
    schedule = build_definitions(settings).resolve_schedule_def("refresh_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING  # setting the cron turns it on

    def run_schedule(instance: dg.DagsterInstance):
        with dg.build_schedule_context(
            instance=instance,
            resources=build_resources(settings),
            scheduled_execution_time=datetime(2026, 11, 25, 13, tzinfo=UTC),
        ) as context:  # closed on return, like tick_sensor's
            return schedule.evaluate_tick(context)

    with dg.instance_for_test() as instance:
        assert len(run_schedule(instance).run_requests) == 1  # nothing indexed: every shard, one range
        materialize(settings, instance)
        assert run_schedule(instance).skip_message == "every active model's table matches the source"
        (Path(settings.source_dir) / "new.md").write_text("# New\n\nA page the table has never seen.")
        shard = shard_of("new.md", settings.shards)
        requests = run_schedule(instance).run_requests
        assert [(r.tags[RANGE[0]], r.tags[RANGE[1]]) for r in requests] == [(shard, shard)]
