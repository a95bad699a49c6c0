"""The ``embedding-assets`` command: search and inspect the index without opening the UI.

Materializing and backfilling use Dagster's own CLI (see the README); this covers what it lacks.
"""

import argparse
import os
import sys
import textwrap

from embedding_assets.core.errors import ConfigError
from embedding_assets.core.reconcile import diff_shard, expected_chunks
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_keys
from embedding_assets.core.sources import SourceFolder
from embedding_assets.core.staging import Staging
from embedding_assets.core.store import VectorStore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embedding-assets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    search = commands.add_parser("search", help="semantic search over the table of the configured model")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5, help="number of hits (default 5)")
    commands.add_parser("status", help="rows per shard and the model version of the table")
    commands.add_parser("refresh", help="scan the source and materialize only the stale shards, now")
    verify = commands.add_parser("verify", help="compare each shard's rows with the source; exit 1 if any differs")
    verify.add_argument("-v", "--verbose", action="store_true", help="also list the shards that match")
    verify.add_argument("--repair", action="store_true", help="then re-materialize the shards that differ")
    shards = commands.add_parser("shards", help="list the shard (partition) keys")
    shards.add_argument("--range", action="store_true", help="print first...last, for --partition-range")
    export = commands.add_parser("export-demo-corpus", help="write pydoc_data topics as .txt files")
    export.add_argument("folder", nargs="?", help="target folder (default: EMBEDDING_ASSETS_SOURCE_DIR)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        return {"search": _search, "status": _status, "shards": _shards, "refresh": _refresh, "verify": _verify,
                "export-demo-corpus": _export}[args.command](settings, args)
    except (ConfigError, LookupError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _search(settings: Settings, args: argparse.Namespace) -> int:
    embedder = settings.embedder()
    hits = VectorStore(settings.lancedb_uri).search(embedder.model_version, embedder.embed([args.query])[0], args.k)
    print(f"top {hits.num_rows} for {args.query!r} ({embedder.model_version}):")
    for rank, hit in enumerate(hits.to_pylist(), start=1):
        excerpt = textwrap.shorten(" ".join(hit["text"].split()), width=100, placeholder=" ...")
        print(f"{rank:>2}. {hit['score']:.3f}  {hit['doc_id']}  [{hit['chunk_id']}]\n      {excerpt}")
    return 0


def _status(settings: Settings, args: argparse.Namespace) -> int:
    embedder = settings.embedder()
    store = VectorStore(settings.lancedb_uri)
    info = store.info(embedder.model_version)
    if info is None:
        print(f"no table for {embedder.model_version} in {settings.lancedb_uri} yet")
        return 1
    print(f"table {info.name}: {info.rows} rows, version {info.version}, {info.dimensions} dimensions")
    print(f"model version {info.model_version}, {info.shard_count} shards")
    counts = store.shard_counts(embedder.model_version)
    staging = Staging(settings.staging_dir)
    print(f"{'shard':<8}{'rows':>8}{'chunks staged':>15}")
    for shard in shard_keys(info.shard_count):
        path = staging.path("chunks", shard)
        staged = str(staging.read(path).num_rows) if path.exists() else "-"
        print(f"{shard:<8}{counts.get(shard, 0):>8}{staged:>15}")
    return 0


def _refresh(settings: Settings, args: argparse.Namespace, shards: list[str] | None = None) -> int:
    import dagster as dg

    from embedding_assets.refresh import refresh

    if not os.environ.get("DAGSTER_HOME"):
        raise ConfigError("set DAGSTER_HOME so refresh runs land in the instance the UI reads (the Makefile sets it)")
    with dg.DagsterInstance.get() as instance:
        report = refresh(settings, instance, shards=shards, progress=print)
    for shard, figures in sorted(report.per_shard.items()):
        print(f"  {shard}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    print(f"refreshed {len(report.stale)} shard(s) in {len(report.runs)} run(s): "
          f"{report.total('chunks_embedded')} chunks embedded, {report.total('chunks_reused')} reused, "
          f"{report.total('chunks_deleted')} deleted, {report.total('tokens_embedded')} tokens")
    return 0


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    embedder, store = settings.embedder(), VectorStore(settings.lancedb_uri)
    folder = SourceFolder(settings.source_dir, id_field=settings.id_field, text_field=settings.text_field)
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
        _refresh(settings, args, shards=mismatched)
        return _verify(settings, argparse.Namespace(verbose=False, repair=False))
    return 1 if mismatched else 0


def _shards(settings: Settings, args: argparse.Namespace) -> int:
    keys = shard_keys(settings.shards)
    print(f"{keys[0]}...{keys[-1]}" if args.range else "\n".join(keys))
    return 0


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from embedding_assets.demo_corpus import export_pydoc_topics

    folder = args.folder or settings.source_dir
    print(f"exported {export_pydoc_topics(folder)} pydoc topics to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
