"""The partitioned pipeline: raw_documents → chunks → embeddings → vector_table, then retrieval_eval.

``raw_documents`` is every model's; ``chunks`` is built once per chunking profile (the tokenizer its
chunks are sized in) under that profile's key prefix; ``embeddings``, ``vector_table`` and
``retrieval_eval`` are built once per active model, under the model's key prefix and in its own group,
so each model's chain refreshes, fails and is throttled on its own.

Every asset shares the shard partitions and a single-run backfill policy, so a range of shards runs
in one process with one model load. Each shard's figures are recorded on its own partition
(``add_asset_metadata(partition_key=...)``), never copied across a range.
"""

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import dagster as dg

from embedding_assets.automation import Condition, evaluate_after_refresh, follow_upstream, index_freshness
from embedding_assets.core import progress
from embedding_assets.core.cost import check_budget, cost_usd
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.evaluation import comparison_table
from embedding_assets.core.index import ActiveModel, Index
from embedding_assets.core.migration import evaluate_table, gate
from embedding_assets.core.pooled_embedding import embed_together
from embedding_assets.core.retry import RetryStats
from embedding_assets.core.shard_work import ShardWork
from embedding_assets.core.store import ShardWrite
from embedding_assets.core.table_policy import settle_table
from embedding_assets.core.table_writes import write_shards
from embedding_assets.metadata import provider_figures, run_summary, table_summary
from embedding_assets.resources import PipelineResource

DOCUMENTS_GROUP = "documents"  # the source, the raw documents and every profile's chunks
SOURCE_DOCUMENTS = "source_documents"  # observed, see source_documents.py
RAW_DOCUMENTS = "raw_documents"
# On a run whose launcher recorded the source's changes just before it (``refresh``): its raw_documents
# stage the change index as recorded instead of scanning the source again in every run.
SOURCE_SYNCED_TAG = "embedding_assets/source_synced"
# 2: HTML without glued words, texts in other encodings, PDF and DOCX (the keys of those suffixes are
# read again: their versions carry the reader, see core.sources.records.READERS).
SOURCE_READER_VERSION = "2"
MAX_SKIPS_IN_METADATA = 100
SLOW_SHARD_SECONDS = 1.0  # shards that take longer get a progress line in the run's log
EMBEDDING_RETRIES = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


class _Shared(TypedDict, total=False):
    """The ``@dg.asset`` options the partitioned assets share."""

    partitions_def: dg.PartitionsDefinition
    group_name: str
    backfill_policy: dg.BackfillPolicy
    automation_condition: Condition


@dataclass(frozen=True)
class ModelAssets:
    """One active model's assets, and the chunks they read."""

    slug: str
    chunks: dg.AssetsDefinition
    embeddings: dg.AssetsDefinition
    vector_table: dg.AssetsDefinition
    retrieval_eval: dg.AssetsDefinition

    @property
    def chain(self) -> list[dg.AssetsDefinition]:
        """What a shard's refresh for this model runs after raw_documents."""
        return [self.chunks, self.embeddings, self.vector_table]


def model_group(slug: str) -> str:
    return f"model_{slug}"


def chain_keys(model: ActiveModel) -> list[dg.AssetKey]:
    """What one refresh of a shard for ``model`` materializes: the whole chain from the raw documents."""
    return [
        dg.AssetKey(RAW_DOCUMENTS),
        dg.AssetKey([model.profile, "chunks"]),
        dg.AssetKey([model.slug, "embeddings"]),
        dg.AssetKey([model.slug, "vector_table"]),
    ]


def _partitioned(partitions: dg.PartitionsDefinition, group: str) -> _Shared:
    return _Shared(
        partitions_def=partitions,
        group_name=group,
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=follow_upstream(),
    )


