"""Asset checks of the vector table, one result per shard.

Each multi-asset check reports every shard of its run on that shard's own partition (through
``AssetCheckEvaluation`` events), which also works for ranged single-run backfills, where a
returned ``AssetCheckResult`` would carry no partition.
"""

import random
from collections.abc import Iterator
from datetime import date

import dagster as dg
import numpy as np

from embedding_assets.core.reconcile import diff_shard, expected_chunks
from embedding_assets.core.stages import staged_chunks
from embedding_assets.core.table_checks import (
    EMBEDDING_DRIFT,
    VECTOR_TABLE_INTEGRITY,
    CheckOutcome,
    check_shard,
    drift_outcome,
    sample_quota,
)
from embedding_assets.resources import (
    ChunkingResource,
    EmbedderResource,
    EvalResource,
    LanceDBResource,
    SourceFolderResource,
    StagingResource,
)

INDEX_MATCHES_SOURCE = "index_matches_source"


def build_table_checks(
    vector_table: dg.AssetsDefinition, partitions: dg.PartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    shard_count = len(partitions.get_partition_keys())

    def specs(*names: str) -> list[dg.AssetCheckSpec]:
        return [dg.AssetCheckSpec(n, asset=vector_table.key, partitions_def=partitions) for n in names]

    def report(
        context: dg.AssetCheckExecutionContext,
        shard: str,
        outcome: CheckOutcome,
        severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    ) -> None:
        context.op_execution_context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=vector_table.key,
                check_name=outcome.name,
                passed=outcome.passed,
                severity=severity,
                description=outcome.description,
                metadata=outcome.metadata,
                partition=shard,
            )
        )

    @dg.multi_asset_check(specs=specs(VECTOR_TABLE_INTEGRITY), can_subset=True)
    def vector_table_integrity(
        context: dg.AssetCheckExecutionContext,
        staging: StagingResource,
        embedder: EmbedderResource,
        vector_store: LanceDBResource,
    ) -> Iterator:
        """Dimensions, valid vectors, unique chunk ids, one model version, and one row per staged chunk."""
        model, store, stage = embedder.get(), vector_store.store(), staging.staging()
        info = store.info(model.model_version)
        for shard in context.partition_keys:
            rows = store.shard_rows(model.model_version, shard)
            if info is None or rows is None:
                raise dg.Failure(f"no vector table for {model.model_version}; materialize vector_table first")
            expected = stage.read(stage.path("chunks", shard)).column("chunk_id").to_pylist()
            report(
                context,
                shard,
                check_shard(
                    shard,
                    rows,
                    info,
                    model_version=model.model_version,
                    dimensions=model.dimensions,
                    expected_chunk_ids=expected,
                ),
            )
        yield from ()

    @dg.multi_asset_check(specs=specs(INDEX_MATCHES_SOURCE), can_subset=True)
    def index_matches_source(
        context: dg.AssetCheckExecutionContext,
        source: SourceFolderResource,
        staging: StagingResource,
        chunking: ChunkingResource,
        embedder: EmbedderResource,
        vector_store: LanceDBResource,
    ) -> Iterator:
        """Reconciliation: the shard's rows are exactly the chunks its source documents produce now
        (ids, text hashes, document hashes, model version), listing every difference. Documents whose
        hash the staged chunks carry are not re-cut (`embedding-assets verify` re-cuts them all)."""
        model, store, folder, stage, config = (
            embedder.get(),
            vector_store.store(),
            source.folder(),
            staging.staging(),
            chunking.config(),
        )
        for shard in context.partition_keys:
            cached = staged_chunks(stage, stage.path("chunks", shard), config, model)
            expected = expected_chunks(folder, shard, shard_count, config, model, cached)
            diff = diff_shard(shard, expected, store.shard_rows(model.model_version, shard), model.model_version)
            report(
                context,
                shard,
                CheckOutcome(
                    INDEX_MATCHES_SOURCE,
                    diff.matches,
                    diff.describe(),
                    {
                        "expected_rows": diff.expected,
                        "stored_rows": diff.stored,
                        "missing": len(diff.missing),
                        "extra": len(diff.extra),
                        "changed": len(diff.changed),
                        "wrong_model": len(diff.wrong_model),
                    },
                ),
            )
        yield from ()

    @dg.multi_asset_check(specs=specs(EMBEDDING_DRIFT), can_subset=True)
    def embedding_drift(
        context: dg.AssetCheckExecutionContext,
        embedder: EmbedderResource,
        vector_store: LanceDBResource,
        evals: EvalResource,
    ) -> Iterator:
        """Drift sentinel: re-embeds a few random stored chunks of the run's shards with the table's own
        model and warns when a stored vector no longer matches (a silent provider-side change, broken
        preprocessing). The sample is per run, so its cost does not grow with the number of shards; only
        the sampled shards get a result."""
        model, store, keys = embedder.get(), vector_store.store(), context.partition_keys
        rng = random.Random(f"{keys[0]}:{keys[-1]}:{date.today()}")
        samples: dict[str, tuple[list[str], list[list[float]]]] = {}
        for shard, quota in sample_quota(keys, evals.drift_sample, rng).items():
            if not quota:  # not sampled in this run: no result (each result is an event the instance stores)
                continue
            rows = store.shard_rows(model.model_version, shard, ["text", "vector"])
            picked = rows.take(rng.sample(range(rows.num_rows), min(quota, rows.num_rows))) if rows else None
            samples[shard] = (
                (picked.column("text").to_pylist(), picked.column("vector").to_pylist()) if picked else ([], [])
            )
        texts_to_embed = [t for texts, _ in samples.values() for t in texts]
        fresh = iter(model.embed(texts_to_embed) if texts_to_embed else [])
        for shard, (texts, stored) in samples.items():
            again = [next(fresh) for _ in texts]
            report(
                context,
                shard,
                drift_outcome(
                    np.array(stored, dtype=np.float32), np.array(again, dtype=np.float32), evals.drift_threshold
                ),
                dg.AssetCheckSeverity.WARN,
            )
        yield from ()

    return [vector_table_integrity, index_matches_source, embedding_drift]
