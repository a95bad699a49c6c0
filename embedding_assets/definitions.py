"""The one place the Dagster ``Definitions`` are assembled, from environment settings."""

import os

import dagster as dg

from embedding_assets.assets import build_pipeline_assets
from embedding_assets.checks import build_table_checks
from embedding_assets.core.embedders import make_embedder
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.settings import Settings
from embedding_assets.partitions import shard_partitions
from embedding_assets.resources import (
    ChunkingResource,
    EmbedderResource,
    LanceDBResource,
    SourceFolderResource,
    StagingResource,
)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Resources from settings; the OpenAI key and endpoint are read only through ``dg.EnvVar``."""
    uses_openai = settings.model.startswith("openai:")
    return {
        "source": SourceFolderResource(path=settings.source_dir, id_field=settings.id_field,
                                       text_field=settings.text_field),
        "staging": StagingResource(path=settings.staging_dir),
        "chunking": ChunkingResource(max_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap),
        "embedder": EmbedderResource(
            model=settings.model, dimensions=settings.dimensions, batch_size=settings.batch_size,
            api_key=dg.EnvVar("OPENAI_API_KEY") if uses_openai else None,
            base_url=dg.EnvVar("OPENAI_BASE_URL") if uses_openai and os.environ.get("OPENAI_BASE_URL") else None),
        "vector_store": LanceDBResource(uri=settings.lancedb_uri),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    """The pipeline's assets, checks and resources for ``settings``; fails fast on misconfiguration."""
    embedder = make_embedder(settings.model, dimensions=settings.dimensions,
                             api_key=os.environ.get("OPENAI_API_KEY"))
    embedder.check_credentials()
    if settings.chunk_tokens > embedder.max_input_tokens:
        raise ConfigError(f"EMBEDDING_ASSETS_CHUNK_TOKENS={settings.chunk_tokens} is over what "
                          f"{settings.model} reads ({embedder.max_input_tokens} tokens)")
    partitions = shard_partitions(settings.shards)
    assets = build_pipeline_assets(
        partitions, model_version=embedder.model_version,
        chunking_version=f"{settings.chunking.identity}/{embedder.tokenizer_id}")
    return dg.Definitions(
        assets=assets,
        asset_checks=[build_table_checks(assets[-1], partitions)],
        resources=build_resources(settings),
    )


defs = build_definitions(Settings.from_env())
