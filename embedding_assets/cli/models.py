"""Commands about model versions: eval, promote, rollback, drop, and the cost estimate."""

import argparse

from embedding_assets.cli.index import query_embedder
from embedding_assets.core.cost import estimate as estimate_cost
from embedding_assets.core.embedders import make_embedder
from embedding_assets.core.evaluation import comparison_table, load_golden
from embedding_assets.core.migration import check_promotion, evaluate_table, live_model_version
from embedding_assets.core.reconcile import stale_shards
from embedding_assets.core.registry import Registry
from embedding_assets.core.settings import Settings
from embedding_assets.core.store import VectorStore


def evaluate(settings: Settings, args: argparse.Namespace) -> int:
    store = VectorStore(settings.lancedb_uri)
    golden = load_golden(args.golden or settings.golden_path)
    live = live_model_version(store, settings.embedder().model_version)
    dropped = Registry(store.db).state().dropped
    versions = args.model_version or [v for v in dict.fromkeys([live, *store.model_versions()]) if v not in dropped]
    reports = [evaluate_table(store, v, golden, query_embedder) for v in versions]
    print(f"{len(golden)} golden queries ({args.golden or settings.golden_path})")
    print(comparison_table(reports, live))
    return 0


def promote(settings: Settings, args: argparse.Namespace) -> int:
    store = VectorStore(settings.lancedb_uri)
    golden = load_golden(args.golden or settings.golden_path)
    check = check_promotion(store, settings.scan(), args.model_version, golden, settings.eval_margin, query_embedder)
    if check.comparison():
        print(check.comparison())
    if check.stale:
        print(
            f"refused: {len(check.stale)} shard(s) are missing or stale for {check.candidate}: "
            f"{', '.join(check.stale[:20])}; materialize them first"
        )
        return 1
    if check.refusals and not args.force:
        print(
            "refused by the eval gate (EMBEDDING_ASSETS_EVAL_MARGIN="
            f"{settings.eval_margin}):\n  " + "\n  ".join(check.refusals) + "\nuse --force to promote anyway"
        )
        return 1
    Registry(store.db).promote(check.candidate, "forced past the eval gate" if check.refusals else "")
    print(f"{check.candidate} is live" + (f" (was {check.live})" if check.live else ""))
    return 0


def rollback(settings: Settings, args: argparse.Namespace) -> int:
    registry = Registry(VectorStore(settings.lancedb_uri).db)
    before = registry.state().live
    print(f"{registry.rollback()} is live again (was {before})")
    return 0


def drop(settings: Settings, args: argparse.Namespace) -> int:
    store = VectorStore(settings.lancedb_uri)
    registry = Registry(store.db)
    registry.check_droppable(args.model_version)
    if store.info(args.model_version) is None:
        raise LookupError(f"no table for {args.model_version}")
    store.drop(args.model_version)
    registry.record_drop(args.model_version)
    print(f"dropped the table of {args.model_version}")
    return 0


def estimate(settings: Settings, args: argparse.Namespace) -> int:
    spec = args.model or settings.model
    embedder = make_embedder(spec, dimensions=args.dimensions if args.model else settings.dimensions)
    store = VectorStore(settings.lancedb_uri) if args.stale_only else None
    shards = stale_shards(settings.scan(), store, embedder.model_version) if store else None
    result = estimate_cost(
        settings.source_folder(),
        settings.shards,
        settings.chunking,
        embedder,
        store,
        shards,
        settings.price_per_mtok if spec == settings.model else None,
    )
    scope = f"{result.shards} stale shard(s), new text only" if store else f"full re-embed, {result.shards} shards"
    print(
        f"{result.model_version} ({scope}): {result.documents:,} documents, {result.chunks:,} chunks, "
        f"{result.tokens:,} tokens, ${result.cost_usd:.4f} at ${result.price_per_mtok}/1M tokens"
    )
    return 0
