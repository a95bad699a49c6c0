"""Configuration from environment variables, parsed and validated once, with one clear message per mistake.

Settings hold values only; ``core.index.Index`` builds the objects they describe."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

from embedding_assets.core.chunking import ChunkingConfig
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.model_set import ModelConfig, parse_models
from embedding_assets.core.profiles import PROFILES
from embedding_assets.core.shards import MAX_SHARDS
from embedding_assets.core.sources import DEFAULT_MAX_FILE_BYTES

PREFIX = "EMBEDDING_ASSETS_"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SOURCE_MODES = ("logical", "outbox", "watermark")
PER_MODEL = ("dimensions", "tokens_per_minute", "run_budget_usd", "price_per_mtok")  # in MODELS entries


@dataclass(frozen=True)
class Settings:
    """Every setting, its environment variable (``EMBEDDING_ASSETS_`` + upper-case name) and default."""

    profile: str = "local"
    source: str = ""  # a folder path, s3://bucket/prefix or postgresql://user@host:port/db; "": source_dir
    source_dir: str = "data/source"
    source_table: str = ""
    source_mode: str = "logical"
    source_queue: str = ""
    updated_field: str = "updated_at"
    change_index: str = ""  # postgresql://user@host:port/db; "": the profile's (staging, or the instance's)
    lancedb_uri: str = "data/lancedb"
    staging_dir: str = "data/staging"
    model: str = "local:all-MiniLM-L6-v2"
    models: str = ""  # the active models, comma-separated, each with its own settings; "": model alone
    dimensions: int | None = None
    shards: int = 8
    chunk_tokens: int = 200
    chunk_overlap: int = 32
    batch_size: int = 16
    batch_tokens: int = 256  # the local model's tokens per forward pass (a longer text: a pass of its own)
    model_threads: int | None = None  # the local model's batches in flight per run; None: one per core
    id_field: str = "id"
    text_field: str = "text"
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    scan_interval_seconds: int = 30
    automation_interval_seconds: int = 30
    refresh_cron: str | None = None  # cron (UTC) of refresh_schedule; None: no schedule
    ttl_days: float | None = None
    freshness_hours: float = 24.0
    tokens_per_minute: int | None = None
    price_per_mtok: float | None = None
    run_budget_usd: float | None = None
    golden_set: str = ""
    eval_margin: float = 0.02
    eval_floor: float = 0.5  # lowest recall@10 retrieval_eval's check accepts (0: no floor)
    drift_sample: int = 4
    drift_threshold: float = 0.98
    ann_min_rows: int = 100_000  # a table this big gets a vector (ANN) index; see core.ann

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(f"{PREFIX}PROFILE must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ConfigError(f"{PREFIX}SHARDS must be between 1 and {MAX_SHARDS}, got {self.shards}")
        if self.batch_size < 1:
            raise ConfigError(f"{PREFIX}BATCH_SIZE must be at least 1, got {self.batch_size}")
        for name in (
            "dimensions",
            "ttl_days",
            "freshness_hours",
            "scan_interval_seconds",
            "automation_interval_seconds",
            "tokens_per_minute",
            "max_file_bytes",
            "model_threads",
            "batch_tokens",
            "ann_min_rows",
        ):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{PREFIX}{name.upper()} must be positive, got {value}")
        for name in (
            "price_per_mtok",
            "run_budget_usd",
            "eval_margin",
            "eval_floor",
            "drift_sample",
            "drift_threshold",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{PREFIX}{name.upper()} must not be negative, got {value}")
        self._check_source()
        self.model_configs  # noqa: B018 (parsed here, so a bad list fails at load with its message)
        try:
            ChunkingConfig(self.chunk_tokens, self.chunk_overlap)
        except ValueError as err:
            raise ConfigError(f"{PREFIX}CHUNK_TOKENS/{PREFIX}CHUNK_OVERLAP: {err}") from None

    @property
    def source_location(self) -> str:
        """Where the documents are: EMBEDDING_ASSETS_SOURCE, else the folder EMBEDDING_ASSETS_SOURCE_DIR."""
        return self.source or self.source_dir

    def _check_source(self) -> None:
        location = self.source_location
        if location.startswith(POSTGRES_SCHEMES):
            if urlsplit(location).password is not None:
                raise ConfigError(
                    f"{PREFIX}SOURCE must not hold a password (it is shown in the UI and metadata); "
                    "set PGPASSWORD or use ~/.pgpass"
                )
            if not self.source_table:
                raise ConfigError(f"{PREFIX}SOURCE_TABLE must name the table (schema.table) of a PostgreSQL source")
            if self.source_mode not in SOURCE_MODES:
                raise ConfigError(
                    f"{PREFIX}SOURCE_MODE must be one of {', '.join(SOURCE_MODES)}, got {self.source_mode!r}"
                )
        elif "://" in location and not location.startswith("s3://"):
            raise ConfigError(
                f"{PREFIX}SOURCE must be a folder, s3://bucket/prefix or postgresql://user@host:port/db, "
                f"got {location!r}"
            )
        if self.change_index and not self.change_index.startswith(POSTGRES_SCHEMES):
            raise ConfigError(
                f"{PREFIX}CHANGE_INDEX must be a postgresql://user@host:port/db URI, got {self.change_index!r}"
            )
        if urlsplit(self.change_index).password is not None:
            raise ConfigError(f"{PREFIX}CHANGE_INDEX must not hold a password; set PGPASSWORD or use ~/.pgpass")
        if self.source_queue and not location.startswith("s3://"):
            raise ConfigError(f"{PREFIX}SOURCE_QUEUE is for an s3:// source, but the source is {location!r}")

    @property
    def golden_path(self) -> Path:
        """The golden set for evals: EMBEDDING_ASSETS_GOLDEN_SET, else the one shipped for the demo corpus."""
        return Path(self.golden_set) if self.golden_set else Path(__file__).parents[1] / "demo" / "golden.jsonl"

    @property
    def model_configs(self) -> list[ModelConfig]:
        """The active models: EMBEDDING_ASSETS_MODELS, else EMBEDDING_ASSETS_MODEL with the index-wide settings."""
        if not self.models:
            return [
                ModelConfig(
                    self.model, self.dimensions, self.tokens_per_minute, self.run_budget_usd, self.price_per_mtok
                )
            ]
        per_model = [f for f in PER_MODEL if getattr(self, f) is not None]
        if per_model:
            names = ", ".join(PREFIX + f.upper() for f in per_model)
            raise ConfigError(
                f"{names} and {PREFIX}MODELS are both set; with several models, give each its own in its "
                f"entry, e.g. openai:text-embedding-3-small?dimensions=512&run_budget_usd=5"
            )
        return parse_models(self.models)

    @property
    def chunking(self) -> ChunkingConfig:
        return ChunkingConfig(self.chunk_tokens, self.chunk_overlap)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from ``EMBEDDING_ASSETS_*`` variables; local paths become absolute."""
        environ = os.environ if environ is None else environ
        if environ.get(PREFIX + "MODEL", "").strip() and environ.get(PREFIX + "MODELS", "").strip():
            raise ConfigError(f"set {PREFIX}MODEL (one model) or {PREFIX}MODELS (several), not both")
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(PREFIX + field.name.upper(), "").strip()
            if raw:
                values[field.name] = _parse(field.name, raw, field.type)
        settings = cls(**values)
        return cls(
            **{
                **settings.__dict__,
                "source": settings.source and _absolute(settings.source),
                "source_dir": _absolute(settings.source_dir),
                "staging_dir": _absolute(settings.staging_dir),
                "lancedb_uri": _absolute(settings.lancedb_uri),
            }
        )


def _parse(name: str, raw: str, kind: object) -> object:
    """``raw`` as the field's type (int or float, possibly optional), else as given."""
    for number in (int, float):
        if kind is number or number in get_args(kind):
            try:
                return number(raw)
            except ValueError:
                raise ConfigError(
                    f"{PREFIX}{name.upper()} must be {'an integer' if number is int else 'a number'}, got {raw!r}"
                ) from None
    return raw


def _absolute(location: str) -> str:
    """Absolute local paths, so runs launched from another directory use the same data; URIs as given."""
    return location if "://" in location else str(Path(location).expanduser().resolve())
