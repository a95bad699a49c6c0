"""The one place the Dagster ``Definitions`` are assembled, from environment settings."""

import os

import dagster as dg

from embedding_assets.assets import build_pipeline_assets, source_documents_spec
from embedding_assets.checks import build_table_checks
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.settings import Settings
from embedding_assets.partitions import shard_partitions
from embedding_assets.resources import (
    ChunkingResource,
    EmbedderResource,
    EvalResource,
    LanceDBResource,
    SourceFolderResource,
    StagingResource,
)
from embedding_assets.sensors import build_triggers

REFRESH_JOB = "refresh_job"


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Resources from settings; the OpenAI key and endpoint are read only through ``dg.EnvVar``."""
    uses_openai = settings.model.startswith("openai:")
    return {
        "source": SourceFolderResource(
            path=settings.source_dir,
            id_field=settings.id_field,
            text_field=settings.text_field,
            max_file_bytes=settings.max_file_bytes,
        ),
        "staging": StagingResource(path=settings.staging_dir),
        "chunking": ChunkingResource(max_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap),
        "embedder": EmbedderResource(
            model=settings.model,
            dimensions=settings.dimensions,
            batch_size=settings.batch_size,
            tokens_per_minute=settings.tokens_per_minute,
            price_per_mtok=settings.price_per_mtok,
            run_budget_usd=settings.run_budget_usd,
            api_key=dg.EnvVar("OPENAI_API_KEY") if uses_openai else None,
            base_url=dg.EnvVar("OPENAI_BASE_URL") if uses_openai and os.environ.get("OPENAI_BASE_URL") else None,
        ),
        "vector_store": LanceDBResource(uri=settings.lancedb_uri, ttl_days=settings.ttl_days),
        "evals": EvalResource(
            golden_set=str(settings.golden_path),
            margin=settings.eval_margin,
            drift_sample=settings.drift_sample,
            drift_threshold=settings.drift_threshold,
        ),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    """The pipeline's assets, checks and resources for ``settings``; fails fast on misconfiguration."""
    embedder = settings.embedder()
    embedder.check_credentials()
    if settings.chunk_tokens > embedder.max_input_tokens:
        raise ConfigError(
            f"EMBEDDING_ASSETS_CHUNK_TOKENS={settings.chunk_tokens} is over what "
            f"{settings.model} reads ({embedder.max_input_tokens} tokens)"
        )
    partitions = shard_partitions(settings.shards)
    raw_documents, chunks, embeddings, vector_table, retrieval_eval = assets = build_pipeline_assets(
        partitions,
        model_version=embedder.model_version,
        chunking_version=f"{settings.chunking.identity}/{embedder.tokenizer_id}",
        freshness_hours=settings.freshness_hours,
    )
    sensors, schedules = build_triggers(settings, raw_documents, embeddings, vector_table)
    automation = dg.AutomationConditionSensorDefinition(
        "pipeline_automation_sensor",
        target=dg.AssetSelection.assets(chunks, embeddings, vector_table, retrieval_eval),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.automation_interval_seconds,
        description="Carries refreshed shards from raw_documents down to vector_table, and refreshes every "
        "shard after a model or chunker change.",
    )
    return dg.Definitions(
        assets=[source_documents_spec(partitions), *assets],
        asset_checks=build_table_checks(vector_table, partitions),
        jobs=[
            dg.define_asset_job(
                REFRESH_JOB,
                selection=dg.AssetSelection.assets(*assets[:4]),
                description="The whole chain for the selected shards (for dagster job backfill).",
            )
        ],
        sensors=[*sensors, automation],
        schedules=schedules,
        resources=build_resources(settings),
        # The chain is linear, so separate processes per step would buy no parallelism, only a model
        # load and imports per step; shards of a range already share one process.
        executor=dg.in_process_executor,
    )


defs = build_definitions(Settings.from_env())
