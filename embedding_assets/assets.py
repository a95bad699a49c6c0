"""The partitioned pipeline: raw_documents → chunks → embeddings → vector_table, then retrieval_eval.

Every asset shares the shard partitions and a single-run backfill policy, so a range of shards runs
in one process with one model load. Each shard's figures are recorded on its own partition
(``add_asset_metadata(partition_key=...)``), never copied across a range.
"""

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import dagster as dg

from embedding_assets.automation import evaluate_after_refresh, follow_upstream, index_freshness
from embedding_assets.core import stages
from embedding_assets.core.cost import check_budget, cost_usd
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.evaluation import comparison_table
from embedding_assets.core.migration import evaluate_table, gate, live_model_version
from embedding_assets.core.registry import Registry
from embedding_assets.core.staging import Staging
from embedding_assets.core.store import table_name
from embedding_assets.resources import (
    ChunkingResource,
    EmbedderResource,
    EvalResource,
    LanceDBResource,
    SourceFolderResource,
    StagingResource,
)

GROUP = "embedding_pipeline"
SOURCE_DOCUMENTS = "source_documents"
SOURCE_READER_VERSION = "1"
MAX_SKIPS_IN_METADATA = 100
SLOW_SHARD_SECONDS = 1.0  # shards that take longer get a progress line in the run's log
EMBEDDING_RETRIES = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def source_documents_spec(partitions: dg.PartitionsDefinition) -> dg.AssetSpec:
    """The source folder itself, observed by the change sensor: one data version per shard."""
    return dg.AssetSpec(
        SOURCE_DOCUMENTS,
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"folder"},
        description="Documents in the source folder. The change sensor records one observation "
        "per changed shard; its data version is the shard's fingerprint.",
    )


