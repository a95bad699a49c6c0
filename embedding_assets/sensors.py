"""What starts refreshes: the change sensor, the TTL sensor, the refresh schedule (when a cron is set), and each
model's backfill sensor.

Each requests runs for the affected shards only, grouped into ranges of consecutive shards (one run
each, one model each): the source's changes run the live model's whole chain (the other models follow
through their automation), expired vectors ``embeddings`` and ``vector_table``. Automation handles
model and chunker changes.
"""

from collections.abc import Mapping, Sequence

import dagster as dg

from embedding_assets.assets import SOURCE_DOCUMENTS, ModelAssets
from embedding_assets.core.backfill import (
    BACKFILL_PRIORITY,
    BACKFILL_TAG,
    MAX_RUNS_IN_FLIGHT,
    PRIORITY_TAG,
    SHARDS_PER_RANGE,
    BackfillState,
    next_backfill_range,
)
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_keys
from embedding_assets.resources import PipelineResource
from embedding_assets.shard_runs import (
    documents_per_shard,
    range_requests,
    range_tags,
    run_shards,
    source_observation,
)

WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]
IN_FLIGHT = [*WAITING, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def build_triggers(
    settings: Settings, raw_documents: dg.AssetsDefinition, models: Mapping[str, ModelAssets]
) -> tuple[list[dg.SensorDefinition], list[dg.ScheduleDefinition]]:
    """The triggers of every model's chain (raw_documents, then the model's chunks, embeddings and
    vector_table); ``models`` by slug."""
    shard_count = settings.shards
    running, stopped = dg.DefaultSensorStatus.RUNNING, dg.DefaultSensorStatus.STOPPED
    every_asset = [raw_documents, *{a.key: a for m in models.values() for a in m.chain}.values()]

    def chain(slug: str) -> list[dg.AssetKey]:
        return [raw_documents.key, *(asset.key for asset in models[slug].chain)]

    @dg.sensor(
        minimum_interval_seconds=settings.scan_interval_seconds,
        default_status=running,
        # Its runs name their assets (the chain); source_documents is listed so its page shows who observes it.
        asset_selection=dg.AssetSelection.assets(*every_asset, SOURCE_DOCUMENTS),
        description="On by default, every EMBEDDING_ASSETS_SCAN_INTERVAL_SECONDS: records the source's changes in "
        "the change index, observes source_documents for the shards that changed, and runs the live model's chain "
        "for those shards only (consecutive shards in one run; the other active models follow through their "
        "automation). Its first tick runs only the shards the live table does not already reflect, so opening "
        "the UI after `make demo` starts nothing.",
    )
    def source_change_sensor(
        context: dg.SensorEvaluationContext, pipeline: PipelineResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Records one batch of the source's changes in the change index (its change feed, or a listing
        diff for a folder) and refreshes the shards changed since the last tick: the live model's whole
        chain, one run per range (every other active model follows through its own automation). The
        cursor is the index's generation, so an idle tick costs the sync alone. The first tick (no
        cursor) refreshes only the shards the live table does not already reflect."""
        index = pipeline.get()
        live = index.live_model()
        sync = index.sync(drain=False)
        changed = index.changes.changed_since(_generation(context.cursor))
        summaries = index.changes.summaries() if changed else {}
        if context.cursor is None and changed:
            stale = set(index.stale_shards(live.model_version))
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
            run_requests=range_requests(
                shards, shard_count, chain(live.slug), f"source:{sync.generation}", documents_per_shard(summaries)
            ),
            asset_events=[source_observation(summary, feed) for summary in changed],
            cursor=str(sync.generation),
        )

    @dg.sensor(
        minimum_interval_seconds=3600,
        default_status=running if settings.ttl_days else stopped,
        asset_selection=[a for m in models.values() for a in (m.embeddings, m.vector_table)],
        description="Hourly: re-embeds, for every active model, the shards holding vectors older than "
        "EMBEDDING_ASSETS_TTL_DAYS. "
        + (
            f"On: vectors expire after {settings.ttl_days:g} days."
            if settings.ttl_days
            else "Off because EMBEDDING_ASSETS_TTL_DAYS is not set; setting it turns this sensor on."
        ),
    )
    def ttl_expiry_sensor(
        context: dg.SensorEvaluationContext, pipeline: PipelineResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Re-embeds, for every active model, the shards holding vectors older than EMBEDDING_ASSETS_TTL_DAYS."""
        index = pipeline.get()
        cutoff = index.expire_before()
        if cutoff is None:
            return dg.SkipReason("EMBEDDING_ASSETS_TTL_DAYS is not set: vectors never expire")
        requests = []
        for model in index.models:
            expired = index.store.expired_shards(model.model_version, cutoff)
            keys = [models[model.slug].embeddings.key, models[model.slug].vector_table.key]
            # At most one request per model, shard range and day.
            requests += range_requests(expired, shard_count, keys, f"ttl:{model.slug}:{cutoff:%Y-%m-%d}")
        if not requests:
            return dg.SkipReason(f"no vector older than {cutoff:%Y-%m-%d %H:%M} UTC")
        return dg.SensorResult(run_requests=requests)

    backfills = [_backfill_sensor(settings, slug, chain(slug)[1:]) for slug in models]
    sensors = [source_change_sensor, ttl_expiry_sensor, *backfills]
    if settings.refresh_cron is None:
        return sensors, []
    cron = settings.refresh_cron

    def refresh_schedule(
        context: dg.ScheduleEvaluationContext, pipeline: PipelineResource
    ) -> list[dg.RunRequest] | dg.SkipReason:
        """On the cron EMBEDDING_ASSETS_REFRESH_CRON: reconcile the change index with a full listing of the
        source, compare it with the fingerprints recorded beside each active model's table, and refresh
        every shard that differs or holds expired vectors, one run per model and range."""
        index = pipeline.get()
        index.sync(full=True)
        tick = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
        requests = [
            request
            for model in index.models
            for request in range_requests(
                index.stale_shards(model.model_version), shard_count, chain(model.slug), f"schedule:{model.slug}:{tick}"
            )
        ]
        return requests or dg.SkipReason("every active model's table matches the source")

    try:
        schedule = dg.schedule(
            cron_schedule=cron,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            target=every_asset,
            execution_timezone="UTC",
            description=f"On the cron EMBEDDING_ASSETS_REFRESH_CRON ({cron}, UTC), a safety net beside the change "
            "sensor: reconciles the change index with a full listing of the source and refreshes every shard that "
            "differs from an active model's table or holds expired vectors, one run per model and range.",
        )(refresh_schedule)
    except dg.DagsterInvalidDefinitionError:
        raise ConfigError(
            f"EMBEDDING_ASSETS_REFRESH_CRON must be a cron of 5 fields, like '0 * * * *'; got {cron!r}"
        ) from None
    return sensors, [schedule]


