"""The one place the Dagster ``Definitions`` are assembled, for given settings.

Importing this module builds nothing; ``definitions.py`` builds the ``defs`` Dagster loads, and
tests and ``refresh`` build their own from the settings they hold.
"""

import os

import dagster as dg

from embedding_assets.assets import GROUP, build_pipeline_assets
from embedding_assets.checks import build_quality_check, build_table_checks
from embedding_assets.core.index import Credentials, Index
from embedding_assets.core.settings import Settings
from embedding_assets.core.shard_work import chunker_identity
from embedding_assets.metadata import embedding_pool, table_definition
from embedding_assets.partitions import shard_partitions
from embedding_assets.resources import PipelineResource
from embedding_assets.sensors import build_triggers
from embedding_assets.source_documents import build_source_documents
from embedding_assets.vector_index import build_vector_index

REFRESH_JOB = "refresh_job"


def build_resources(settings: Settings) -> dict[str, PipelineResource]:
    """The pipeline resource for ``settings``; the OpenAI key and endpoint are read only through ``dg.EnvVar``."""
    uses_openai = settings.model.startswith("openai:")
    return {
        "pipeline": PipelineResource.from_settings(
            settings,
            openai_api_key=dg.EnvVar("OPENAI_API_KEY") if uses_openai else None,
            openai_base_url=dg.EnvVar("OPENAI_BASE_URL") if uses_openai and os.environ.get("OPENAI_BASE_URL") else None,
        )
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    """The pipeline's assets, checks and resources for ``settings``; fails fast on misconfiguration."""
    index = Index(settings, Credentials.from_env())
    index.validate()
    embedder = index.embedder
    partitions = shard_partitions(settings.shards)
    raw_documents, chunks, embeddings, vector_table, retrieval_eval = assets = build_pipeline_assets(
        partitions,
        model_version=embedder.model_version,
        chunking_version=chunker_identity(settings.chunking, embedder),
        freshness_hours=settings.freshness_hours,
        embedding_pool=embedding_pool(settings.profile, embedder.model_version),
        table_metadata=table_definition(settings.lancedb_uri, embedder.model_version, settings.shards),
    )
    vector_index = build_vector_index(vector_table, GROUP)
    sensors, schedules = build_triggers(settings, [raw_documents, chunks, embeddings, vector_table])
    automation = dg.AutomationConditionSensorDefinition(
        "pipeline_automation_sensor",
        target=dg.AssetSelection.assets(chunks, embeddings, vector_table, retrieval_eval, vector_index),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.automation_interval_seconds,
        description="Carries refreshed shards from raw_documents down to vector_table, refreshes every "
        "shard after a model or chunker change, and keeps the vector index fresh after refreshes.",
    )
    return dg.Definitions(
        assets=[build_source_documents(partitions), *assets, vector_index],
        asset_checks=[*build_table_checks(vector_table, partitions), build_quality_check(retrieval_eval.key)],
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
