"""Configuration from environment variables, validated once with one clear message per mistake."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from embedding_assets.core.chunking import ChunkingConfig
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.shards import MAX_SHARDS

PREFIX = "EMBEDDING_ASSETS_"


@dataclass(frozen=True)
class Settings:
    """Every setting, its environment variable (``EMBEDDING_ASSETS_`` + upper-case name) and default."""

    source_dir: str = "data/source"
    lancedb_uri: str = "data/lancedb"
    staging_dir: str = "data/staging"
    model: str = "local:all-MiniLM-L6-v2"
    dimensions: int | None = None
    shards: int = 8
    chunk_tokens: int = 200
    chunk_overlap: int = 32
    batch_size: int = 16
    id_field: str = "id"
    text_field: str = "text"

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ConfigError(f"{PREFIX}SHARDS must be between 1 and {MAX_SHARDS}, got {self.shards}")
        if self.batch_size < 1:
            raise ConfigError(f"{PREFIX}BATCH_SIZE must be at least 1, got {self.batch_size}")
        if self.dimensions is not None and self.dimensions < 1:
            raise ConfigError(f"{PREFIX}DIMENSIONS must be positive, got {self.dimensions}")
        try:
            ChunkingConfig(self.chunk_tokens, self.chunk_overlap)
        except ValueError as err:
            raise ConfigError(f"{PREFIX}CHUNK_TOKENS/{PREFIX}CHUNK_OVERLAP: {err}") from None

    @property
    def chunking(self) -> ChunkingConfig:
        return ChunkingConfig(self.chunk_tokens, self.chunk_overlap)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from ``EMBEDDING_ASSETS_*`` variables; local paths become absolute."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = environ.get(PREFIX + field.name.upper(), "").strip()
            if raw:
                values[field.name] = _parse(field.name, raw, field.default)
        settings = cls(**values)
        return cls(**{**settings.__dict__, "source_dir": _absolute(settings.source_dir),
                      "staging_dir": _absolute(settings.staging_dir), "lancedb_uri": _absolute(settings.lancedb_uri)})


def _parse(name: str, raw: str, default: object) -> object:
    if isinstance(default, int) or name == "dimensions":
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name.upper()} must be an integer, got {raw!r}") from None
    return raw


def _absolute(location: str) -> str:
    """Absolute local paths, so runs launched from another directory use the same data; URIs as given."""
    return location if "://" in location else str(Path(location).expanduser().resolve())
