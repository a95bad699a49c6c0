"""When assets re-materialize on their own, and when the UI calls them late. Each part says why."""

from datetime import timedelta

import dagster as dg


def follow_upstream() -> dg.AutomationCondition:
    """For chunks, embeddings and vector_table: refresh exactly the shards that need it."""
    return (
        # A shard's upstream was re-materialized (the change sensor, the TTL sensor, a manual run):
        # eager() requests that shard only, and never while its upstream is missing or running.
        dg.AutomationCondition.eager()
        # The code version changed (the embedding model, its dimensions, the chunker or its sizes):
        # every shard's vectors are stale, so every shard is requested once.
        | dg.AutomationCondition.code_version_changed().since_last_handled()
    )


def evaluate_after_refresh() -> dg.AutomationCondition:
    """For retrieval_eval: re-evaluate once the table changed and no shard is still being written."""
    # eager() waits for upstream runs in progress and for missing shards, so one eval follows a backfill.
    return dg.AutomationCondition.eager()


def index_freshness(hours: float) -> dg.FreshnessPolicy:
    """Flags the table when no shard has been refreshed for ``hours`` (warns at half). It only
    reports: the sensors and automation above do the refreshing."""
    return dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=hours), warn_window=timedelta(hours=hours / 2))