def _backfill_sensor(settings: Settings, slug: str, assets: Sequence[dg.AssetKey]) -> dg.SensorDefinition:
    """``<slug>_backfill_sensor``: the model's missing shards (``assets``' last, its vector_table, never
    materialized), one bounded range at a time."""

    @dg.sensor(
        name=f"{slug}_backfill_sensor",
        minimum_interval_seconds=settings.automation_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=list(assets),
        description=f"On by default, every EMBEDDING_ASSETS_AUTOMATION_INTERVAL_SECONDS: runs {slug}'s first "
        "backfill in the background, the shards its vector_table was never materialized for, one range of at "
        f"most {SHARDS_PER_RANGE} shards per run at priority -1, at most {MAX_RUNS_IN_FLIGHT} runs in flight, "
        "only while no other run is queued. A failed run of it pauses it until re-executed. Its ticks say how "
        "many shards are materialized; stale shards are the change sensor's.",
    )
    def backfill_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineResource) -> dg.SensorResult:
        """Runs this model's first backfill (after the model joins EMBEDDING_ASSETS_MODELS) in the
        background: the shards its vector_table was never materialized for, one bounded range per run
        at a low priority (dagster/priority -1), at most two runs in flight, and only while no other
        run waits for a slot; a failed run of it (an exhausted budget, say) pauses it until re-executed.
        Its tick says how many shards are materialized. Stale shards are the change sensor's."""
        index = pipeline.get()
        instance = context.instance
        materialized = instance.get_materialized_partitions(assets[-1])
        ours = instance.get_runs(dg.RunsFilter(tags={BACKFILL_TAG: slug}, statuses=IN_FLIGHT))
        newest = instance.get_runs(dg.RunsFilter(tags={BACKFILL_TAG: slug}), limit=1)
        failed = newest[0].run_id if newest and newest[0].status == dg.DagsterRunStatus.FAILURE else None
        waiting = instance.get_runs_count(dg.RunsFilter(statuses=WAITING))
        state = BackfillState(
            missing=[shard for shard in shard_keys(settings.shards) if shard not in materialized],
            shard_count=settings.shards,
            queued_elsewhere=waiting - sum(run.status in WAITING for run in ours),
            in_flight={shard for run in ours for shard in run_shards(run.tags, settings.shards)},
            runs_in_flight=len(ours),
            last_failure=failed,
        )
        step = next_backfill_range(state)
        if not step.shards:
            return dg.SensorResult(skip_reason=step.reason)
        first, last = step.shards[0], step.shards[-1]
        tags = range_tags(first, last) | {BACKFILL_TAG: slug, PRIORITY_TAG: str(BACKFILL_PRIORITY)}
        # The run key names the change index generation and the shards missing: the same range is requested
        # again only once something changed.
        key = f"backfill:{slug}:{first}...{last}:{index.changes.generation_of(last)}:{len(state.missing)}"
        context.log.info(step.reason)
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=key, asset_selection=list(assets), tags=tags)])

    return backfill_sensor


def _generation(cursor: str | None) -> int:
    """The change index generation a cursor holds (0 for none, or a cursor of an older release)."""
    return int(cursor) if cursor and cursor.isdigit() else 0
