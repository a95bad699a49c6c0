"""What starts refreshes: the change sensor, the TTL sensor and the (optional) refresh schedule.

Each requests runs for the affected shards only, grouped into ranges of consecutive shards (one run
each): the source's changes run the whole chain, expired vectors ``embeddings`` and ``vector_table``.
Automation handles model and chunker changes.
"""

from collections.abc import Sequence

import dagster as dg

from embedding_assets.assets import SOURCE_DOCUMENTS
from embedding_assets.core.settings import Settings
from embedding_assets.resources import PipelineResource
from embedding_assets.shard_runs import range_requests, source_observation


def build_triggers(
    settings: Settings, chain: Sequence[dg.AssetsDefinition]
) -> tuple[list[dg.SensorDefinition], list[dg.ScheduleDefinition]]:
    """The triggers of ``chain`` (raw_documents, chunks, embeddings, vector_table)."""
    shard_count = settings.shards
    running, stopped = dg.DefaultSensorStatus.RUNNING, dg.DefaultSensorStatus.STOPPED
    chain_keys = [asset.key for asset in chain]
    reembed = chain[2:]  # embeddings and vector_table

    @dg.sensor(
        minimum_interval_seconds=settings.scan_interval_seconds,
        default_status=running,
        # Its runs name their assets (the chain); source_documents is listed so its page shows who observes it.
        asset_selection=dg.AssetSelection.assets(*chain) | dg.AssetSelection.keys(SOURCE_DOCUMENTS),
        description="On by default, every EMBEDDING_ASSETS_SCAN_INTERVAL_SECONDS: records the source's changes in "
        "the change index, observes source_documents for the shards that changed, and runs the chain for those "
        "shards only (consecutive shards in one run). Its first tick runs only the shards the table does not "
        "already reflect, so opening the UI after `make demo` starts nothing.",
    )
    def source_change_sensor(
        context: dg.SensorEvaluationContext, pipeline: PipelineResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Records one batch of the source's changes in the change index (its change feed, or a listing
        diff for a folder) and refreshes the shards changed since the last tick: the whole chain, one
        run per range. The cursor is the index's generation, so an idle tick costs the sync alone. The
        first tick (no cursor) refreshes only the shards the table does not already reflect."""
        index = pipeline.get()
        sync = index.sync(drain=False)
        changed = index.changes.changed_since(_generation(context.cursor))
        if context.cursor is None and changed:
            stale = set(index.stale_shards())
            changed = [summary for summary in changed if summary.shard in stale]
        feed = {"keys_read": sync.keys_read, "keys_deleted": sync.keys_deleted, **index.source.metrics()}
        if not changed:
            figures = ", ".join(f"{name} {value:g}" for name, value in feed.items())
            skip = f"no change to index ({figures}; {sync.seconds:.2f} s)"
            if context.cursor == str(sync.generation):
                return dg.SkipReason(skip)
            return dg.SensorResult(skip_reason=skip, cursor=str(sync.generation))
        context.log.info(f"{len(changed)} shard(s) changed; {sync.keys_read} key(s) read in {sync.seconds:.2f} s")
        shards = [summary.shard for summary in changed]
        return dg.SensorResult(
            # Run keys carry the generation: a tick that crashed after recording replays to the same keys.
            run_requests=range_requests(shards, shard_count, chain_keys, f"source:{sync.generation}"),
            asset_events=[source_observation(summary, feed) for summary in changed],
            cursor=str(sync.generation),
        )

    @dg.sensor(
        minimum_interval_seconds=3600,
        default_status=running if settings.ttl_days else stopped,
        asset_selection=reembed,
        description="Hourly: re-embeds the shards holding vectors older than EMBEDDING_ASSETS_TTL_DAYS. "
        + (
            f"On: vectors expire after {settings.ttl_days:g} days."
            if settings.ttl_days
            else "Off because EMBEDDING_ASSETS_TTL_DAYS is not set; setting it turns this sensor on."
        ),
    )
    def ttl_expiry_sensor(
        context: dg.SensorEvaluationContext, pipeline: PipelineResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Re-embeds the shards holding vectors older than EMBEDDING_ASSETS_TTL_DAYS."""
        index = pipeline.get()
        cutoff = index.expire_before()
        if cutoff is None:
            return dg.SkipReason("EMBEDDING_ASSETS_TTL_DAYS is not set: vectors never expire")
        expired = index.store.expired_shards(index.embedder.model_version, cutoff)
        if not expired:
            return dg.SkipReason(f"no vector older than {cutoff:%Y-%m-%d %H:%M} UTC")
        reason = f"ttl:{cutoff:%Y-%m-%d}"  # at most one request per shard range and day
        return dg.SensorResult(run_requests=range_requests(expired, shard_count, [a.key for a in reembed], reason))

    @dg.schedule(
        cron_schedule=settings.refresh_cron,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        target=chain,
        execution_timezone="UTC",
        description=f"Off by default (the change sensor already follows the source). Once started (its toggle "
        "here, or `dagster schedule start -w workspace.yaml refresh_schedule`), on the cron "
        f"EMBEDDING_ASSETS_REFRESH_CRON ({settings.refresh_cron}, UTC): reconciles the change index with a full "
        "listing of the source and refreshes every shard that differs from the table or holds expired vectors.",
    )
    def refresh_schedule(
        context: dg.ScheduleEvaluationContext, pipeline: PipelineResource
    ) -> list[dg.RunRequest] | dg.SkipReason:
        """On a cron (EMBEDDING_ASSETS_REFRESH_CRON, off by default): reconcile the change index with a
        full listing of the source, compare it with the fingerprints recorded beside the table, and
        refresh every shard that differs or holds expired vectors."""
        index = pipeline.get()
        index.sync(full=True)
        stale = index.stale_shards()
        if not stale:
            return dg.SkipReason("the table matches the source")
        tick = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
        return range_requests(stale, shard_count, chain_keys, f"schedule:{tick}")

    return [source_change_sensor, ttl_expiry_sensor], [refresh_schedule]


def _generation(cursor: str | None) -> int:
    """The change index generation a cursor holds (0 for none, or a cursor of an older release)."""
    return int(cursor) if cursor and cursor.isdigit() else 0
