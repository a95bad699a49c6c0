"""Commands about the index itself: search, status, refresh, verify, shards, the demo corpus."""

import argparse
import os
import textwrap

from embedding_assets.core import profiles
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.index import Index
from embedding_assets.core.reconcile import STORED_COLUMNS, diff_shard, expected_chunks
from embedding_assets.core.shards import shard_keys

MAX_QUARANTINE_LISTED = 50


def search(index: Index, args: argparse.Namespace) -> int:
    store, live = index.store, index.live_model_version()
    info = store.info(live)
    if info is None:
        raise LookupError(f"no table for {live} in {store.uri}; materialize the pipeline first")
    hits = store.search(live, index.query_embedder(info).embed([args.query])[0], args.k)
    print(f"top {hits.num_rows} for {args.query!r}, answered by the live table ({live}):")
    for rank, hit in enumerate(hits.to_pylist(), start=1):
        excerpt = textwrap.shorten(" ".join(hit["text"].split()), width=100, placeholder=" ...")
        print(f"{rank:>2}. {hit['score']:.3f}  {hit['doc_id']}  [{hit['chunk_id']}]\n      {excerpt}")
    return 0


def status(index: Index, args: argparse.Namespace) -> int:
    store, configured = index.store, index.embedder.model_version
    registry = index.registry.state()
    live = registry.live or configured
    versions = store.model_versions()
    if not versions:
        print(f"no tables in {store.uri} yet; materialize the pipeline")
        return 1
    print(f"{'model version':<52}{'role':<11}{'rows':>8}{'version':>9}  promoted")
    for version in versions:
        info = store.info(version)
        if info is None:  # dropped since it was listed
            continue
        role = "live" if version == live else "previous" if version in registry.history else "candidate"
        promoted = registry.promoted_at.get(version)
        when = f"{promoted:%Y-%m-%d %H:%M} UTC" if promoted else "-"
        print(f"{version:<52}{role:<11}{info.rows:>8}{info.version:>9}  {when}")
    print(f"configured model: {configured}")
    index.sync()
    quarantined = index.changes.skips()
    print(f"quarantined: {len(quarantined)} item(s) of the source folder were not indexed")
    for skip in sorted(quarantined, key=lambda s: s.doc_id)[:MAX_QUARANTINE_LISTED]:
        print(f"  {skip.doc_id!r}: {skip.reason}")
    counts = store.shard_counts(live)
    print(f"\n{'shard':<8}{'live rows':>10}{'chunks staged':>15}")
    for shard in shard_keys(index.shard_count):
        staged = index.staging.row_count(index.shard_work(shard).chunks_path)
        print(f"{shard:<8}{counts.get(shard, 0):>10}{'-' if staged is None else staged:>15}")
    return 0


def refresh(index: Index, args: argparse.Namespace, shards: list[str] | None = None) -> int:
    import dagster as dg

    from embedding_assets.refresh import refresh as run_refresh

    if not os.environ.get("DAGSTER_HOME"):
        raise ConfigError("set DAGSTER_HOME so refresh runs land in the instance the UI reads (the Makefile sets it)")
    with dg.DagsterInstance.get() as instance:
        report = run_refresh(index, instance, shards=shards, progress=print)
    for shard, figures in sorted(report.per_shard.items()):
        print(f"  {shard}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    print(
        f"refreshed {len(report.stale)} shard(s) in {len(report.runs)} run(s): "
        f"{report.total('chunks_embedded')} chunks embedded, {report.total('chunks_reused')} reused, "
        f"{report.total('chunks_deleted')} deleted, {report.total('tokens_embedded')} tokens"
    )
    return 0


def resync(index: Index, args: argparse.Namespace) -> int:
    """A full listing diffed against the change index (the feed's slot or queue is set up first, so
    nothing written during the listing is lost); the next refresh or sensor tick runs what changed."""
    report = index.sync(full=True)
    print(
        f"{index.source.name}: {index.changes.keys()} keys; {report.keys_read} read, {report.keys_deleted} deleted, "
        f"{len(report.changed_shards)} shard(s) changed, in {report.seconds:.2f} s"
    )
    return 0


def verify(index: Index, args: argparse.Namespace) -> int:
    model_version, shard_count = index.embedder.model_version, index.shard_count
    index.sync(full=True)  # the truth is the source as a full listing finds it now
    mismatched = []
    for shard in shard_keys(shard_count):
        expected = expected_chunks(index.documents(shard), index.chunking, index.embedder)
        diff = diff_shard(shard, expected, index.store.shard_rows(model_version, shard, STORED_COLUMNS), model_version)
        if not diff.matches:
            mismatched.append(shard)
        if args.verbose or not diff.matches:
            print(diff.describe())
    print(f"{shard_count - len(mismatched)} of {shard_count} shards match the source ({model_version})")
    if mismatched and args.repair:
        refresh(index, args, shards=mismatched)
        return verify(index, argparse.Namespace(verbose=False, repair=False))
    return 1 if mismatched else 0


def shards(index: Index, args: argparse.Namespace) -> int:
    keys = shard_keys(index.shard_count)
    print(f"{keys[0]}...{keys[-1]}" if args.range else "\n".join(keys))
    return 0


def instance_config(index: Index, args: argparse.Namespace) -> int:
    """The profile's dagster.yaml, which the Makefile copies into DAGSTER_HOME."""
    print(profiles.instance_config(index.settings.profile))
    return 0


def export(index: Index, args: argparse.Namespace) -> int:
    from embedding_assets.demo_corpus import export_pydoc_topics

    folder = args.folder or index.settings.source_dir
    print(f"exported {export_pydoc_topics(folder)} pydoc topics to {folder}")
    return 0