def build_raw_documents(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """Every model's raw documents: the source's documents per shard, staged once."""

    @dg.asset(
        deps=[SOURCE_DOCUMENTS],
        code_version=SOURCE_READER_VERSION,
        kinds={"parquet"},
        partitions_def=partitions,
        group_name=DOCUMENTS_GROUP,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def raw_documents(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult[None]:
        """The shard's documents, staged as Parquet. The step first records the source's changes in the
        change index (unless the run's launcher just did: ``SOURCE_SYNCED_TAG``); each shard's keys come
        from there, and only documents whose hash changed are read from the source, the rest are kept
        from the previous file. Unreadable documents are skipped with their reason recorded; a text not
        in UTF-8 is decoded in the encoding detected for it, recorded in ``detected_encodings``. A re-run
        rewrites the file atomically."""
        index = pipeline.get()
        if SOURCE_SYNCED_TAG not in context.run.tags:
            index.sync()  # what the source holds now: O(changes), but a listing for a folder or queueless bucket

        def one(work: ShardWork) -> dict[str, Any]:
            generation = index.changes.generation_of(work.shard)  # read first: what follows is at least as new
            staged = work.staged_raw_stats(generation)  # unchanged since it was staged: O(1), not O(shard)
            stats = staged or work.read_raw_documents(index.listing(work.shard, work.staged_keys()), generation)
            for skip in stats.skipped:
                context.log.warning(f"{work.shard}: skipped {skip.doc_id!r}: {skip.reason}")
            skipped = [{"doc_id": s.doc_id, "reason": s.reason} for s in stats.skipped[:MAX_SKIPS_IN_METADATA]]
            detected = [{"doc_id": d, "encoding": e} for d, e in list(stats.encodings.items())[:MAX_SKIPS_IN_METADATA]]
            return {
                "documents": stats.documents,
                "restaged": staged is None,  # False: the staged file already held the shard as it is now
                "characters": stats.characters,
                "skipped": len(stats.skipped),
                "dagster/row_count": stats.documents,
                "skipped_documents": dg.MetadataValue.json(skipped),
                "documents_not_utf8": len(stats.encodings),
                "detected_encodings": dg.MetadataValue.json(detected),
                "path": dg.MetadataValue.path(str(work.raw_path)),
            }

        return _for_each_shard(context, index, RAW_DOCUMENTS, one)

    return raw_documents


def build_chunks(
    partitions: dg.PartitionsDefinition, raw_documents: dg.AssetsDefinition, profile: str, chunking_version: str
) -> dg.AssetsDefinition:
    """The chunks of one chunking profile (``profile``: the tokenizer they are sized in), shared by every
    model that uses it."""

    @dg.asset(
        key_prefix=[profile],
        deps=[raw_documents],
        code_version=chunking_version,
        kinds={"parquet"},
        **_partitioned(partitions, DOCUMENTS_GROUP),
    )
    def chunks(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult[None]:
        """The shard's documents cut into chunks sized in the embedding model's tokens, each with a
        stable id (doc_id#position) and a content hash. Only documents whose hash changed are re-cut;
        deterministic, so a re-run is a no-op."""

        def one(work: ShardWork) -> dict[str, Any]:
            stats = work.chunk()
            return {
                "documents": stats.documents,
                "documents_rechunked": stats.rechunked,
                "chunks": stats.chunks,
                "tokens": stats.tokens,
                "dagster/row_count": stats.chunks,
                "path": dg.MetadataValue.path(str(work.chunks_path)),
            }

        index = pipeline.get()
        model = index.chunk_profiles[profile]
        return _for_each_shard(context, index, f"chunks/{profile}", one, model)

    return chunks


def build_model_assets(
    partitions: dg.PartitionsDefinition,
    model: ActiveModel,
    chunks: dg.AssetsDefinition,
    *,
    freshness_hours: float,
    pool: str | None = None,
    table_metadata: Mapping[str, Any] | None = None,
) -> ModelAssets:
    """One active model's embeddings, vector_table and retrieval_eval, under its key prefix and in its
    group. Code versions carry the model's identity, so a new model version marks every partition stale.
    ``pool``: the concurrency pool its embedding steps share across runs (each model its own, so a
    candidate's backfill never takes the live model's slots); ``table_metadata``: vector_table's
    definition metadata (name, URI, columns)."""
    slug, model_version = model.slug, model.model_version
    common = _partitioned(partitions, model_group(slug))

    # A step that fails for good (provider retries exhausted) is retried whole: re-running is idempotent.
    @dg.asset(
        key_prefix=[slug],
        deps=[chunks],
        code_version=model_version,
        kinds={"parquet"},
        pool=pool,
        retry_policy=EMBEDDING_RETRIES,
        **common,
    )
    def embeddings(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult[None]:
        """A vector for every chunk of the shard. Chunks this model already embedded (same chunk_hash)
        reuse the stored vector; only new or changed text is sent to the model, the run's few new texts
        in one request for all its shards (a shard's ``model_calls`` are its own requests; the run's sums
        count the pooled one). A run whose new text would cost more than the run budget fails before its
        first request."""
        index = pipeline.get()
        active = index.model(slug)
        model, price = active.embedder, active.price_per_mtok
        _refuse_over_budget(index, active, context.partition_keys)
        before = dataclasses.replace(model.retry_stats)
        shards = context.partition_keys
        pooled = embed_together((index.shard_work(s, active) for s in shards), model) if len(shards) > 1 else {}
        shared = provider_figures(model.model_version, _call_figures(model.retry_stats.since(before)))

        def one(work: ShardWork) -> dict[str, Any]:
            before = dataclasses.replace(model.retry_stats)
            stats = work.embed(pooled=pooled)
            return {
                "model_version": model.model_version,
                "dimensions": stats.dimensions,
                "chunks": stats.chunks,
                "chunks_embedded": stats.embedded,
                "chunks_reused": stats.reused,
                "tokens_embedded": stats.tokens_embedded,
                **provider_figures(
                    model.model_version,
                    {
                        "cost_usd": cost_usd(stats.tokens_embedded, price),
                        **_call_figures(model.retry_stats.since(before)),
                    },
                ),
                "dagster/row_count": stats.chunks,
                "path": dg.MetadataValue.path(str(work.embeddings_path)),
            }

        return _for_each_shard(context, index, active.table, one, active, shared)

    @dg.asset(
        key_prefix=[slug],
        deps=[embeddings],
        code_version=model_version,
        kinds={"lancedb"},
        freshness_policy=index_freshness(freshness_hours),
        metadata=table_metadata,
        **common,
    )
    def vector_table(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult[None]:
        """The shards' rows in the model's LanceDB table at the shards' cost: new and changed rows
        upserted on chunk_id, then exactly the vanished chunk ids deleted (a reader never misses a
        current chunk), consecutive shards sharing those commits (``table_writes``). Unchanged shards
        commit nothing.
        The first listed model's table becomes live when first written; the others wait for ``promote``."""
        index = pipeline.get()
        active = index.model(slug)
        model, tables = active.model_version, [m.table for m in index.models]
        live = index.live_model_version()  # before the first promotion: the first model listed

        def written(work: ShardWork, write: ShardWrite) -> dict[str, Any]:
            rows = write.inserted + write.updated + write.unchanged
            since = index.changes.settle(work.shard, work.source_generation(), active.table, tables)
            # From the source's commit (or, for a feed that does not say when, the sync that saw it).
            latency = {} if since is None else {"source_to_table_seconds": round(max(0.0, time.time() - since), 3)}
            return {
                "model_version": model,
                "live_model_version": live,
                "is_live": live == model,
                "table": active.table,
                "table_version": write.table_version,
                "rows": rows,
                "chunks_inserted": write.inserted,
                "chunks_updated": write.updated,
                "chunks_deleted": write.deleted,
                "chunks_unchanged": write.unchanged,
                "committed": write.committed,
                "commit_attempts": write.commit_attempts,
            } | latency

        works = (index.shard_work(shard, active) for shard in context.partition_keys)
        writes = write_shards(index.store, works, lambda shard: index.staging.lock(shard, active.table))
        result = _record_shards(context, ((w.shard, written(w, write), s) for w, write, s in writes))
        settled = settle_table(index.store, index.registry, model, may_go_live=active == index.models[0])
        for note in settled.notes:
            context.log.info(note)
        for warning in settled.warnings:
            context.log.warning(warning)
        # The whole table's totals and a preview, beside the run's sums.
        return dg.MaterializeResult(metadata={**(result.metadata or {}), **table_summary(index.store, model)})

    # Unpartitioned; the single-run policy only lets `--select '*' --partition-range` include it.
    @dg.asset(
        key_prefix=[slug],
        deps=[vector_table],
        group_name=model_group(slug),
        kinds={"lancedb"},
        automation_condition=evaluate_after_refresh(),
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def retrieval_eval(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult[None]:
        """Recall@k, MRR and nDCG@10 of this model's table on the golden set, beside the live table's
        when that is another model: the evidence ``promote`` asks for, plotted over time."""
        index = pipeline.get()
        store, model, live = index.store, model_version, index.live_model_version()
        golden = index.golden()
        reports = {
            v: evaluate_table(store, v, golden, index.query_embedder)
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
            refusals = gate(reports[model], reports[live], index.settings.eval_margin)
            metadata["gate_refusals"] = dg.MetadataValue.json(refusals)
        return dg.MaterializeResult(metadata=metadata)

    return ModelAssets(slug, chunks, embeddings, vector_table, retrieval_eval)


def _refuse_over_budget(index: Index, model: ActiveModel, shards: Sequence[str]) -> None:
    """With a run budget for ``model``, fail before the first request when the new text of the run's
    shards would cost more (a pass over the shards before any is embedded, outside their locks)."""
    budget = model.config.run_budget_usd
    if budget is None:
        return
    planned = sum(index.shard_work(shard, model).tokens_to_embed() for shard in shards)
    try:
        check_budget(planned, model.price_per_mtok, budget, f"this run of {model.slug} ({len(shards)} shards)")
    except ConfigError as err:
        # Deterministic, so not worth a retry: the same run would be refused again.
        raise dg.Failure(str(err), metadata={"planned_tokens": planned}, allow_retries=False) from None


def _call_figures(calls: RetryStats) -> dict[str, Any]:
    """A model's requests, retries, 429s and pacing, as metadata."""
    return {
        "model_calls": calls.requests,
        "retries": calls.retries,
        "rate_limited": calls.rate_limited,
        "paced_seconds": round(calls.paced_seconds, 3),
    }


def _for_each_shard(
    context: dg.AssetExecutionContext,
    index: Index,
    scope: str,
    work: Callable[[ShardWork], dict[str, Any]],
    model: ActiveModel | None = None,
    shared: Mapping[str, float] | None = None,
) -> dg.MaterializeResult[None]:
    """Run ``work`` on a fresh unit of work of ``model`` for every shard of the run, under the lock of
    the shard's ``scope`` (what the step writes), recording metadata per shard; ``shared``: figures of
    work done for several shards at once, counted in the run's sums only."""

    def done() -> Iterator[tuple[str, dict[str, Any], float]]:
        for shard in context.partition_keys:
            started = time.perf_counter()
            with index.staging.lock(shard, scope):
                metadata = work(index.shard_work(shard, model))
            yield shard, metadata, time.perf_counter() - started

    return _record_shards(context, done(), shared)


def _record_shards(
    context: dg.AssetExecutionContext,
    done: Iterable[tuple[str, dict[str, Any], float]],
    shared: Mapping[str, float] | None = None,
) -> dg.MaterializeResult[None]:
    """Record each (shard, metadata, seconds) as it is ``done`` on the shard's materialization.
    Shards that take a while are logged as they finish (every log line is an event the instance stores,
    so quick shards show only in their metadata)."""
    total, asset = len(context.partition_keys), context.asset_key.to_user_string()
    recorded = []
    for position, (shard, metadata, seconds) in enumerate(done, start=1):
        metadata["duration_s"] = round(seconds, 3)
        context.add_asset_metadata(metadata, partition_key=shard)
        recorded.append(metadata)
        progress.advance(asset, shard, **{k: v for k, v in metadata.items() if isinstance(v, int | float)})
        if metadata["duration_s"] >= SLOW_SHARD_SECONDS:
            figures = ", ".join(f"{k}={v}" for k, v in metadata.items() if isinstance(v, int | float))
            context.log.info(f"[{position}/{total}] {asset} {shard}: {figures}")
    return dg.MaterializeResult(metadata=run_summary(recorded, shared))  # on every shard: the run's own sums
