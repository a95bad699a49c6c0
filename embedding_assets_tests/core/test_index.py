"""The one place the pipeline's objects are built: each once, from settings, and stale shards found one way."""

import dataclasses
import json
from pathlib import Path

import pytest

from embedding_assets.core.change_index_db import PostgresDatabase, SqliteDatabase
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.index import Credentials, Index
from embedding_assets.core.profiles import INSTANCE_DATABASE
from embedding_assets.core.settings import Settings
from embedding_assets.core.shard_work import Kept
from embedding_assets.core.shards import shard_of
from embedding_assets.core.sources import SourceFolder
from embedding_assets.core.staging import Staging


def test_objects_are_built_from_the_settings_once(settings: Settings) -> None:
    index = Index(settings)
    assert isinstance(index.source, SourceFolder) and index.source.root == Path(settings.source_dir)
    assert index.staging.root == Path(settings.staging_dir) / f"index-{index.index_id}"
    assert index.store.uri == settings.lancedb_uri and index.shard_count == settings.shards
    assert index.models is index.models and index.store is index.store
    (model,) = index.models  # EMBEDDING_ASSETS_MODEL alone: one active model
    assert index.model("local_all_minilm_l6_v2") is model and index.live_model() is model
    assert model.model_version == "local:all-MiniLM-L6-v2-onnx-int8@1.0.0/384d"
    assert index.active_model(model.model_version) is model and index.active_model("toy:hashing@1/32d") is None
    assert index.chunk_profiles == {"wordpiece_all_minilm_l6_v2_onnx_int8": model}
    work = index.shard_work("s001")
    assert work.chunks_path == index.staging.root / "chunks" / model.profile / "s001.parquet"
    assert index.shard_work("s001", model).chunks_path == work.chunks_path  # the first model by default
    assert work.embeddings_path.parent.name == "chunks__local_all_minilm_l6_v2_onnx_int8_1_0_0_384d"


def test_the_change_index_lives_in_staging_or_in_each_index_s_own_postgresql_schema(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(Index(settings).changes.database, SqliteDatabase)
    production = dataclasses.replace(settings, profile="production")
    for name in INSTANCE_DATABASE:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="set DAGSTER_PG_HOST, DAGSTER_PG_PORT, DAGSTER_PG_USER, DAGSTER_PG_DB"):
        Index(production).validate()  # fails fast, as the definitions load
    for name, value in zip(INSTANCE_DATABASE, ("db.internal", "5432", "dagster", "dagster"), strict=True):
        monkeypatch.setenv(name, value)
    instance = Index(production).changes.database
    assert isinstance(instance, PostgresDatabase) and instance.where.startswith("db.internal:5432/dagster schema ")
    explicit = dataclasses.replace(settings, change_index="postgresql://ea@pg:5432/state")
    other = dataclasses.replace(explicit, lancedb_uri=settings.lancedb_uri + "-other")
    schemas = {Index(s).changes.database.schema for s in (explicit, other)}  # type: ignore[attr-defined]
    assert len(schemas) == 2, "two indexes never share a change index"
    with pytest.raises(ConfigError, match="CHANGE_INDEX must not hold a password"):
        dataclasses.replace(settings, change_index="postgresql://ea:secret@pg/state")


def test_each_index_stages_in_a_folder_of_its_own_that_refuses_another_index(settings: Settings) -> None:
    index = Index(settings)
    other = Index(dataclasses.replace(settings, lancedb_uri=settings.lancedb_uri + "-other"))
    assert index.staging.root.parent == other.staging.root.parent == Path(settings.staging_dir)
    assert index.staging.root != other.staging.root
    with index.staging.lock("s000", "raw_documents"):  # first use: the folder is claimed
        pass
    recorded = json.loads((index.staging.root / "index.json").read_text())
    assert recorded == {"lancedb_uri": settings.lancedb_uri, "shards": str(settings.shards)}
    copied = Staging(index.staging.root, other.identity)  # another index pointed at this folder by hand
    with pytest.raises(ConfigError, match=r"belongs to another index .* set EMBEDDING_ASSETS_STAGING_DIR"):
        copied.lock("s000", "raw_documents").__enter__()
    with Index(settings).staging.lock("s000", "raw_documents"):  # the index itself, again: fine
        pass


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
    model = index.models[0].model_version
    assert index.stale_shards(model) == []  # the change index knows no document yet
    index.sync()
    holding = sorted({shard_of(path.name, toy.shards) for path in Path(toy.source_dir).iterdir()})
    assert len(holding) < toy.shards
    assert index.stale_shards(model) == holding
    assert index.stale_shards("toy:hashing/99d") == holding  # another model's table: none yet either


def test_a_restage_copies_kept_documents_and_equals_a_read_from_scratch(tmp_path: Path) -> None:
    """A re-read of a shard reads only the keys whose documents changed; the documents it keeps come
    from the staged copy, and the file, its key and its stats are those a read of everything makes."""
    source = tmp_path / "source"
    source.mkdir()
    for i in range(40):
        (source / f"doc{i:02}.txt").write_text(f"Document {i} about shards, vectors and the source.")
    (source / "latin1.txt").write_bytes("Café déjà vu, naïve façade et crème brûlée.".encode("cp1252"))
    settings = Settings(source_dir=str(source), staging_dir=str(tmp_path / "a"), shards=1, model="toy:hashing")
    index = Index(settings)
    index.sync()
    shard = "s000"
    work = index.shard_work(shard)
    work.read_raw_documents(index.listing(shard, work.staged_keys()), 1)
    (source / "doc03.txt").write_text("An edited document.")
    (source / "doc07.txt").unlink()
    (source / "new.txt").write_text("A new document.")
    (source / "empty.txt").write_text("  ")  # skipped, with its reason
    index.sync()
    read: list[str] = []
    read_many = index.source.read_many
    index.source.read_many = lambda keys: (read.extend(keys), read_many(keys))[1]  # type: ignore[method-assign]
    again = index.shard_work(shard)
    listing = list(index.listing(shard, again.staged_keys()))
    restaged = again.read_raw_documents(listing, 2)
    assert sorted(read) == ["doc03.txt", "new.txt"]  # the empty file is skipped by the sync
    assert sum(len(item) for item in listing if isinstance(item, Kept)) == 39  # 40 + latin1 - edited - deleted

    scratch = Index(dataclasses.replace(settings, staging_dir=str(tmp_path / "b")))
    scratch.sync()
    fresh = scratch.shard_work(shard)
    from_scratch = fresh.read_raw_documents(scratch.documents(shard), 2)
    assert restaged == from_scratch and restaged.encodings == {"latin1.txt": "cp1252"} and restaged.skipped
    staged, expected = (
        Staging(root).read(w.raw_path) for root, w in ((tmp_path / "a", again), (tmp_path / "b", fresh))
    )
    assert staged.to_pylist() == expected.to_pylist()
    assert Staging(tmp_path / "a").metadata(again.raw_path) == Staging(tmp_path / "b").metadata(fresh.raw_path)
