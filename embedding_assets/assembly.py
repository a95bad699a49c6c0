"""The one place the Dagster ``Definitions`` are assembled, for given settings.

Importing this module builds nothing; ``definitions.py`` builds the ``defs`` Dagster loads, and
tests and ``refresh`` build their own from the settings they hold.
"""

import os

import dagster as dg

from embedding_assets.assets import build_chunks, build_model_assets, build_raw_documents, model_group
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
    uses_openai = any(config.spec.startswith("openai:") for config in settings.model_configs)
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
    partitions = shard_partitions(settings.shards)
    raw_documents = build_raw_documents(partitions)
    chunks = {
        profile: build_chunks(partitions, raw_documents, profile, chunker_identity(settings.chunking, model.embedder))
        for profile, model in index.chunk_profiles.items()
    }
    models = {
        model.slug: build_model_assets(
            partitions,
            model,
            chunks[model.profile],
            freshness_hours=settings.freshness_hours,
            pool=embedding_pool(settings.profile, model.slug),
            table_metadata=table_definition(settings.lancedb_uri, model.model_version, settings.shards),
        )
        for model in index.models
    }
    vector_indexes = {
        slug: build_vector_index(assets.vector_table, model_group(slug), slug) for slug, assets in models.items()
    }
    sensors, schedules = build_triggers(settings, raw_documents, models)
    automation = [
        _automation_sensor(
            "documents_automation_sensor",
            list(chunks.values()),
            settings,
            "Cuts every chunking profile's chunks of the shards whose raw documents were refreshed, and "
            "re-cuts every shard after a chunker change.",
        ),
        *(
            _automation_sensor(
                f"{slug}_automation_sensor",
                [assets.embeddings, assets.vector_table, assets.retrieval_eval, vector_indexes[slug]],
                settings,
                f"Carries refreshed chunks down to {slug}'s vector_table, refreshes every shard after a "
                "model change, then re-evaluates the table and keeps its vector index fresh.",
            )
            for slug, assets in models.items()
        ),
    ]
    per_model = [a for m in models.values() for a in (m.embeddings, m.vector_table, m.retrieval_eval)]
    return dg.Definitions(
        assets=[
            build_source_documents(partitions),
            raw_documents,
            *chunks.values(),
            *per_model,
            *vector_indexes.values(),
        ],
        asset_checks=[
            *(c for slug, m in models.items() for c in build_table_checks(m.vector_table, partitions, slug)),
            *(build_quality_check(m.retrieval_eval.key, slug) for slug, m in models.items()),
        ],
        jobs=[
            dg.define_asset_job(
                REFRESH_JOB,
                selection=dg.AssetSelection.assets(
                    raw_documents, *chunks.values(), *(a for m in models.values() for a in m.chain[1:])
                ),
                description="The whole chain of every active model for the selected shards (for dagster job backfill).",
            )
        ],
        sensors=[*sensors, *automation],
        schedules=schedules,
        resources=build_resources(settings),
        # The chain is linear, so separate processes per step would buy no parallelism, only a model
        # load and imports per step; shards of a range already share one process.
        executor=dg.in_process_executor,
    )


def _automation_sensor(
    name: str, assets: list[dg.AssetsDefinition], settings: Settings, description: str
) -> dg.AutomationConditionSensorDefinition:
    """One automation sensor per model (and one for the shared chunks), so each model's runs are its own."""
    return dg.AutomationConditionSensorDefinition(
        name,
        target=dg.AssetSelection.assets(*assets),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.automation_interval_seconds,
        description=description,
    )
