"""Commands about model versions: eval, promote, rollback, drop, and the cost estimate."""

import argparse
from collections.abc import Mapping
from typing import Any

from embedding_assets.cli.output import EXIT_OK, emit
from embedding_assets.cli.progress import Display
from embedding_assets.core.cost import estimate as estimate_cost
from embedding_assets.core.evaluation import comparison_table, load_golden
from embedding_assets.core.index import Index
from embedding_assets.core.migration import check_promotion, evaluate_table


def evaluate(index: Index, args: argparse.Namespace) -> int:
    store, golden_path = index.store, args.golden or index.settings.golden_path
    golden = load_golden(golden_path)
    live = index.live_model_version()
    dropped = index.registry.state().dropped
    versions = args.model_version or [v for v in dict.fromkeys([live, *store.model_versions()]) if v not in dropped]
    reports = [evaluate_table(store, v, golden, index.query_embedder) for v in versions]
    tables = [
        {"model_version": r.model_version, "role": "live" if r.model_version == live else "candidate"}
        | {"queries": r.queries, "metrics": {name: round(value, 6) for name, value in r.metrics.items()}}
        for r in reports
    ]
    payload = {"golden": str(golden_path), "queries": len(golden), "live_model": live, "tables": tables}
    lines = [f"{len(golden)} golden queries ({golden_path})", comparison_table(reports, live)]
    return emit(args, EXIT_OK, payload, lines)


def promote(index: Index, args: argparse.Namespace) -> int:
    golden = load_golden(args.golden or index.settings.golden_path)
    margin = index.settings.eval_margin
    index.sync()
    stale = index.stale_shards(args.model_version)
    check = check_promotion(index.store, stale, args.model_version, golden, margin, index.query_embedder)
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
            f"refused by the eval gate (EMBEDDING_ASSETS_EVAL_MARGIN={margin}):\n  "
            + "\n  ".join(check.refusals)
            + "\nuse --force to promote anyway"
        )
        return 1
    index.registry.promote(check.candidate, "forced past the eval gate" if check.refusals else "")
    print(f"{check.candidate} is live" + (f" (was {check.live})" if check.live else ""))
    return 0


def rollback(index: Index, args: argparse.Namespace) -> int:
    registry = index.registry
    before = registry.state().live
    print(f"{registry.rollback()} is live again (was {before})")
    return 0


def drop(index: Index, args: argparse.Namespace) -> int:
    store, registry = index.store, index.registry
    registry.check_droppable(args.model_version)
    if store.info(args.model_version) is None:
        raise LookupError(f"no table for {args.model_version}")
    store.drop(args.model_version)
    registry.record_drop(args.model_version)
    print(f"dropped the table of {args.model_version}")
    return 0


def estimate(index: Index, args: argparse.Namespace) -> int:
    settings = index.settings
    embedder = index.embedder_for(args.model, args.dimensions) if args.model else index.embedder
    store = index.store if args.stale_only else None
    index.sync()
    shards = index.stale_shards(embedder.model_version) if args.stale_only else None
    price = settings.price_per_mtok if embedder.spec == settings.model else None
    total = len(shards) if shards is not None else index.shard_count
    shown = {"chunks": "chunks", "tokens": "tokens"}
    with Display("estimate", total, "shards", shown) as display, display.following(_on_estimate):
        result = estimate_cost(index.documents, index.shard_count, index.chunking, embedder, store, shards, price)
    scope = f"{result.shards} stale shard(s), new text only" if store else f"full re-embed, {result.shards} shards"
    line = (
        f"{result.model_version} ({scope}): {result.documents:,} documents, {result.chunks:,} chunks, "
        f"{result.tokens:,} tokens, ${result.cost_usd:.4f} at ${result.price_per_mtok}/1M tokens"
    )
    payload = {
        "model_version": result.model_version,
        "scope": "stale" if store else "full",
        "shards": result.shards,
        "documents": result.documents,
        "chunks": result.chunks,
        "tokens": result.tokens,
        "price_per_mtok": result.price_per_mtok,
        "cost_usd": result.cost_usd,
    }
    return emit(args, EXIT_OK, payload, [line])


def _on_estimate(display: Display, step: str, item: str, figures: Mapping[str, Any]) -> None:
    if step == "estimate":
        display.advance(1, item, chunks=int(figures.get("chunks", 0)), tokens=int(figures.get("tokens", 0)))
