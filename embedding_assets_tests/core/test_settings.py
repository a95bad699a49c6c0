from pathlib import Path

import pytest

from embedding_assets.core.errors import ConfigError
from embedding_assets.core.settings import Settings


def test_defaults_resolve_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.model == "local:all-MiniLM-L6-v2" and settings.shards == 8
    assert settings.source_dir == str(tmp_path / "data" / "source")
    assert settings.lancedb_uri == str(tmp_path / "data" / "lancedb")


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "EMBEDDING_ASSETS_SHARDS": "256",
            "EMBEDDING_ASSETS_DIMENSIONS": "512",
            "EMBEDDING_ASSETS_MODEL": "openai:text-embedding-3-small",
            "EMBEDDING_ASSETS_LANCEDB_URI": "s3://bucket/index",
        }
    )
    assert (settings.shards, settings.dimensions, settings.model) == (256, 512, "openai:text-embedding-3-small")
    assert settings.lancedb_uri == "s3://bucket/index"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SHARDS", "many", "EMBEDDING_ASSETS_SHARDS must be an integer"),
        ("SHARDS", "0", "EMBEDDING_ASSETS_SHARDS must be between 1 and 65536"),
        ("CHUNK_OVERLAP", "150", "EMBEDDING_ASSETS_CHUNK_TOKENS/EMBEDDING_ASSETS_CHUNK_OVERLAP"),
        ("DIMENSIONS", "-3", "EMBEDDING_ASSETS_DIMENSIONS must be positive"),
    ],
)
def test_bad_values_fail_with_the_variable_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({f"EMBEDDING_ASSETS_{name}": value})


def test_the_source_is_a_folder_a_prefix_or_a_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({}).source_location == str(tmp_path / "data" / "source")
    assert Settings.from_env({"EMBEDDING_ASSETS_SOURCE": "docs"}).source_location == str(tmp_path / "docs")
    s3 = {"EMBEDDING_ASSETS_SOURCE": "s3://bucket/docs/", "EMBEDDING_ASSETS_SOURCE_QUEUE": "http://q/1/docs"}
    assert Settings.from_env(s3).source_location == "s3://bucket/docs/"
    table = {"EMBEDDING_ASSETS_SOURCE": "postgresql://app@db:5432/docs", "EMBEDDING_ASSETS_SOURCE_TABLE": "public.t"}
    assert Settings.from_env(table).source_location == "postgresql://app@db:5432/docs"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SOURCE": "postgresql://app:hunter2@db/docs", "SOURCE_TABLE": "t"}, "SOURCE must not hold a password"),
        ({"SOURCE": "postgresql://app@db/docs"}, "SOURCE_TABLE must name the table"),
        ({"SOURCE": "postgresql://app@db/docs", "SOURCE_TABLE": "t", "SOURCE_MODE": "cdc"}, "SOURCE_MODE must be one"),
        ({"SOURCE": "ftp://host/docs"}, "SOURCE must be a folder, s3://bucket/prefix or postgresql://"),
        ({"SOURCE_QUEUE": "http://q/1/docs"}, "SOURCE_QUEUE is for an s3:// source"),
    ],
)
def test_a_bad_source_fails_with_one_message(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        Settings.from_env({f"EMBEDDING_ASSETS_{k}": v for k, v in env.items()})
    assert "hunter2" not in str(raised.value)
