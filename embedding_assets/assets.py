"""The partitioned pipeline: raw_documents → chunks → embeddings → vector_table.

Every asset shares the shard partitions and a single-run backfill policy, so a range of shards runs
in one process with one model load. Each shard's figures are recorded on its own partition
(``add_asset_metadata(partition_key=...)``), never copied across a range.
"""

import time
from collections.abc import Callable
from typing import Any

import dagster as dg

from embedding_assets.automation import follow_upstream, index_freshness
from embedding_assets.core import stages
from embedding_assets.core.store import table_name
from embedding_assets.resources import (
    ChunkingResource,
    EmbedderResource,
    LanceDBResource,
    SourceFolderResource,
    StagingResource,
)

GROUP = "embedding_pipeline"
SOURCE_DOCUMENTS = "source_documents"
SOURCE_READER_VERSION = "1"
MAX_SKIPS_IN_METADATA = 100


def source_documents_spec(partitions: dg.PartitionsDefinition) -> dg.AssetSpec:
    """The source folder itself, observed by the change sensor: one data version per shard."""
    return dg.AssetSpec(SOURCE_DOCUMENTS, partitions_def=partitions, group_name=GROUP, kinds={"folder"},
                        description="Documents in the source folder. The change sensor records one observation "
                                    "per changed shard; its data version is the shard's fingerprint.")


def build_pipeline_assets(partitions: dg.PartitionsDefinition, *, model_version: str, chunking_version: str,
                          freshness_hours: float) -> list[dg.AssetsDefinition]:
    """The four assets; code versions carry the chunker and model identity, so changing either
    marks every partition stale."""
    shard_count = len(partitions.get_partition_keys())
    common: dict[str, Any] = {"partitions_def": partitions, "group_name": GROUP,
                              "backfill_policy": dg.BackfillPolicy.single_run()}
    downstream: dict[str, Any] = {**common, "automation_condition": follow_upstream()}

    @dg.asset(deps=[SOURCE_DOCUMENTS], code_version=SOURCE_READER_VERSION, kinds={"parquet"}, **common)
    def raw_documents(context: dg.AssetExecutionContext, source: SourceFolderResource,
                      staging: StagingResource) -> dg.MaterializeResult:
        """The shard's documents, read from the source folder into Parquet. Unreadable documents are
        skipped with their reason recorded. A re-run rewrites the file atomically."""
        folder, stage = source.folder(), staging.staging()

        def one(shard: str) -> dict[str, Any]:
            out = stage.path("raw_documents", shard)
            stats = stages.read_raw_documents(folder, shard, shard_count, out, stage)
            for skip in stats.skipped:
                context.log.warning(f"{shard}: skipped {skip.doc_id!r}: {skip.reason}")
            return {"documents": stats.documents, "characters": stats.characters,
                    "skipped": len(stats.skipped), "dagster/row_count": stats.documents,
                    "skipped_documents": dg.MetadataValue.json(
                        [{"doc_id": s.doc_id, "reason": s.reason} for s in stats.skipped[:MAX_SKIPS_IN_METADATA]]),
                    "path": dg.MetadataValue.path(str(out))}

        return _for_each_shard(context, one)

    @dg.asset(deps=[raw_documents], code_version=chunking_version, kinds={"parquet"}, **downstream)
    def chunks(context: dg.AssetExecutionContext, staging: StagingResource, chunking: ChunkingResource,
               embedder: EmbedderResource) -> dg.MaterializeResult:
        """The shard's documents cut into chunks sized in the embedding model's tokens, each with a
        stable id (doc_id#position) and a content hash. Deterministic, so a re-run is a no-op."""
        stage, config, model = staging.staging(), chunking.config(), embedder.get()

        def one(shard: str) -> dict[str, Any]:
            out = stage.path("chunks", shard)
            stats = stages.chunk_raw_documents(stage.path("raw_documents", shard), out, shard, config, model, stage)
            return {"documents": stats.documents, "chunks": stats.chunks, "tokens": stats.tokens,
                    "dagster/row_count": stats.chunks, "path": dg.MetadataValue.path(str(out))}

        return _for_each_shard(context, one)

    @dg.asset(deps=[chunks], code_version=model_version, kinds={"parquet"}, **downstream)
    def embeddings(context: dg.AssetExecutionContext, staging: StagingResource, embedder: EmbedderResource,
                   vector_store: LanceDBResource) -> dg.MaterializeResult:
        """A vector for every chunk of the shard. Chunks this model already embedded (same chunk_hash)
        reuse the stored vector; only new or changed text is sent to the model."""
        stage, model, store = staging.staging(), embedder.get(), vector_store.store()
        variant = table_name(model.model_version)

        def one(shard: str) -> dict[str, Any]:
            out = stage.path("embeddings", shard, variant)
            before = dict(model.retry_stats.__dict__)
            stats = stages.embed_chunks(stage.path("chunks", shard), out, model, store, shard, shard_count, stage,
                                        expire_before=vector_store.expire_before())
            calls = {k: v - before[k] for k, v in model.retry_stats.__dict__.items()}
            return {"model_version": model.model_version, "dimensions": stats.dimensions,
                    "chunks": stats.chunks, "chunks_embedded": stats.embedded, "chunks_reused": stats.reused,
                    "tokens_embedded": stats.tokens_embedded, "model_calls": calls["requests"],
                    "retries": calls["retries"], "rate_limited": calls["rate_limited"],
                    "dagster/row_count": stats.chunks, "path": dg.MetadataValue.path(str(out))}

        return _for_each_shard(context, one)

    @dg.asset(deps=[embeddings], code_version=model_version, kinds={"lancedb"},
              freshness_policy=index_freshness(freshness_hours), **downstream)
    def vector_table(context: dg.AssetExecutionContext, staging: StagingResource, embedder: EmbedderResource,
                     vector_store: LanceDBResource) -> dg.MaterializeResult:
        """The shard's rows in the model's LanceDB table, replaced in one merge_insert commit keyed on
        chunk_id: changed rows updated, new inserted, vanished deleted. Unchanged shards commit nothing."""
        stage, store = staging.staging(), vector_store.store()
        model = embedder.get().model_version
        variant = table_name(model)

        def one(shard: str) -> dict[str, Any]:
            staged = stage.path("embeddings", shard, variant)
            write = stages.write_vector_table(staged, store, shard, stage)
            rows = write.inserted + write.updated + write.unchanged
            return {"model_version": model, "table": variant, "table_version": write.table_version,
                    "rows": rows, "chunks_inserted": write.inserted, "chunks_updated": write.updated,
                    "chunks_deleted": write.deleted, "chunks_unchanged": write.unchanged,
                    "committed": write.committed, "dagster/row_count": rows}

        return _for_each_shard(context, one)

    return [raw_documents, chunks, embeddings, vector_table]


def _for_each_shard(context: dg.AssetExecutionContext,
                    work: Callable[[str], dict[str, Any]]) -> dg.MaterializeResult:
    """Run ``work`` for every shard of the run, logging progress and recording metadata per shard."""
    keys = context.partition_keys
    asset = context.asset_key.to_user_string()
    for index, shard in enumerate(keys, start=1):
        started = time.perf_counter()
        metadata = work(shard)
        metadata["duration_s"] = round(time.perf_counter() - started, 3)
        context.add_asset_metadata(metadata, partition_key=shard)
        figures = ", ".join(f"{k}={v}" for k, v in metadata.items() if isinstance(v, int | float))
        context.log.info(f"[{index}/{len(keys)}] {asset} {shard}: {figures}")
    return dg.MaterializeResult()
