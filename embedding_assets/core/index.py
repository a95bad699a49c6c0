"""One index and the objects it is made of, built from its settings in this one place.

An index is a source of documents, a staging folder, an embedding model, a LanceDB database and the
registry of which table answers queries. The Dagster resource, the CLI and ``refresh`` all take
these objects from an ``Index``, so each is built one way only.
"""

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embedding_assets.core.change_index import ChangeIndex, SyncReport
from embedding_assets.core.change_index_db import IndexDatabase, PostgresDatabase, SqliteDatabase
from embedding_assets.core.chunking import ChunkingConfig
from embedding_assets.core.cost import price_per_mtok
from embedding_assets.core.embedders import Embedder, make_embedder
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.evaluation import GoldenQuery, load_golden
from embedding_assets.core.migration import table_embedder
from embedding_assets.core.model_set import ModelConfig
from embedding_assets.core.profiles import instance_database
from embedding_assets.core.reconcile import stale_shards
from embedding_assets.core.registry import Registry
from embedding_assets.core.settings import POSTGRES_SCHEMES, Settings
from embedding_assets.core.shard_work import Kept, ShardWork, chunk_profile
from embedding_assets.core.sources import Document, Item, Skip, Source, SourceFolder
from embedding_assets.core.staging import Staging
from embedding_assets.core.store import TableInfo, VectorStore, document_keys, expire_before, table_name

SYNC_BATCH_KEYS = 10_000  # keys one sync reads before it records them (and acknowledges the source)


@dataclass(frozen=True)
class Credentials:
    """What an OpenAI-compatible provider needs, kept out of ``Settings`` so it never reaches metadata."""

    api_key: str | None = None
    base_url: str | None = None

    @classmethod
    def from_env(cls) -> "Credentials":
        return cls(os.environ.get("OPENAI_API_KEY"), os.environ.get("OPENAI_BASE_URL"))