def build_pipeline_assets(
    partitions: dg.PartitionsDefinition, *, model_version: str, chunking_version: str, freshness_hours: float
) -> list[dg.AssetsDefinition]:
    """The four partitioned assets and retrieval_eval. Code versions carry the chunker and model
    identity, so changing either marks every partition stale."""
    shard_count = len(partitions.get_partition_keys())
    common: dict[str, Any] = {
        "partitions_def": partitions,
        "group_name": GROUP,
        "backfill_policy": dg.BackfillPolicy.single_run(),
    }
    downstream: dict[str, Any] = {**common, "automation_condition": follow_upstream()}
    # Requests to one provider share a Dagster concurrency pool across runs
    # (limit it with `dagster instance concurrency set embedding_api_openai N`).
    embedding_pool = "embedding_api_" + model_version.split(":", 1)[0]

    @dg.asset(deps=[SOURCE_DOCUMENTS], code_version=SOURCE_READER_VERSION, kinds={"parquet"}, **common)
    def raw_documents(
        context: dg.AssetExecutionContext, source: SourceFolderResource, staging: StagingResource
    ) -> dg.MaterializeResult:
        """The shard's documents, read from the source folder into Parquet. Unreadable documents are
        skipped with their reason recorded. A re-run rewrites the file atomically."""
        folder, stage = source.folder(), staging.staging()

        def one(shard: str) -> dict[str, Any]:
            out = stage.path("raw_documents", shard)
            stats = stages.read_raw_documents(folder, shard, shard_count, out, stage)
            for skip in stats.skipped:
                context.log.warning(f"{shard}: skipped {skip.doc_id!r}: {skip.reason}")
            return {
                "documents": stats.documents,
                "characters": stats.characters,
                "skipped": len(stats.skipped),
                "dagster/row_count": stats.documents,
                "skipped_documents": dg.MetadataValue.json(
                    [{"doc_id": s.doc_id, "reason": s.reason} for s in stats.skipped[:MAX_SKIPS_IN_METADATA]]
                ),
                "path": dg.MetadataValue.path(str(out)),
            }

        return _for_each_shard(context, stage, one)

    @dg.asset(deps=[raw_documents], code_version=chunking_version, kinds={"parquet"}, **downstream)
    def chunks(
        context: dg.AssetExecutionContext,
        staging: StagingResource,
        chunking: ChunkingResource,
        embedder: EmbedderResource,
    ) -> dg.MaterializeResult:
        """The shard's documents cut into chunks sized in the embedding model's tokens, each with a
        stable id (doc_id#position) and a content hash. Only documents whose hash changed are re-cut;
        deterministic, so a re-run is a no-op."""
        stage, config, model = staging.staging(), chunking.config(), embedder.get()

        def one(shard: str) -> dict[str, Any]:
            out = stage.path("chunks", shard)
            stats = stages.chunk_raw_documents(stage.path("raw_documents", shard), out, shard, config, model, stage)
            return {
                "documents": stats.documents,
                "documents_rechunked": stats.rechunked,
                "chunks": stats.chunks,
                "tokens": stats.tokens,
                "dagster/row_count": stats.chunks,
                "path": dg.MetadataValue.path(str(out)),
            }

        return _for_each_shard(context, stage, one)

    # A step that fails for good (provider retries exhausted) is retried whole: re-running is idempotent.
    @dg.asset(
        deps=[chunks],
        code_version=model_version,
        kinds={"parquet"},
        pool=embedding_pool,
        retry_policy=EMBEDDING_RETRIES,
        **downstream,
    )
    def embeddings(
        context: dg.AssetExecutionContext,
        staging: StagingResource,
        embedder: EmbedderResource,
        vector_store: LanceDBResource,
    ) -> dg.MaterializeResult:
        """A vector for every chunk of the shard. Chunks this model already embedded (same chunk_hash)
        reuse the stored vector; only new or changed text is sent to the model. A run whose new text
        would cost more than the run budget fails before its first request."""
        stage, model, store = staging.staging(), embedder.get(), vector_store.store()
        variant, expiry, price = table_name(model.model_version), vector_store.expire_before(), embedder.price()
        planned = sum(
            stages.tokens_to_embed(
                stage.path("chunks", s),
                stage.path("embeddings", s, variant),
                store,
                model.model_version,
                s,
                expiry,
                stage,
            )
            for s in context.partition_keys
        )
        try:
            check_budget(planned, price, embedder.run_budget_usd, f"this run ({len(context.partition_keys)} shards)")
        except ConfigError as err:
            # Deterministic, so not worth a retry: the same run would be refused again.
            raise dg.Failure(str(err), metadata={"planned_tokens": planned}, allow_retries=False) from None

        def one(shard: str) -> dict[str, Any]:
            out = stage.path("embeddings", shard, variant)
            before = dataclasses.replace(model.retry_stats)
            stats = stages.embed_chunks(
                stage.path("chunks", shard), out, model, store, shard, shard_count, stage, expire_before=expiry
            )
            calls = model.retry_stats.since(before)
            return {
                "model_version": model.model_version,
                "dimensions": stats.dimensions,
                "chunks": stats.chunks,
                "chunks_embedded": stats.embedded,
                "chunks_reused": stats.reused,
                "tokens_embedded": stats.tokens_embedded,
                "cost_usd": cost_usd(stats.tokens_embedded, price),
                "model_calls": calls.requests,
                "retries": calls.retries,
                "rate_limited": calls.rate_limited,
                "paced_seconds": round(calls.paced_seconds, 3),
                "dagster/row_count": stats.chunks,
                "path": dg.MetadataValue.path(str(out)),
            }

        return _for_each_shard(context, stage, one)

    @dg.asset(
        deps=[embeddings],
        code_version=model_version,
        kinds={"lancedb"},
        freshness_policy=index_freshness(freshness_hours),
        **downstream,
    )
    def vector_table(
        context: dg.AssetExecutionContext,
        staging: StagingResource,
        embedder: EmbedderResource,
        vector_store: LanceDBResource,
    ) -> dg.MaterializeResult:
        """The shard's rows in the model's LanceDB table, replaced in one merge_insert commit keyed on
        chunk_id: changed rows updated, new inserted, vanished deleted. Unchanged shards commit nothing.
        The first table ever written becomes the live one; later models' tables wait for ``promote``."""
        stage, store = staging.staging(), vector_store.store()
        model = embedder.get().model_version
        variant = table_name(model)
        registry = Registry(store.db)
        live = registry.state().live

        def one(shard: str) -> dict[str, Any]:
            staged = stage.path("embeddings", shard, variant)
            write = stages.write_vector_table(staged, store, shard, stage)
            rows = write.inserted + write.updated + write.unchanged
            return {
                "model_version": model,
                "live_model_version": live or model,
                "is_live": live in (None, model),
                "table": variant,
                "table_version": write.table_version,
                "rows": rows,
                "chunks_inserted": write.inserted,
                "chunks_updated": write.updated,
                "chunks_deleted": write.deleted,
                "chunks_unchanged": write.unchanged,
                "committed": write.committed,
                "commit_attempts": write.commit_attempts,
                "dagster/row_count": rows,
            }

        result = _for_each_shard(context, stage, one)
        try:
            fragments = store.compact(model)
        except Exception as err:  # a concurrent writer won the commit; the next run compacts
            context.log.warning(f"compaction of {variant} skipped: {err}")
        else:
            if fragments is not None:
                context.log.info(f"compacted {variant}: {fragments} fragments merged")
        if live is None:
            registry.promote(model, "the first table is live")
            context.log.info(f"{model} is the first table and is now live")
        return result

    # Unpartitioned; the single-run policy only lets `--select '*' --partition-range` include it.
    @dg.asset(
        deps=[vector_table],
        group_name=GROUP,
        kinds={"lancedb"},
        automation_condition=evaluate_after_refresh(),
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def retrieval_eval(
        context: dg.AssetExecutionContext,
        embedder: EmbedderResource,
        vector_store: LanceDBResource,
        evals: EvalResource,
    ) -> dg.MaterializeResult:
        """Recall@k, MRR and nDCG@10 of the configured model's table on the golden set, beside the live
        table's when that is another model: the evidence ``promote`` asks for, plotted over time."""
        store, model = vector_store.store(), embedder.get().model_version
        live = live_model_version(store, model)
        reports = {
            v: evaluate_table(store, v, evals.golden(), embedder.query_embedder_for)
            for v in dict.fromkeys([live, model])
            if store.info(v) is not None
        }
        metadata: dict[str, Any] = {
            "model_version": model,
            "live_model_version": live,
            "comparison": dg.MetadataValue.md(comparison_table(list(reports.values()), live)),
        }
        for name, value in reports.get(model, reports[live]).metrics.items():
            metadata[name.replace("@", "_at_")] = round(value, 4)
        if model != live and model in reports:
            for name, value in reports[live].metrics.items():
                metadata["live_" + name.replace("@", "_at_")] = round(value, 4)
            metadata["gate_refusals"] = dg.MetadataValue.json(gate(reports[model], reports[live], evals.margin))
        return dg.MaterializeResult(metadata=metadata)

    return [raw_documents, chunks, embeddings, vector_table, retrieval_eval]


def _for_each_shard(
    context: dg.AssetExecutionContext, stage: Staging, work: Callable[[str], dict[str, Any]]
) -> dg.MaterializeResult:
    """Run ``work`` for every shard of the run under the shard's lock, recording metadata per shard.
    Shards that take a while are logged as they finish (every log line is an event the instance stores,
    so quick shards show only in their metadata)."""
    keys = context.partition_keys
    asset = context.asset_key.to_user_string()
    for index, shard in enumerate(keys, start=1):
        started = time.perf_counter()
        with stage.lock(shard):
            metadata = work(shard)
        metadata["duration_s"] = round(time.perf_counter() - started, 3)
        context.add_asset_metadata(metadata, partition_key=shard)
        if metadata["duration_s"] >= SLOW_SHARD_SECONDS:
            figures = ", ".join(f"{k}={v}" for k, v in metadata.items() if isinstance(v, int | float))
            context.log.info(f"[{index}/{len(keys)}] {asset} {shard}: {figures}")
    return dg.MaterializeResult()
