"""What starts refreshes: the change sensor, the TTL sensor and the (optional) refresh schedule.

Each requests runs of ``raw_documents`` or ``embeddings`` for the affected shards only, grouped
into ranges of consecutive shards (one run each); the automation conditions carry every
refreshed shard on down to ``vector_table``.
"""

import json

import dagster as dg

from embedding_assets.core.scan import fingerprint
from embedding_assets.core.settings import Settings
from embedding_assets.resources import PipelineResource
from embedding_assets.shard_runs import range_requests, source_observation


def build_triggers(
    settings: Settings,
    raw_documents: dg.AssetsDefinition,
    embeddings: dg.AssetsDefinition,
    vector_table: dg.AssetsDefinition,
) -> tuple[list[dg.SensorDefinition], list[dg.ScheduleDefinition]]:
    shard_count = settings.shards
    running, stopped = dg.DefaultSensorStatus.RUNNING, dg.DefaultSensorStatus.STOPPED

    @dg.sensor(
        minimum_interval_seconds=settings.scan_interval_seconds, default_status=running, asset_selection=[raw_documents]
    )
    def source_change_sensor(
        context: dg.SensorEvaluationContext, pipeline: PipelineResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Scans the source folder (re-reading only files whose size or mtime changed) and refreshes
        the shards whose documents changed, were added or deleted since the last tick. The cursor holds
        each shard's version, so a tick costs the scan and nothing that grows with the table."""
        scan = pipeline.get().scan()
        changed = scan.changed_since(json.loads(context.cursor) if context.cursor else {})
        if not changed:
            return dg.SkipReason(f"no change in {scan.files} files (scan read {scan.files_read}, {scan.seconds:.2f} s)")
        context.log.info(
            f"{len(changed)} shard(s) changed; scan read {scan.files_read} of {scan.files} files "
            f"in {scan.seconds:.2f} s"
        )
        observations = [source_observation(shard, scan.shards[shard]) for shard in changed]
        versions = scan.versions()
        reason = "source:" + fingerprint((s, versions[s]) for s in changed)
        return dg.SensorResult(
            run_requests=range_requests(changed, shard_count, [raw_documents.key], reason),
            asset_events=observations,
            cursor=json.dumps(versions),
        )

    @dg.sensor(
        minimum_interval_seconds=3600,
        default_status=running if settings.ttl_days else stopped,
        asset_selection=[embeddings, vector_table],
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
        return dg.SensorResult(
            run_requests=range_requests(expired, shard_count, [embeddings.key, vector_table.key], reason)
        )

    @dg.schedule(
        cron_schedule=settings.refresh_cron,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        target=[raw_documents],
        execution_timezone="UTC",
    )
    def refresh_schedule(
        context: dg.ScheduleEvaluationContext, pipeline: PipelineResource
    ) -> list[dg.RunRequest] | dg.SkipReason:
        """On a cron (EMBEDDING_ASSETS_REFRESH_CRON, off by default): compare a fresh scan with the
        table itself and refresh every shard that differs or holds expired vectors."""
        index = pipeline.get()
        stale = index.stale_shards(index.scan())
        if not stale:
            return dg.SkipReason("the table matches the source")
        tick = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
        return range_requests(stale, shard_count, [raw_documents.key], f"schedule:{tick}")

    return [source_change_sensor, ttl_expiry_sensor], [refresh_schedule]