@dataclass(frozen=True)
class ActiveModel:
    """One of the index's active models: its own settings, its embedder, and the names of its parts."""

    config: ModelConfig
    embedder: Embedder

    @property
    def slug(self) -> str:
        """Its asset key prefix, group, pool and sensor names."""
        return self.config.slug

    @property
    def model_version(self) -> str:
        return self.embedder.model_version

    @property
    def table(self) -> str:
        return table_name(self.embedder.model_version)

    @property
    def profile(self) -> str:
        """Its chunking profile: models sharing a tokenizer share chunks."""
        return chunk_profile(self.embedder)

    @property
    def price_per_mtok(self) -> float:
        return price_per_mtok(self.config.spec, self.config.price_per_mtok)


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
    def source(self) -> Source:
        """The folder, S3 prefix or PostgreSQL table EMBEDDING_ASSETS_SOURCE names (heavy clients load lazily)."""
        s, location = self.settings, self.settings.source_location
        if location.startswith("s3://"):
            from embedding_assets.core.sources.s3 import S3Prefix

            return S3Prefix(
                location,
                queue_url=s.source_queue or None,
                id_field=s.id_field,
                text_field=s.text_field,
                max_object_bytes=s.max_file_bytes,
            )
        if location.startswith(POSTGRES_SCHEMES):
            from embedding_assets.core.sources.postgres import PostgresTable

            return PostgresTable(
                location,
                s.source_table,
                id_field=s.id_field,
                text_field=s.text_field,
                mode=s.source_mode,
                updated_field=s.updated_field,
            )
        return SourceFolder(location, id_field=s.id_field, text_field=s.text_field, max_file_bytes=s.max_file_bytes)

    @property
    def identity(self) -> dict[str, str]:
        """What makes an index itself: its table location and shard count (a shard's rows live there)."""
        return {"lancedb_uri": self.settings.lancedb_uri, "shards": str(self.settings.shards)}

    @property
    def index_id(self) -> str:
        return hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:12]

    @cached_property
    def staging(self) -> Staging:
        """This index's own staging folder, ``<EMBEDDING_ASSETS_STAGING_DIR>/index-<id>``: indexes sharing
        a staging folder (the default ``data/staging``) never read or lock each other's files."""
        return Staging(Path(self.settings.staging_dir) / f"index-{self.index_id}", self.identity)

    @cached_property
    def models(self) -> list[ActiveModel]:
        """The active models, in the order listed (each loaded lazily, on its first embedding)."""
        return [ActiveModel(config, self.embedder_for(config)) for config in self.settings.model_configs]

    def model(self, slug: str) -> ActiveModel:
        """The active model named ``slug`` (its assets' key prefix)."""
        for model in self.models:
            if model.slug == slug:
                return model
        raise ConfigError(f"no active model {slug!r}; active: {', '.join(m.slug for m in self.models)}")

    def active_model(self, model_version: str) -> ActiveModel | None:
        """The active model whose table is ``model_version``'s (None: not active, so not kept fresh)."""
        return next((m for m in self.models if m.model_version == model_version), None)

    def live_model(self) -> ActiveModel:
        """The active model whose table is live; before the first promotion, the first one listed."""
        live = self.registry.state().live
        return (self.active_model(live) if live else None) or self.models[0]

    @property
    def chunk_profiles(self) -> dict[str, ActiveModel]:
        """Each chunking profile, and the first model that uses it (whose tokenizer cuts its chunks)."""
        profiles: dict[str, ActiveModel] = {}
        for model in self.models:
            profiles.setdefault(model.profile, model)
        return profiles

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

    def embedder_for(self, config: ModelConfig) -> Embedder:
        """A model with its own settings and this index's batch size, threads and credentials."""
        s = self.settings
        return make_embedder(
            config.spec,
            dimensions=config.dimensions,
            batch_size=s.batch_size,
            batch_tokens=s.batch_tokens,
            tokens_per_minute=config.tokens_per_minute,
            threads=s.model_threads,
            api_key=self.credentials.api_key,
            base_url=self.credentials.base_url,
        )

    def query_embedder(self, info: TableInfo) -> Embedder:
        """The model that built ``info``'s table, to embed queries for it."""
        return table_embedder(info, api_key=self.credentials.api_key, base_url=self.credentials.base_url)

    def validate(self) -> None:
        """Fail fast, with one message, on what the settings alone cannot tell: a missing key, oversized
        chunks, a production profile without the instance database that holds the change index."""
        if self.settings.profile == "production" and not self.settings.change_index:
            instance_database()  # the change index's home: its variables must be set
        for model in self.models:
            model.embedder.check_credentials()
            if self.settings.chunk_tokens > model.embedder.max_input_tokens:
                raise ConfigError(
                    f"EMBEDDING_ASSETS_CHUNK_TOKENS={self.settings.chunk_tokens} is over what "
                    f"{model.config.spec} reads ({model.embedder.max_input_tokens} tokens)"
                )

    def expire_before(self) -> datetime | None:
        """Vectors embedded before this moment have expired (None: vectors never expire)."""
        return expire_before(self.settings.ttl_days)

    def golden(self) -> list[GoldenQuery]:
        return load_golden(self.settings.golden_path)

    def live_model_version(self) -> str:
        """The registry's live version (active or not); before any promotion, the first model's."""
        return self.registry.state().live or self.models[0].model_version

    @cached_property
    def changes(self) -> ChangeIndex:
        """What the source held when last read, per key, and each shard's fingerprint."""
        return ChangeIndex(self._change_database(), self.shard_count)

    def _change_database(self) -> IndexDatabase:
        """The change index's home: EMBEDDING_ASSETS_CHANGE_INDEX, else the production instance's
        PostgreSQL (every run worker reaches it), else a SQLite file in staging (one host). In PostgreSQL
        each index has its own schema, named by what it indexes, so indexes never share one."""
        s = self.settings
        if s.change_index:
            dsn, password = s.change_index, None
        elif s.profile == "production":
            dsn, password = instance_database()
        else:
            return SqliteDatabase(self.staging.change_index())
        identity = f"{s.source_location}|{s.lancedb_uri}|{s.shards}"
        return PostgresDatabase(dsn, "change_index_" + hashlib.sha256(identity.encode()).hexdigest()[:16], password)

    def sync(self, *, full: bool = False, drain: bool = True) -> SyncReport:
        """Record the source's changes in the change index (a listing diff when ``full``) in bounded
        batches, until none is waiting (or after one batch, without ``drain``); the report adds them up."""
        self.source.prepare()
        report = self.changes.sync(self.source, limit=SYNC_BATCH_KEYS, full=full)
        while drain and report.more:
            batch = self.changes.sync(self.source, limit=SYNC_BATCH_KEYS)
            report = dataclasses.replace(
                batch,
                keys_read=report.keys_read + batch.keys_read,
                keys_deleted=report.keys_deleted + batch.keys_deleted,
                changed_shards=sorted({*report.changed_shards, *batch.changed_shards}),
                listed=report.listed or batch.listed,
                seconds=report.seconds + batch.seconds,
            )
        return report

    def stale_shards(self, model_version: str) -> list[str]:
        """The shards a refresh must run now for ``model_version``'s table: its rows do not come from
        exactly the documents the change index holds, or hold expired vectors. Sync first for an answer
        about the source as it is now."""
        fingerprints = {shard: summary.fingerprint for shard, summary in self.changes.summaries().items()}
        return stale_shards(fingerprints, self.store, model_version, self.expire_before())

    def documents(self, shard: str) -> Iterator[Item]:
        """The shard's documents and skips now, in the change index's order, each read from the source."""
        return (item for item in self.listing(shard, None) if not isinstance(item, Kept))

    def listing(self, shard: str, staged: pa.Table | None) -> Iterator[Item | Kept]:
        """The shard's documents and skips now, in the change index's order. Its keys come from the
        index, so nothing else is listed. Documents whose ``staged`` copy (doc_id and doc_hash of the
        caller's file, ``ShardWork.staged_keys``) already has the listed hash come as runs of ``Kept``,
        found column-wise; the others are read from the source (a key whole, if any of its documents is)."""
        items = self.changes.shard_items(shard)
        if not items:
            return
        keys, positions, doc_ids, doc_hashes, skips = zip(*items, strict=True)
        ids, hashes = pa.array(doc_ids, pa.string()), pa.array(doc_hashes, pa.string())
        listed = pa.table([ids, hashes], ["doc_id", "doc_hash"])
        skipped = np.array([skip is not None for skip in skips])
        at = (
            None
            if staged is None
            else pc.index_in(document_keys(listed), value_set=document_keys(staged)).combine_chunks()
        )
        held = (
            np.zeros(len(items), dtype=bool) if at is None else ~skipped & at.is_valid().to_numpy(zero_copy_only=False)
        )
        stale = sorted({keys[i] for i in np.flatnonzero(~held & ~skipped)})
        if stale:  # a key is read whole: its documents come from the read, not the staged copy
            held &= ~pc.is_in(pa.array(keys, pa.string()), value_set=pa.array(stale, pa.string())).to_numpy(
                zero_copy_only=False
            )
        fresh = dict(self.source.read_many(stale))

        def kept(start: int, stop: int) -> Kept:
            assert at is not None  # held documents have a staged row
            return Kept(ids[start:stop], hashes[start:stop], at[start:stop])

        start = 0
        for i in np.flatnonzero(~held).tolist():
            if i > start:
                yield kept(start, i)
            start = i + 1
            key, position, doc_id, skip = keys[i], positions[i], doc_ids[i], skips[i]
            if skip is not None:
                yield Skip(doc_id, skip)
            elif key not in fresh:
                yield Skip(doc_id, "vanished from the staged documents")
            else:  # what the key holds at that position now (None: gone since the sync, which the next records)
                now = fresh[key]
                item = _at(now.items if now else [], position, doc_id)
                if item is not None:
                    yield item
        if start < len(items):
            yield kept(start, len(items))

    def shard_work(self, shard: str, model: ActiveModel | None = None) -> ShardWork:
        """The unit of work for ``shard`` and ``model`` (the first listed by default: the raw documents
        are every model's) in one step (a fresh one per step: it caches what it reads)."""
        return ShardWork(
            shard,
            shard_count=self.shard_count,
            staging=self.staging,
            store=self.store,
            embedder=(model or self.models[0]).embedder,
            chunking=self.chunking,
            expire_before=self.expire_before(),
            index_id=self.index_id,
        )


def _at(items: list[Item], position: int, doc_id: str) -> Item | None:
    """The item ``doc_id`` of a key's items: at ``position`` when the key still has that layout, else its
    first document of that id (the key changed since the sync)."""
    if position < len(items) and items[position].doc_id == doc_id:
        return items[position]
    return next((item for item in items if item.doc_id == doc_id and isinstance(item, Document)), None)
