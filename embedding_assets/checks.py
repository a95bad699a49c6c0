"""Asset checks of the vector table, one result per shard.

One multi-asset check evaluates all three, so one read of each shard's stored rows (only the
columns the selected checks compare) serves them all. Each result is reported on its shard's own
partition through an ``AssetCheckEvaluation`` event, which also works for ranged single-run
backfills, where a returned ``AssetCheckResult`` would carry no partition.
"""

import random
from collections.abc import Iterator
from datetime import date

import dagster as dg
import numpy as np
import pyarrow as pa

from embedding_assets.core.reconcile import CHUNK_COLUMNS, STORED_COLUMNS, diff_shard, expected_chunks
from embedding_assets.core.table_checks import (
    DRIFT_COLUMNS,
    EMBEDDING_DRIFT,
    INTEGRITY_COLUMNS,
    VECTOR_TABLE_INTEGRITY,
    CheckOutcome,
    check_shard,
    drift_outcome,
    sample_quota,
)
from embedding_assets.resources import PipelineResource

INDEX_MATCHES_SOURCE = "index_matches_source"
DESCRIPTIONS = {
    VECTOR_TABLE_INTEGRITY: "Dimensions, valid vectors, unique chunk ids, one model version, and one row per "
    "staged chunk.",
    INDEX_MATCHES_SOURCE: "Reconciliation: the shard's rows are exactly the chunks its source documents produce "
    "now (ids, text hashes, document hashes, model version), listing every difference, and the fingerprint "
    "recorded beside the table (what stale detection reads instead of the rows) is the rows' own. Documents "
    "are read from the source only where the staged copy's hash differs from the change index's, and are "
    "not re-cut where the staged chunks carry their hash (`embedding-assets verify` re-reads and re-cuts all).",
    EMBEDDING_DRIFT: "Drift sentinel: re-embeds a few random stored chunks of the run's shards with the table's "
    "own model and warns when a stored vector no longer matches (a silent provider-side change, broken "
    "preprocessing). The sample is per run, so its cost does not grow with the number of shards; only the "
    "sampled shards get a result.",
}
COLUMNS = {VECTOR_TABLE_INTEGRITY: INTEGRITY_COLUMNS, INDEX_MATCHES_SOURCE: STORED_COLUMNS}


def build_table_checks(
    vector_table: dg.AssetsDefinition, partitions: dg.PartitionsDefinition, slug: str
) -> list[dg.AssetChecksDefinition]:
    """The checks of the active model ``slug``'s ``vector_table``."""
    specs = [
        dg.AssetCheckSpec(name, asset=vector_table.key, partitions_def=partitions, description=description)
        for name, description in DESCRIPTIONS.items()
    ]

    def report(
        context: dg.AssetCheckExecutionContext,
        shard: str,
        outcome: CheckOutcome,
        severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    ) -> None:
        # log_event is typed for materializations and observations only; check evaluations work (and
        # are the one way to give each shard of a ranged run its own result).
        context.op_execution_context.log_event(
            dg.AssetCheckEvaluation(  # type: ignore[arg-type]
                asset_key=vector_table.key,
                check_name=outcome.name,
                passed=outcome.passed,
                severity=severity,
                description=outcome.description,
                metadata=outcome.metadata,
                partition=shard,
            )
        )

    @dg.multi_asset_check(specs=specs, can_subset=True, name=f"{slug}_vector_table_checks")
    def vector_table_checks(
        context: dg.AssetCheckExecutionContext, pipeline: PipelineResource
    ) -> Iterator[dg.AssetCheckResult]:
        """The selected checks of every shard of the run, from one read of each shard's stored rows."""
        index = pipeline.get()
        active = index.model(slug)
        model, store, keys = active.embedder, index.store, context.partition_keys
        selected = {key.name for key in context.selected_asset_check_keys}
        info = store.info(model.model_version)
        rng = random.Random(f"{keys[0]}:{keys[-1]}:{date.today()}")
        quota = sample_quota(list(keys), index.settings.drift_sample, rng) if EMBEDDING_DRIFT in selected else {}
        samples: dict[str, pa.Table] = {}
        recorded = store.recorded_states(model.model_version) if INDEX_MATCHES_SOURCE in selected else {}
        for shard in keys:
            work = index.shard_work(shard, active)
            columns = {c for name in selected for c in COLUMNS.get(name, ())}
            if quota.get(shard):
                columns |= set(DRIFT_COLUMNS)
            rows = store.shard_rows(model.model_version, shard, sorted(columns))
            if VECTOR_TABLE_INTEGRITY in selected:
                staged = index.staging.read(work.chunks_path, ["chunk_id"]).column("chunk_id").to_pylist()
                outcome = check_shard(
                    shard,
                    rows,
                    info,
                    model_version=model.model_version,
                    dimensions=model.dimensions,
                    expected_chunk_ids=staged,
                )
                report(context, shard, outcome)
            if INDEX_MATCHES_SOURCE in selected:
                # Documents whose hash the change index holds come from the staged copy with that hash, the
                # rest from the source: O(change) source reads (`verify` re-reads everything).
                cached = work.staged_chunks(CHUNK_COLUMNS)
                documents = index.documents(shard, reuse=work.staged_documents())
                expected = expected_chunks(documents, index.chunking, model, cached)
                diff = diff_shard(shard, expected, rows, model.model_version, recorded.get(shard))
                report(
                    context, shard, CheckOutcome(INDEX_MATCHES_SOURCE, diff.matches, diff.describe(), diff.figures())
                )
            if quota.get(shard) and rows is not None:
                picked = rng.sample(range(rows.num_rows), min(quota[shard], rows.num_rows))
                samples[shard] = rows.take(pa.array(picked, type=pa.int64()))  # typed: it may be empty
        # Not sampled in this run: no result (each result is an event the instance stores).
        texts = [text for picked in samples.values() for text in picked.column("text").to_pylist()]
        fresh = iter(model.embed(texts) if texts else [])
        for shard, picked in samples.items():
            stored = np.array(picked.column("vector").to_pylist(), dtype=np.float32)
            again = np.array([next(fresh) for _ in range(picked.num_rows)], dtype=np.float32)
            outcome = drift_outcome(stored, again, index.settings.drift_threshold)
            report(context, shard, outcome, dg.AssetCheckSeverity.WARN)
        yield from ()

    return [vector_table_checks]
