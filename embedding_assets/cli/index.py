"""Commands about the index itself: search, status, refresh, verify, shards, the demo corpus."""

import argparse
import os
import textwrap

from embedding_assets.core import profiles
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.migration import live_model_version, table_embedder
from embedding_assets.core.reconcile import diff_shard, expected_chunks
from embedding_assets.core.registry import Registry
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_keys
from embedding_assets.core.staging import Staging
from embedding_assets.core.store import TableInfo, VectorStore

MAX_QUARANTINE_LISTED = 50


def search(settings: Settings, args: argparse.Namespace) -> int:
    store = VectorStore(settings.lancedb_uri)
    live = live_model_version(store, settings.embedder().model_version)
    info = store.info(live)
    if info is None:
        raise LookupError(f"no table for {live} in {settings.lancedb_uri}; materialize the pipeline first")
    hits = store.search(live, query_embedder(info).embed([args.query])[0], args.k)
    print(f"top {hits.num_rows} for {args.query!r}, answered by the live table ({live}):")
    for rank, hit in enumerate(hits.to_pylist(), start=1):
        excerpt = textwrap.shorten(" ".join(hit["text"].split()), width=100, placeholder=" ...")
        print(f"{rank:>2}. {hit['score']:.3f}  {hit['doc_id']}  [{hit['chunk_id']}]\n      {excerpt}")
    return 0


def status(settings: Settings, args: argparse.Namespace) -> int:
    store = VectorStore(settings.lancedb_uri)
    configured = settings.embedder().model_version
    registry = Registry(store.db).state()
    live = registry.live or configured
    versions = store.model_versions()
    if not versions:
        print(f"no tables in {settings.lancedb_uri} yet; materialize the pipeline")
        return 1
    print(f"{'model version':<52}{'role':<11}{'rows':>8}{'version':>9}  promoted")
    for version in versions:
        info = store.info(version)
        role = "live" if version == live else "previous" if version in registry.history else "candidate"
        promoted = registry.promoted_at.get(version)
        when = f"{promoted:%Y-%m-%d %H:%M} UTC" if promoted else "-"
        print(f"{version:<52}{role:<11}{info.rows:>8}{info.version:>9}  {when}")
    print(f"configured model: {configured}")
    quarantined = [skip for shard in settings.scan().shards.values() for skip in shard.skipped]
    print(f"quarantined: {len(quarantined)} item(s) of the source folder were not indexed")
    for skip in sorted(quarantined, key=lambda s: s.doc_id)[:MAX_QUARANTINE_LISTED]:
        print(f"  {skip.doc_id!r}: {skip.reason}")
    counts, staging = store.shard_counts(live), Staging(settings.staging_dir)
    print(f"\n{'shard':<8}{'live rows':>10}{'chunks staged':>15}")
    for shard in shard_keys(settings.shards):
        staged = staging.row_count(staging.path("chunks", shard))
        print(f"{shard:<8}{counts.get(shard, 0):>10}{'-' if staged is None else staged:>15}")
    return 0


def refresh(settings: Settings, args: argparse.Namespace, shards: list[str] | None = None) -> int:
    import dagster as dg

    from embedding_assets.refresh import refresh as run_refresh

    if not os.environ.get("DAGSTER_HOME"):
        raise ConfigError("set DAGSTER_HOME so refresh runs land in the instance the UI reads (the Makefile sets it)")
    with dg.DagsterInstance.get() as instance:
        report = run_refresh(settings, instance, shards=shards, progress=print)
    for shard, figures in sorted(report.per_shard.items()):
        print(f"  {shard}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    print(
        f"refreshed {len(report.stale)} shard(s) in {len(report.runs)} run(s): "
        f"{report.total('chunks_embedded')} chunks embedded, {report.total('chunks_reused')} reused, "
        f"{report.total('chunks_deleted')} deleted, {report.total('tokens_embedded')} tokens"
    )
    return 0


def verify(settings: Settings, args: argparse.Namespace) -> int:
    embedder, store = settings.embedder(), VectorStore(settings.lancedb_uri)
    folder = settings.source_folder()
    mismatched = []
    for shard in shard_keys(settings.shards):
        expected = expected_chunks(folder, shard, settings.shards, settings.chunking, embedder)
        diff = diff_shard(shard, expected, store.shard_rows(embedder.model_version, shard), embedder.model_version)
        if not diff.matches:
            mismatched.append(shard)
        if args.verbose or not diff.matches:
            print(diff.describe())
    matching = settings.shards - len(mismatched)
    print(f"{matching} of {settings.shards} shards match the source ({embedder.model_version})")
    if mismatched and args.repair:
        refresh(settings, args, shards=mismatched)
        return verify(settings, argparse.Namespace(verbose=False, repair=False))
    return 1 if mismatched else 0


def shards(settings: Settings, args: argparse.Namespace) -> int:
    keys = shard_keys(settings.shards)
    print(f"{keys[0]}...{keys[-1]}" if args.range else "\n".join(keys))
    return 0


def instance_config(settings: Settings, args: argparse.Namespace) -> int:
    """The profile's dagster.yaml, which the Makefile copies into DAGSTER_HOME."""
    print(profiles.instance_config(settings.profile))
    return 0


def export(settings: Settings, args: argparse.Namespace) -> int:
    from embedding_assets.demo_corpus import export_pydoc_topics

    folder = args.folder or settings.source_dir
    print(f"exported {export_pydoc_topics(folder)} pydoc topics to {folder}")
    return 0


def query_embedder(info: TableInfo) -> Embedder:
    """The model that built a table, to embed queries for it (credentials from the environment)."""
    return table_embedder(info, api_key=os.environ.get("OPENAI_API_KEY"), base_url=os.environ.get("OPENAI_BASE_URL"))
