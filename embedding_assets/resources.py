"""The pipeline's one Dagster resource: the index's settings, shown in the UI, and the ``Index`` they build."""

import dataclasses
import gc
import os

import dagster as dg
from pydantic import Field, PrivateAttr

from embedding_assets.core.backfill import BACKFILL_NICENESS, BACKFILL_TAG
from embedding_assets.core.index import Credentials, Index
from embedding_assets.core.settings import Settings


class _RunHeap:
    """Leaves what a process held before its first run (Dagster, the definitions: ~300k objects) out of
    every later garbage collection; a full one over them took ~160 ms, about every other one-shard run.
    Frozen once per process: a process that runs many runs (``refresh``, tests) neither pays a full
    collection per run nor freezes any run's garbage; what it leaves uncollected is bounded by the heap
    before the first run (cyclic garbage among it)."""

    frozen = False

    @classmethod
    def enter(cls) -> None:
        if not cls.frozen:
            gc.freeze()
            cls.frozen = True


# The resource's value is the resource itself, which Dagster leaves implicit (as its own resources do).
class PipelineResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Every ``EMBEDDING_ASSETS_*`` setting of the index (one field each, same name in lower case).

    Assets, checks and sensors take the index's objects (source, staging, embedder, store, registry)
    from ``get()``; the OpenAI key and endpoint arrive only through ``dg.EnvVar``."""

    profile: str = Field(description="Deployment profile (local or production).")
    source: str = Field(description="A folder path, s3://bucket/prefix or postgresql://user@host:port/db.")
    source_dir: str = Field(description="Folder of source documents (when source is empty).")
    source_table: str = Field(description="The PostgreSQL source's table, schema.table.")
    source_mode: str = Field(description="How a PostgreSQL table is followed: logical, outbox or watermark.")
    source_queue: str = Field(description="SQS queue URL receiving the S3 prefix's event notifications.")
    updated_field: str = Field(description="The timestamp column of the watermark mode.")
    change_index: str = Field(
        description="PostgreSQL URI holding the change index (default: staging, or the production instance's)."
    )
    lancedb_uri: str = Field(description="LanceDB location: a folder or an object-store URI.")
    staging_dir: str = Field(description="Parquet files of the intermediate assets, and the shard locks.")
    model: str = Field(description="Embedding model spec, e.g. local:all-MiniLM-L6-v2 or openai:<model>.")
    models: str = Field(description="The active models, comma-separated, each with its own settings (spec?k=v&...).")
    dimensions: int | None = Field(description="Shorter vectors for text-embedding-3-* models.")
    shards: int = Field(description="Number of shards (partitions), fixed for the life of the index.")
    chunk_tokens: int = Field(description="Target chunk size, in the model's tokens.")
    chunk_overlap: int = Field(description="Sentence overlap between chunks, in tokens.")
    batch_size: int = Field(description="Texts per forward pass of the local model, at most.")
    batch_tokens: int = Field(
        description="Tokens per forward pass of the local model, at most (a longer text runs alone)."
    )
    model_threads: int | None = Field(
        description="The local model's batches in flight per run, one thread each (unset: one per core)."
    )
    id_field: str = Field(description="Id field of .json/.jsonl records.")
    text_field: str = Field(description="Text field of .json/.jsonl records.")
    max_file_bytes: int = Field(description="Larger files are skipped, with a reason.")
    scan_interval_seconds: int = Field(description="How often source_change_sensor scans.")
    automation_interval_seconds: int = Field(description="How often pipeline_automation_sensor evaluates.")
    refresh_cron: str | None = Field(description="Cron of refresh_schedule (unset: no schedule).")
    ttl_days: float | None = Field(description="Re-embed vectors older than this.")
    freshness_hours: float = Field(description="Freshness policy window of vector_table.")
    tokens_per_minute: int | None = Field(description="Pace requests to this many tokens a minute per run.")
    price_per_mtok: float | None = Field(description="USD per 1M tokens, overriding the price table.")
    run_budget_usd: float | None = Field(description="Refuse a run whose new text would cost more.")
    golden_set: str = Field(description="Golden set JSONL for evals (empty: the demo's).")
    eval_margin: float = Field(description="Largest drop in recall@10 / nDCG@10 a promotion accepts.")
    eval_floor: float = Field(
        description="Lowest recall@10 the retrieval_quality check accepts before it fails the run (0: no floor)."
    )
    drift_sample: int = Field(description="Stored chunks per run re-embedded by the drift check.")
    drift_threshold: float = Field(description="Lowest acceptable cosine of stored vs fresh vector.")
    ann_min_rows: int = Field(description="Rows at which a table gets its vector (ANN) index.")
    openai_api_key: str | None = Field(default=None, description="From the OPENAI_API_KEY variable (dg.EnvVar).")
    openai_base_url: str | None = Field(default=None, description="From the OPENAI_BASE_URL variable (dg.EnvVar).")

    _index: Index | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        openai_api_key: str | dg.EnvVar | None = None,
        openai_base_url: str | dg.EnvVar | None = None,
    ) -> "PipelineResource":
        return cls(**dataclasses.asdict(settings), openai_api_key=openai_api_key, openai_base_url=openai_base_url)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.run
        if run is not None and BACKFILL_TAG in run.tags:
            # A background backfill yields the CPU to refreshes sharing its worker (it only ever lowers
            # the priority of the run's own process).
            os.nice(BACKFILL_NICENESS)
        self._index = self._build()
        if run is not None:  # a run, not a sensor's tick in the long-lived code server
            _RunHeap.enter()

    def get(self) -> Index:
        """The index; its objects are built once per process (the model loads on its first embedding)."""
        if self._index is None:
            self._index = self._build()
        return self._index

    def _build(self) -> Index:
        settings = Settings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Settings)})
        return Index(settings, Credentials(self.openai_api_key, self.openai_base_url))
