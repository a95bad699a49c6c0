"""When assets re-materialize on their own, and when the UI calls them late. Each part says why."""

from datetime import timedelta
from typing import Any

import dagster as dg

# Conditions on assets. Dagster 1.13 types some builders for assets and others for assets-or-checks,
# and its generic is invariant, so the combinations below (all documented) are typed loosely.
Condition = dg.AutomationCondition[Any]


def follow_upstream() -> Condition:
    """For chunks, embeddings and vector_table: refresh exactly the shards that need it."""
    code_version_changed: Condition = dg.AutomationCondition.code_version_changed()
    return (
        # A shard's upstream was re-materialized (the change sensor, the TTL sensor, a manual run):
        # eager() requests that shard only, and never while its upstream is missing or running.
        dg.AutomationCondition.eager()
        # The code version changed (the embedding model, its dimensions, the chunker or its sizes):
        # every shard's vectors are stale, so every shard is requested once.
        | code_version_changed.since_last_handled()
    ).with_label("shard refreshed upstream, or model/chunker changed (all shards)")


def evaluate_after_refresh() -> Condition:
    """For retrieval_eval: re-evaluate once the table changed and no shard is still being written."""
    # eager() waits for upstream runs in progress and for missing shards, so one eval follows a backfill.
    return dg.AutomationCondition.eager().with_label("table refreshed, no shard in progress: re-evaluate")


def index_freshness(hours: float) -> dg.FreshnessPolicy:
    """Flags the table when no shard has been refreshed for ``hours`` (warns at half). It only
    reports: the sensors and automation above do the refreshing."""
    return dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=hours), warn_window=timedelta(hours=hours / 2))


def index_after_refresh() -> Condition:
    """For vector_index: fold new rows into the ANN index (or retrain it) after the table changed."""
    return (
        # eager(): once any shard of vector_table was re-materialized, and never while one is still in
        # progress or missing, so the index step follows a backfill once instead of once per shard.
        # It is its own asset (its own step and run), so no shard's write ever waits for a retrain.
        # eager() also excludes a run of vector_index itself in progress: a long retrain is never
        # requested twice.
        dg.AutomationCondition.eager().with_label("table refreshed, no shard in progress: update the index")
    )
