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
