"""The one place the pipeline's objects are built: each once, from settings, and stale shards found one way."""

import dataclasses
from pathlib import Path

import pytest

from embedding_assets.core.errors import ConfigError
from embedding_assets.core.index import Credentials, Index
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_of
from embedding_assets.core.sources import SourceFolder


def test_objects_are_built_from_the_settings_once(settings: Settings) -> None:
    index = Index(settings)
    assert isinstance(index.source, SourceFolder) and index.source.root == Path(settings.source_dir)
    assert index.staging.root == Path(settings.staging_dir)
    assert index.store.uri == settings.lancedb_uri and index.shard_count == settings.shards
    assert index.embedder is index.embedder and index.store is index.store
    assert index.embedder.model_version == "local:all-MiniLM-L6-v2-onnx-int8@1.0.0/384d"
    work = index.shard_work("s001")
    assert work.chunks_path == Path(settings.staging_dir) / "chunks" / "s001.parquet"
    assert work.embeddings_path.parent.name == "chunks__local_all_minilm_l6_v2_onnx_int8_1_0_0_384d"


def test_validate_refuses_what_only_the_model_can_tell(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="CHUNK_TOKENS=300 is over what local:all-MiniLM-L6-v2 reads"):
        Index(dataclasses.replace(settings, chunk_tokens=300)).validate()
    openai = dataclasses.replace(settings, model="openai:text-embedding-3-small")
    with pytest.raises(ConfigError, match="needs an API key: set OPENAI_API_KEY"):
        Index(openai).validate()
    Index(openai, Credentials(api_key="sk-test")).validate()


def test_stale_shards_compare_the_change_index_with_the_table(settings: Settings) -> None:
    """Before anything is indexed every shard holding documents is stale; an empty shard never is."""
    toy = dataclasses.replace(settings, model="toy:hashing", shards=16)  # more shards than documents
    index = Index(toy)
    assert index.stale_shards() == []  # the change index knows no document yet
    index.sync()
    holding = sorted({shard_of(path.name, toy.shards) for path in Path(toy.source_dir).iterdir()})
    assert len(holding) < toy.shards
    assert index.stale_shards() == holding
    assert index.stale_shards("toy:hashing/99d") == holding  # another model's table: none yet either
