"""The ``embedding-assets`` command: search and inspect the index without opening the UI.

Materializing and backfilling use Dagster's own CLI (see the README); this covers what it lacks.
"""

import argparse
import os
import sys
import textwrap

from embedding_assets.core.embedders import Embedder, make_embedder
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_keys
from embedding_assets.core.staging import Staging
from embedding_assets.core.store import VectorStore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embedding-assets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    search = commands.add_parser("search", help="semantic search over the table of the configured model")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5, help="number of hits (default 5)")
    commands.add_parser("status", help="rows per shard and the model version of the table")
    shards = commands.add_parser("shards", help="list the shard (partition) keys")
    shards.add_argument("--range", action="store_true", help="print first...last, for --partition-range")
    export = commands.add_parser("export-demo-corpus", help="write pydoc_data topics as .txt files")
    export.add_argument("folder", nargs="?", help="target folder (default: EMBEDDING_ASSETS_SOURCE_DIR)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        return {"search": _search, "status": _status, "shards": _shards,
                "export-demo-corpus": _export}[args.command](settings, args)
    except (ConfigError, LookupError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _embedder(settings: Settings) -> Embedder:
    return make_embedder(settings.model, dimensions=settings.dimensions, batch_size=settings.batch_size,
                         api_key=os.environ.get("OPENAI_API_KEY"), base_url=os.environ.get("OPENAI_BASE_URL"))


def _search(settings: Settings, args: argparse.Namespace) -> int:
    embedder = _embedder(settings)
    hits = VectorStore(settings.lancedb_uri).search(embedder.model_version, embedder.embed([args.query])[0], args.k)
    print(f"top {hits.num_rows} for {args.query!r} ({embedder.model_version}):")
    for rank, hit in enumerate(hits.to_pylist(), start=1):
        excerpt = textwrap.shorten(" ".join(hit["text"].split()), width=100, placeholder=" ...")
        print(f"{rank:>2}. {hit['score']:.3f}  {hit['doc_id']}  [{hit['chunk_id']}]\n      {excerpt}")
    return 0


def _status(settings: Settings, args: argparse.Namespace) -> int:
    embedder = _embedder(settings)
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
