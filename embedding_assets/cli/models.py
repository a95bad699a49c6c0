"""Commands about model versions: eval, promote, rollback, drop, and the cost estimate."""

import argparse
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from embedding_assets.cli.output import EXIT_OK, emit
from embedding_assets.cli.progress import Display
from embedding_assets.core.cost import Churn
from embedding_assets.core.cost import estimate as estimate_cost
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.evaluation import comparison_table, load_golden
from embedding_assets.core.index import ActiveModel, Index
from embedding_assets.core.migration import check_promotion, evaluate_table
from embedding_assets.core.model_set import ModelConfig

if TYPE_CHECKING:
    import dagster as dg


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
    """Make an active model's table live: both it and the live table complete and fresh (so the eval
    compares like with like), then the eval gate, then the switch (one registry row)."""
    golden = load_golden(args.golden or index.settings.golden_path)
    margin = index.settings.eval_margin
    candidate = _active(index, args.model_version, "promote")
    index.sync()
    live = index.registry.state().live
    stale = {v: index.stale_shards(v) for v in dict.fromkeys([candidate.model_version, live]) if v is not None}
    check = check_promotion(
        index.store, stale[candidate.model_version], candidate.model_version, golden, margin, index.query_embedder
    )
    if check.comparison():
        print(check.comparison())
    refusals = [
        f"{len(shards)} shard(s) are missing or stale for {version}: {', '.join(shards[:20])}"
        for version, shards in stale.items()
        if shards
    ]
    if refusals:
        print("refused: " + "; ".join(refusals) + "; refresh them first (embedding-assets refresh)")
        return 1
    if check.refusals and not args.force:
        print(
            f"refused by the eval gate (EMBEDDING_ASSETS_EVAL_MARGIN={margin}):\n  "
            + "\n  ".join(check.refusals)
            + "\nuse --force to promote anyway"
        )
        return 1
    index.registry.promote(check.candidate, "forced past the eval gate" if check.refusals else "")
    print(f"{check.candidate} is live" + (f" (was {check.live}, now a standby kept fresh)" if check.live else ""))
    return 0


def rollback(index: Index, args: argparse.Namespace) -> int:
    """Make the previous live table live again, only if it is still an active model's and fresh."""
    registry = index.registry
    state = registry.state()
    if state.previous is None:
        raise ConfigError("nothing to roll back to: no earlier live table in the registry")
    previous = _active(index, state.previous, "roll back to")
    index.sync()
    stale = index.stale_shards(previous.model_version)
    if stale:
        print(
            f"refused: {len(stale)} shard(s) of {previous.model_version} are stale: {', '.join(stale[:20])}; "
            "refresh them first (embedding-assets refresh)"
        )
        return 1
    print(f"{registry.rollback()} is live again (was {state.live})")
    return 0


def _active(index: Index, model: str, action: str) -> ActiveModel:
    """The active model ``model`` names (its model version or its slug); refuses one that is not active."""
    found = index.active_model(model) or next((m for m in index.models if m.slug == model), None)
    if found is None:
        active = ", ".join(f"{m.slug} ({m.model_version})" for m in index.models)
        raise ConfigError(
            f"cannot {action} {model}: it is not an active model, so its table is not kept fresh; "
            f"add it to EMBEDDING_ASSETS_MODELS and let its backfill finish (active: {active})"
        )
    return found


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
    active = index.live_model() if not args.model else None
    embedder = active.embedder if active else index.embedder_for(ModelConfig(args.model, args.dimensions))
    store = index.store if args.stale_only else None
    index.sync()
    shards = index.stale_shards(embedder.model_version) if args.stale_only else None
    listed = active or index.active_model(embedder.model_version)
    price = listed.config.price_per_mtok if listed else None
    total = len(shards) if shards is not None else index.shard_count
    shown = {"chunks": "chunks", "tokens": "tokens"}
    with Display("estimate", total, "shards", shown) as display, display.following(_on_estimate):
        result = estimate_cost(index.documents, index.shard_count, index.chunking, embedder, store, shards, price)
    scope = f"{result.shards} stale shard(s), new text only" if store else f"full re-embed, {result.shards} shards"
    line = (
        f"{result.model_version} ({scope}): {result.documents:,} documents, {result.chunks:,} chunks, "
        f"{result.tokens:,} tokens, ${result.cost_usd:.4f} at ${result.price_per_mtok}/1M tokens"
    )
    upkeep = _upkeep(index.live_model(), args.churn_days, result.price_per_mtok)
    payload = {
        "model_version": result.model_version,
        "scope": "stale" if store else "full",
        "shards": result.shards,
        "documents": result.documents,
        "chunks": result.chunks,
        "tokens": result.tokens,
        "price_per_mtok": result.price_per_mtok,
        "cost_usd": result.cost_usd,
        "upkeep": upkeep,
    }
    return emit(args, EXIT_OK, payload, [line, f"upkeep beside the live table: {upkeep['note']}"])


def _upkeep(model: ActiveModel, window_days: float, price: float) -> dict[str, Any]:
    """What keeping a table fresh beside the live one costs a day at ``price``: the live model's churn
    over the last ``window_days``, with a note saying where it comes from (figures None where unknown)."""
    import dagster as dg

    key, live = dg.AssetKey([model.slug, "embeddings"]), model.model_version
    measured = _churn(key, live, window_days)
    churn = measured or Churn(window_days, 0.0, 0, 0)
    per_day, cost_per_day = churn.tokens_per_day, churn.cost_usd_per_day(price)
    if measured is None:
        note = "unknown: DAGSTER_HOME is not set, so there is no Dagster instance to measure the churn in"
    elif per_day is None or cost_per_day is None:
        note = (
            f"unknown: {live} has no history yet (no materialization of {key.to_user_string()}), so there is "
            "no churn to measure; estimate again after some days of refreshes"
        )
    else:
        span = f"the last {churn.days:.2f} days" if churn.days >= 1 else f"the last {churn.days * 24:.2f} hours"
        if churn.days < window_days:
            span += f" (all the history there is; the window is {window_days:g} days)"
        note = (
            f"{per_day:,.0f} tokens/day, ${cost_per_day:.4f}/day at ${price}/1M tokens: the churn {live} "
            f"embedded over {span}, {churn.tokens:,} tokens in {churn.refreshes} shard refresh(es) of "
            f"{key.to_user_string()}, its first embedding of each shard left out (in its own tokens)"
        )
    return {
        "live_model": live,
        "asset": key.to_user_string(),
        "window_days": window_days,
        "days": churn.days,
        "refreshes": churn.refreshes,
        "tokens": churn.tokens,
        "tokens_per_day": None if per_day is None else round(per_day, 3),
        "cost_usd_per_day": cost_per_day,
        "note": note,
    }


def _churn(key: "dg.AssetKey", live: str, window_days: float) -> Churn | None:
    """The live model's churn in the instance DAGSTER_HOME names (None: it names none)."""
    if not os.environ.get("DAGSTER_HOME"):
        return None
    import dagster as dg

    from embedding_assets.cli.churn import churn

    with dg.DagsterInstance.get() as instance:
        return churn(instance, key, live, window_days=window_days)


def _on_estimate(display: Display, step: str, item: str, figures: Mapping[str, Any]) -> None:
    if step == "estimate":
        display.advance(1, item, chunks=int(figures.get("chunks", 0)), tokens=int(figures.get("tokens", 0)))
