"""Integrity checks of the vector table, one result per shard.

One multi-asset check evaluates all five checks for every shard of the run and reports each shard
on its own partition, which also works for ranged (single-run) backfills.
"""

import dagster as dg

from embedding_assets.core.table_checks import CHECK_NAMES, check_shard
from embedding_assets.resources import EmbedderResource, LanceDBResource, StagingResource


def build_table_checks(vector_table: dg.AssetsDefinition,
                       partitions: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    specs = [dg.AssetCheckSpec(name, asset=vector_table.key, partitions_def=partitions) for name in CHECK_NAMES]

    @dg.multi_asset_check(specs=specs, can_subset=True, name="vector_table_integrity")
    def vector_table_integrity(context: dg.AssetCheckExecutionContext, staging: StagingResource,
                               embedder: EmbedderResource, vector_store: LanceDBResource):
        """Dimensions, valid vectors, unique chunk ids, one model version, and one row per chunk."""
        model, store, stage = embedder.get(), vector_store.store(), staging.staging()
        info = store.info(model.model_version)
        for shard in context.partition_keys:
            rows = store.shard_rows(model.model_version, shard)
            if info is None or rows is None:
                raise dg.Failure(f"no vector table for {model.model_version}; materialize vector_table first")
            expected = stage.read(stage.path("chunks", shard)).column("chunk_id").to_pylist()
            for outcome in check_shard(shard, rows, info, model_version=model.model_version,
                                       dimensions=model.dimensions, expected_chunk_ids=expected):
                context.op_execution_context.log_event(dg.AssetCheckEvaluation(
                    asset_key=vector_table.key, check_name=outcome.name, passed=outcome.passed,
                    description=outcome.description, metadata=outcome.metadata, partition=shard))
        yield from ()

    return vector_table_integrity
