"""The ANN index of an active model's table, as its own unpartitioned asset, with its recall check.

Building or retraining an index takes minutes at 10^6 rows, so it runs in this step (requested by
automation after refreshes), never inside a shard's ``vector_table`` step: a refresh of one shard
never waits for a retrain. The decisions (threshold, kind, size, fold-in or retrain) are in
``core.ann``.
"""

from typing import Any

import dagster as dg

from embedding_assets.automation import index_after_refresh
from embedding_assets.core import ann
from embedding_assets.resources import PipelineResource

ANN_RECALL = "ann_recall"
# A build racing a shard write can lose its commit (LanceDB retries most conflicts itself); the step
# is idempotent, so the whole step is retried.
INDEX_RETRIES = dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL)


def build_vector_index(vector_table: dg.AssetsDefinition, group_name: str, slug: str) -> dg.AssetsDefinition:
    """The active model ``slug``'s ``vector_index`` asset, downstream of every shard of its
    ``vector_table``, with its recall check."""
    check = dg.AssetCheckSpec(
        ANN_RECALL,
        asset=dg.AssetKey([slug, "vector_index"]),
        description=f"Recall@{ann.RECALL_K} of the indexed search against exact search, for "
        f"{ann.RECALL_SAMPLE} stored vectors as queries; warns under {ann.RECALL_WARN_BELOW}. Passes "
        "without measuring while the table is below EMBEDDING_ASSETS_ANN_MIN_ROWS (no index).",
    )

    # Unpartitioned; the single-run policy only lets `--select '*' --partition-range` include it.
    @dg.asset(
        key_prefix=[slug],
        deps=[vector_table],
        group_name=group_name,
        kinds={"lancedb"},
        automation_condition=index_after_refresh(),
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=INDEX_RETRIES,
        check_specs=[check],
    )
    # Unsubscripted: Dagster 1.13 reads a subscripted MaterializeResult as a tuple of outputs (the check).
    def vector_index(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
        """The vector (ANN) index of the model's table: built once the table holds
        EMBEDDING_ASSETS_ANN_MIN_ROWS rows, then new rows folded in as delta segments (a cost that follows
        the new rows), and retrained when the table doubled or a third of it is unindexed. A re-run with
        nothing new changes nothing."""
        index = pipeline.get()
        model = index.model(slug).model_version
        done = index.store.maintain_vector_index(model, index.settings.ann_min_rows)
        if done is None:
            raise dg.Failure(f"no table for {model} yet; materialize vector_table first", allow_retries=False)
        context.log.info(f"vector index of {model}: {done.action} ({done.reason})")
        state = done.state
        metadata: dict[str, Any] = {
            "model_version": model,
            "action": done.action,
            "reason": done.reason,
            "rows": done.rows,
            "index_type": state.kind if state else "none",
            "index_name": state.name if state else "",
            "partitions": state.partitions if state else 0,
            "rows_indexed": state.indexed_rows if state else 0,
            "unindexed_rows": state.unindexed_rows if state else done.rows,
            "trained_rows": state.trained_rows if state else 0,
            "build_seconds": round(done.seconds, 3),
        }
        recall = index.store.ann_recall(model, ann.RECALL_SAMPLE) if state else None
        if recall is not None:
            metadata |= {
                "exact_p50_ms": recall.exact_ms[0],
                "exact_p95_ms": recall.exact_ms[1],
                "indexed_p50_ms": recall.indexed_ms[0],
                "indexed_p95_ms": recall.indexed_ms[1],
                "recall_at_10": round(recall.recall, 4),
            }
        return dg.MaterializeResult(metadata=metadata, check_results=[recall_result(recall, done.rows)])

    return vector_index


def recall_result(recall: ann.Recall | None, rows: int) -> dg.AssetCheckResult:
    """The ``ann_recall`` result: warns when the measured recall is under ``ann.RECALL_WARN_BELOW``."""
    if recall is None:
        return dg.AssetCheckResult(
            check_name=ANN_RECALL,
            passed=True,
            description=f"no vector index yet ({rows} rows): searches are exact",
            metadata={"unindexed_rows": rows},
        )
    passed = recall.recall >= ann.RECALL_WARN_BELOW
    return dg.AssetCheckResult(
        check_name=ANN_RECALL,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"recall@{ann.RECALL_K} {recall.recall:.3f} over {recall.queries} stored vectors"
        + ("" if passed else f", under {ann.RECALL_WARN_BELOW}: retrain, or raise nprobes"),
        metadata={
            "recall_at_10": round(recall.recall, 4),
            "unindexed_rows": recall.unindexed_rows,
            "queries": recall.queries,
            "indexed_p50_ms": recall.indexed_ms[0],
            "indexed_p95_ms": recall.indexed_ms[1],
        },
    )
