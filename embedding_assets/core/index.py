"""One index and the objects it is made of, built from its settings in this one place.

An index is a source of documents, a staging folder, an embedding model, a LanceDB database and the
registry of which table answers queries. The Dagster resource, the CLI and ``refresh`` all take
these objects from an ``Index``, so each is built one way only.
"""

import os
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from embedding_assets.core.chunking import ChunkingConfig
from embedding_assets.core.cost import price_per_mtok
from embedding_assets.core.embedders import Embedder, make_embedder
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.evaluation import GoldenQuery, load_golden
from embedding_assets.core.migration import table_embedder
from embedding_assets.core.reconcile import stale_shards
from embedding_assets.core.registry import Registry
from embedding_assets.core.scan import ScanResult, SourceScanner
from embedding_assets.core.settings import Settings
from embedding_assets.core.shard_work import ShardWork
from embedding_assets.core.sources import SourceFolder
from embedding_assets.core.staging import Staging
from embedding_assets.core.store import TableInfo, VectorStore, expire_before


@dataclass(frozen=True)
class Credentials:
    """What an OpenAI-compatible provider needs, kept out of ``Settings`` so it never reaches metadata."""

    api_key: str | None = None
    base_url: str | None = None

    @classmethod
    def from_env(cls) -> "Credentials":
        return cls(os.environ.get("OPENAI_API_KEY"), os.environ.get("OPENAI_BASE_URL"))


class Index:
    """The index configured by ``settings``; each object is built on first use and then reused."""

    def __init__(self, settings: Settings, credentials: Credentials | None = None) -> None:
        self.settings = settings
        self.credentials = credentials or Credentials()

    @classmethod
    def from_env(cls) -> "Index":
        """The index the ``EMBEDDING_ASSETS_*`` and ``OPENAI_*`` variables describe."""
        return cls(Settings.from_env(), Credentials.from_env())

    @cached_property
    def source(self) -> SourceFolder:
        s = self.settings
        return SourceFolder(s.source_dir, id_field=s.id_field, text_field=s.text_field, max_file_bytes=s.max_file_bytes)

    @cached_property
    def staging(self) -> Staging:
        return Staging(self.settings.staging_dir)

    @cached_property
    def embedder(self) -> Embedder:
        """The configured model (loaded lazily, on its first embedding)."""
        return self.embedder_for(self.settings.model, self.settings.dimensions)

    @cached_property
    def store(self) -> VectorStore:
        return VectorStore(self.settings.lancedb_uri)

    @property
    def registry(self) -> Registry:
        return Registry(self.store.db)

    @property
    def chunking(self) -> ChunkingConfig:
        return self.settings.chunking

    @property
    def shard_count(self) -> int:
        return self.settings.shards

    def embedder_for(self, spec: str, dimensions: int | None = None) -> Embedder:
        """A model by spec with this index's batch size, pacing and credentials (``estimate --model``)."""
        s = self.settings
        return make_embedder(
            spec,
            dimensions=dimensions,
            batch_size=s.batch_size,
            tokens_per_minute=s.tokens_per_minute,
            api_key=self.credentials.api_key,
            base_url=self.credentials.base_url,
        )

    def query_embedder(self, info: TableInfo) -> Embedder:
        """The model that built ``info``'s table, to embed queries for it."""
        return table_embedder(info, api_key=self.credentials.api_key, base_url=self.credentials.base_url)

    def validate(self) -> None:
        """Fail fast, with one message, on what only the model can tell: a missing key, oversized chunks."""
        embedder = self.embedder
        embedder.check_credentials()
        if self.settings.chunk_tokens > embedder.max_input_tokens:
            raise ConfigError(
                f"EMBEDDING_ASSETS_CHUNK_TOKENS={self.settings.chunk_tokens} is over what "
                f"{self.settings.model} reads ({embedder.max_input_tokens} tokens)"
            )

    def price_per_mtok(self) -> float:
        """USD per 1M tokens of the configured model."""
        return price_per_mtok(self.settings.model, self.settings.price_per_mtok)

    def expire_before(self) -> datetime | None:
        """Vectors embedded before this moment have expired (None: vectors never expire)."""
        return expire_before(self.settings.ttl_days)

    def golden(self) -> list[GoldenQuery]:
        return load_golden(self.settings.golden_path)

    def live_model_version(self) -> str:
        """The registry's live version; before any promotion, the configured model's."""
        return self.registry.state().live or self.embedder.model_version

    def scan(self) -> ScanResult:
        """A change scan of the source, sharing its state with every other scan of this index."""
        return SourceScanner(self.source, self.staging.scan_state(), self.shard_count).scan()

    def stale_shards(self, scan: ScanResult, model_version: str | None = None) -> list[str]:
        """The shards a refresh must run now: their rows in ``model_version``'s table (the configured
        model's by default) do not come from exactly the scanned documents, or hold expired vectors."""
        return stale_shards(scan, self.store, model_version or self.embedder.model_version, self.expire_before())

    def shard_work(self, shard: str) -> ShardWork:
        """The unit of work for ``shard`` in one step (a fresh one per step: it caches what it reads)."""
        return ShardWork(
            shard,
            shard_count=self.shard_count,
            staging=self.staging,
            store=self.store,
            embedder=self.embedder,
            chunking=self.chunking,
            expire_before=self.expire_before(),
        )
