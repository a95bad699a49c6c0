"""What starts refreshes: the change sensor, the TTL sensor and the (optional) refresh schedule.

Each requests runs of ``raw_documents`` or ``embeddings`` for the affected shards only, grouped
into ranges of consecutive shards (one run each); the automation conditions carry every
refreshed shard on down to ``vector_table``.
"""

import json
from collections.abc import Sequence

import dagster as dg

from embedding_assets.assets import SOURCE_DOCUMENTS
from embedding_assets.core.reconcile import stale_shards
from embedding_assets.core.scan import ScanResult, ShardState, SourceScanner, fingerprint
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import RUN_THROUGH_CLEAN_SHARDS, shard_ranges
from embedding_assets.resources import EmbedderResource, LanceDBResource, SourceFolderResource, StagingResource

DATA_VERSION_TAG = "dagster/data_version"  # the tag Dagster reads an observation's data version from


def scan_source(source: SourceFolderResource, staging: StagingResource, shard_count: int) -> ScanResult:
    return SourceScanner(source.folder(), staging.staging().scan_state(), shard_count).scan()


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover the shards ``first`` to ``last``."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def source_observation(shard: str, state: ShardState) -> dg.AssetObservation:
    """What the source holds for ``shard``, as an observation of source_documents (data version = its version)."""
    return dg.AssetObservation(
        SOURCE_DOCUMENTS,
        partition=shard,
        tags={DATA_VERSION_TAG: state.version},
        metadata={"documents": len(state.documents), "skipped": len(state.skipped), "fingerprint": state.fingerprint},
    )


def range_requests(
    shards: Sequence[str], shard_count: int, assets: Sequence[dg.AssetKey], reason: str
) -> list[dg.RunRequest]:
    """One run request per range of consecutive shards; ``reason`` + range is the run key, so a
    tick that sees the same state again does not launch the same work twice."""
    return [
        dg.RunRequest(run_key=f"{reason}:{first}...{last}", asset_selection=list(assets), tags=range_tags(first, last))
        for first, last in shard_ranges(list(shards), shard_count, max_gap=RUN_THROUGH_CLEAN_SHARDS)
    ]


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
        context: dg.SensorEvaluationContext, source: SourceFolderResource, staging: StagingResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Scans the source folder (re-reading only files whose size or mtime changed) and refreshes
        the shards whose documents changed, were added or deleted. The cursor holds each shard's version."""
        scan = scan_source(source, staging, shard_count)
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
        context: dg.SensorEvaluationContext, embedder: EmbedderResource, vector_store: LanceDBResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Re-embeds the shards holding vectors older than EMBEDDING_ASSETS_TTL_DAYS."""
        cutoff = vector_store.expire_before()
        if cutoff is None:
            return dg.SkipReason("EMBEDDING_ASSETS_TTL_DAYS is not set: vectors never expire")
        expired = vector_store.store().expired_shards(embedder.get().model_version, cutoff)
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
        context: dg.ScheduleEvaluationContext,
        source: SourceFolderResource,
        staging: StagingResource,
        embedder: EmbedderResource,
        vector_store: LanceDBResource,
    ) -> list[dg.RunRequest] | dg.SkipReason:
        """On a cron (EMBEDDING_ASSETS_REFRESH_CRON, off by default): compare a fresh scan with the
        table itself and refresh every shard that differs or holds expired vectors."""
        scan = scan_source(source, staging, shard_count)
        stale = stale_shards(scan, vector_store.store(), embedder.get().model_version, vector_store.expire_before())
        if not stale:
            return dg.SkipReason("the table matches the source")
        tick = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
        return range_requests(stale, shard_count, [raw_documents.key], f"schedule:{tick}")

    return [source_change_sensor, ttl_expiry_sensor], [refresh_schedule]
