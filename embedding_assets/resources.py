"""Dagster resources: thin, typed configuration over the plain classes in ``core``."""

from datetime import datetime

import dagster as dg
from pydantic import Field, PrivateAttr

from embedding_assets.core.chunking import ChunkingConfig
from embedding_assets.core.cost import price_per_mtok
from embedding_assets.core.embedders import Embedder, make_embedder
from embedding_assets.core.evaluation import GoldenQuery, load_golden
from embedding_assets.core.migration import table_embedder
from embedding_assets.core.sources import DEFAULT_MAX_FILE_BYTES, SourceFolder
from embedding_assets.core.staging import Staging
from embedding_assets.core.store import TableInfo, VectorStore, expire_before


class SourceFolderResource(dg.ConfigurableResource):
    """The folder of source documents (.md, .txt, .rst, .html, .json, .jsonl)."""

    path: str = Field(description="Folder to read documents from (EMBEDDING_ASSETS_SOURCE_DIR).")
    id_field: str = Field(default="id", description="Id field of .json/.jsonl records.")
    text_field: str = Field(default="text", description="Text field of .json/.jsonl records.")
    max_file_bytes: int = Field(default=DEFAULT_MAX_FILE_BYTES, description="Larger files are skipped, with a reason.")

    def folder(self) -> SourceFolder:
        folder = SourceFolder(
            self.path, id_field=self.id_field, text_field=self.text_field, max_file_bytes=self.max_file_bytes
        )
        folder.check()
        return folder


class StagingResource(dg.ConfigurableResource):
    """Where intermediate assets live, as one Parquet file per asset and shard."""

    path: str = Field(description="Folder for raw_documents, chunks and embeddings (EMBEDDING_ASSETS_STAGING_DIR).")

    def staging(self) -> Staging:
        return Staging(self.path)


class ChunkingResource(dg.ConfigurableResource):
    """Chunk size and overlap, in tokens of the embedding model's tokenizer."""

    max_tokens: int = Field(default=200, description="Target chunk size (EMBEDDING_ASSETS_CHUNK_TOKENS).")
    overlap_tokens: int = Field(
        default=32, description="Sentence overlap between chunks (EMBEDDING_ASSETS_CHUNK_OVERLAP)."
    )

    def config(self) -> ChunkingConfig:
        return ChunkingConfig(self.max_tokens, self.overlap_tokens)


class EmbedderResource(dg.ConfigurableResource):
    """The embedding model. Secrets arrive only through ``dg.EnvVar`` and never reach metadata."""

    model: str = Field(description="Model spec: local:all-MiniLM-L6-v2 or openai:<model> (EMBEDDING_ASSETS_MODEL).")
    dimensions: int | None = Field(default=None, description="Shorter vectors for text-embedding-3-* models.")
    api_key: str | None = Field(default=None, description="OpenAI API key; set from the OPENAI_API_KEY variable.")
    base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint (OPENAI_BASE_URL).")
    batch_size: int = Field(default=16, description="Texts per forward pass of the local model.")
    tokens_per_minute: int | None = Field(default=None, description="Pace requests to this many tokens a minute.")
    price_per_mtok: float | None = Field(default=None, description="USD per 1M tokens, overriding the price table.")
    run_budget_usd: float | None = Field(default=None, description="Refuse a run that would cost more than this.")

    _embedder: Embedder | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._embedder = self._build()

    def get(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self._build()
        return self._embedder

    def _build(self) -> Embedder:
        return make_embedder(
            self.model,
            dimensions=self.dimensions,
            api_key=self.api_key,
            base_url=self.base_url,
            batch_size=self.batch_size,
            tokens_per_minute=self.tokens_per_minute,
        )

    def price(self) -> float:
        """USD per 1M tokens for this model."""
        return price_per_mtok(self.model, self.price_per_mtok)

    def query_embedder_for(self, info: TableInfo) -> Embedder:
        """The embedder that built ``info``'s table, with this resource's credentials."""
        return table_embedder(info, api_key=self.api_key, base_url=self.base_url)


class EvalResource(dg.ConfigurableResource):
    """The golden set and the thresholds of the eval gate and the drift sentinel."""

    golden_set: str = Field(description="Golden set JSONL (EMBEDDING_ASSETS_GOLDEN_SET; default: the demo's).")
    margin: float = Field(default=0.02, description="Largest drop in recall@10 / nDCG@10 a promotion accepts.")
    drift_sample: int = Field(default=4, description="Stored chunks per run re-embedded by the drift check.")
    drift_threshold: float = Field(default=0.98, description="Lowest acceptable cosine of stored vs fresh.")

    def golden(self) -> list[GoldenQuery]:
        return load_golden(self.golden_set)


class LanceDBResource(dg.ConfigurableResource):
    """The LanceDB database holding one vector table per model version."""

    uri: str = Field(description="Local folder or object-store URI (EMBEDDING_ASSETS_LANCEDB_URI).")
    ttl_days: float | None = Field(
        default=None, description="Re-embed vectors older than this (EMBEDDING_ASSETS_TTL_DAYS)."
    )

    def store(self) -> VectorStore:
        return VectorStore(self.uri)

    def expire_before(self) -> datetime | None:
        """Vectors embedded before this moment have expired (None: vectors never expire)."""
        return expire_before(self.ttl_days)
