"""When assets re-materialize on their own, and when the UI calls them late. Each part says why."""

from datetime import timedelta
from typing import Any

import dagster as dg

# Conditions on assets. Dagster 1.13 types some builders for assets and others for assets-or-checks,
# and its generic is invariant, so the combinations below (all documented) are typed loosely.
Condition = dg.AutomationCondition[Any]


def follow_upstream() -> Condition:
    """For chunks, embeddings and vector_table: refresh exactly the shards that need it."""
    # Typed Any: Dagster types with_label() on its built-in conditions only, which these all are.
    code_version_changed: Any = dg.AutomationCondition.code_version_changed()
    upstream_refreshed: Any = (
        # A shard's upstream was re-materialized (the change sensor, the TTL sensor, a manual run):
        # that shard only, and never while its upstream is missing or running. This is eager() without
        # its newly_missing() half: a model added to EMBEDDING_ASSETS_MODELS starts with every shard
        # missing, and its first backfill is the backfill sensor's (bounded ranges, low priority).
        dg.AutomationCondition.any_deps_updated().since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    )
    either: Any = (
        upstream_refreshed.with_label("a shard's upstream was refreshed")
        # The code version changed (the embedding model, its dimensions, the chunker or its sizes):
        # every shard's vectors are stale, so every shard is requested once.
        | code_version_changed.since_last_handled().with_label("the model or chunker changed")
    )
    labelled: Condition = either.with_label("shard refreshed upstream, or model/chunker changed (all shards)")
    return labelled


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
