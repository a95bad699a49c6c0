"""Commands about the index itself: search, status, refresh, verify, shards, the demo corpus."""

import argparse
import os
import sys
import textwrap
import time
from collections.abc import Mapping
from typing import Any

from embedding_assets.cli.output import EXIT_DIFFERENCE, EXIT_OK, emit
from embedding_assets.cli.progress import Display
from embedding_assets.core import profiles
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.index import Index
from embedding_assets.core.reconcile import STORED_COLUMNS, ShardDiff, diff_shard, expected_chunks
from embedding_assets.core.shards import shard_keys

MAX_QUARANTINE_LISTED = 50
PIPELINE_STEPS = ("raw_documents", "chunks", "embeddings", "vector_table")  # what a refresh runs per shard
REFRESH_TOTALS = (
    "chunks_embedded",
    "chunks_reused",
    "chunks_inserted",
    "chunks_updated",
    "chunks_deleted",
    "tokens_embedded",
)
Outcome = tuple[int, dict[str, Any], list[str]]  # exit code, JSON payload, lines for people
# Dagster's console log at WARNING: the progress display and the summary say what happened, and every
# event is still in the instance (and the UI).
QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def search(index: Index, args: argparse.Namespace) -> int:
    store, live = index.store, index.live_model_version()
    info = store.info(live)
    if info is None:
        raise LookupError(f"no table for {live} in {store.uri}; materialize the pipeline first")
    found = store.search(live, index.query_embedder(info).embed([args.query])[0], args.k)
    meta = {k.decode(): v.decode() for k, v in (found.schema.metadata or {}).items()}
    used = meta.get("vector_index") or "exact scan"
    search_ms = float(meta.get("search_ms", "nan"))
    hits = found.to_pylist()
    lines = [f"top {len(hits)} for {args.query!r}, answered by the live table ({live}; {used}, {search_ms:.1f} ms):"]
    for rank, hit in enumerate(hits, start=1):
        excerpt = textwrap.shorten(" ".join(hit["text"].split()), width=100, placeholder=" ...")
        page = f"  p. {hit['page']}" if hit.get("page") is not None else ""
        lines.append(f"{rank:>2}. {hit['score']:.3f}  {hit['doc_id']}{page}  [{hit['chunk_id']}]\n      {excerpt}")
    results = [
        {
            "rank": rank,
            "score": round(float(hit["score"]), 6),
            "doc_id": hit["doc_id"],
            "chunk_id": hit["chunk_id"],
            "shard": hit["shard"],
            "page": hit.get("page"),
            "text": hit["text"],
        }
        for rank, hit in enumerate(hits, start=1)
    ]
    payload = {"query": args.query, "k": args.k, "model_version": live, "vector_index": meta.get("vector_index", "")}
    payload |= {"search_ms": search_ms, "hits": results}
    return emit(args, EXIT_OK, payload, lines)


def status(index: Index, args: argparse.Namespace) -> int:
    """Every table: its role (live, standby, candidate; retired once its model left the active list),
    rows and, for an active model, how many shards reflect the source now."""
    store, registry = index.store, index.registry.state()
    live = index.live_model_version()
    index.sync()
    active = {m.model_version: m for m in index.models}
    versions = list(dict.fromkeys([*active, *store.model_versions()]))
    lines = [f"{'model version':<52}{'role':<11}{'rows':>9}{'fresh shards':>14}{'version':>9}  promoted"]
    tables = []
    for version in versions:
        info = store.info(version)
        stale = index.stale_shards(version) if version in active else None
        role = _role(version, live, registry.history, version in active)
        promoted = registry.promoted_at.get(version)
        fresh = "-" if stale is None else f"{index.shard_count - len(stale)}/{index.shard_count}"
        when = f"{promoted:%Y-%m-%d %H:%M} UTC" if promoted else "-"
        rows = info.rows if info else 0
        lines.append(f"{version:<52}{role:<11}{rows:>9}{fresh:>14}{info.version if info else '-':>9}  {when}")
        tables.append(
            {
                "model_version": version,
                "slug": active[version].slug if version in active else None,
                "role": role,
                "active": version in active,
                "rows": rows,
                "table_version": info.version if info else None,
                "shards_fresh": None if stale is None else index.shard_count - len(stale),
                "stale_shards": stale,
                "promoted_at": promoted,
            }
        )
    payload: dict[str, Any] = {"live_model": live, "active_models": [m.config.entry for m in index.models]}
    payload["tables"] = tables
    quarantined = sorted(index.changes.skips(), key=lambda s: s.doc_id)
    lines.append(f"quarantined: {len(quarantined)} item(s) of the source were not indexed")
    lines += [f"  {skip.doc_id!r}: {skip.reason}" for skip in quarantined[:MAX_QUARANTINE_LISTED]]
    payload["quarantined_count"] = len(quarantined)
    payload["quarantined"] = [{"doc_id": s.doc_id, "reason": s.reason} for s in quarantined[:MAX_QUARANTINE_LISTED]]
    counts = store.shard_counts(live)
    lines.append(f"\n{'shard':<8}{'live rows':>10}{'chunks staged':>15}")
    payload["shards"] = []
    for shard in shard_keys(index.shard_count):
        staged = index.staging.row_count(index.shard_work(shard, active.get(live)).chunks_path)
        lines.append(f"{shard:<8}{counts.get(shard, 0):>10}{'-' if staged is None else staged:>15}")
        payload["shards"].append({"shard": shard, "live_rows": counts.get(shard, 0), "chunks_staged": staged})
    code = EXIT_OK if any(t["rows"] for t in tables) else EXIT_DIFFERENCE
    if code != EXIT_OK:
        lines.append(f"no rows in {store.uri} yet; materialize the pipeline")
    return emit(args, code, payload, lines)


def _role(version: str, live: str, history: list[str], active: bool) -> str:
    if version == live:
        return "live"
    if not active:
        return "retired"
    return "standby" if version in history else "candidate"


def refresh(index: Index, args: argparse.Namespace) -> int:
    code, payload, lines = _refresh(index, None, verbose=args.verbose)
    return emit(args, code, payload, lines)


def _refresh(index: Index, shards: list[str] | None, *, verbose: bool = False) -> Outcome:
    """Sync, then run the stale shards (or ``shards``) in this process, with progress on a terminal."""
    import dagster as dg

    from embedding_assets.refresh import refresh as run_refresh

    if not os.environ.get("DAGSTER_HOME"):
        raise ConfigError("set DAGSTER_HOME so refresh runs land in the instance the UI reads (the Makefile sets it)")
    started = time.monotonic()
    shown = {"shards": "shards done", "chunks_embedded": "chunks embedded"}
    with (
        dg.DagsterInstance.get() as instance,
        Display("refresh", None, "steps", shown) as display,
        display.following(_on_refresh),
    ):
        try:
            report = run_refresh(index, instance, shards=shards, progress=display.write, log_level="WARNING")
        except (dg.DagsterError, dg.Failure) as err:
            cause = getattr(err, "user_exception", None) or err
            if isinstance(cause, ConfigError):
                raise cause from None
            message = getattr(cause, "description", None) or str(cause)
            return EXIT_DIFFERENCE, {"error": message}, [f"refresh failed: {message}"]
    totals = {name: report.total(name) for name in REFRESH_TOTALS}
    per_shard = sorted(report.per_shard.items()) if verbose else []
    lines = [f"  {shard}: " + ", ".join(f"{k}={v}" for k, v in figures.items()) for shard, figures in per_shard]
    lines.append(
        f"refreshed {len(report.stale)} shard(s) in {len(report.runs)} run(s): "
        f"{totals['chunks_embedded']} chunks embedded, {totals['chunks_reused']} reused, "
        f"{totals['chunks_deleted']} deleted, {totals['tokens_embedded']} tokens"
    )
    sync = report.sync
    payload = {
        "source": index.source.name,
        "keys_read": sync.keys_read,
        "keys_deleted": sync.keys_deleted,
        "sync_seconds": round(sync.seconds, 3),
        "shards_total": index.shard_count,
        "stale_shards": report.stale,
        "runs": report.runs,
        "per_shard": report.per_shard,
        "totals": totals,
        "seconds": round(time.monotonic() - started, 3),
    }
    return EXIT_OK, payload, lines


def materialize(index: Index, args: argparse.Namespace) -> int:
    """One run of ``--select`` (every asset and check) over ``--partition-range`` (every shard), in
    this process, recorded under the UI's code location (``workspace.yaml``) so the UI re-executes it
    as its own; progress on a terminal, one summary line."""
    import dagster as dg

    from embedding_assets.location_run import materialize as run_in_location
    from embedding_assets.shard_runs import RANGE_START_TAG, range_tags, source_observation

    if not os.environ.get("DAGSTER_HOME"):
        raise ConfigError("set DAGSTER_HOME so the run lands in the instance the UI reads (the Makefile sets it)")
    keys = shard_keys(index.shard_count)
    first, _, last = (args.partition_range or f"{keys[0]}...{keys[-1]}").partition("...")
    if first not in keys or last not in keys or keys.index(first) > keys.index(last):
        raise ConfigError(
            f"--partition-range must be first...last of {keys[0]}...{keys[-1]}, got {args.partition_range!r}"
        )
    shards = keys.index(last) - keys.index(first) + 1
    started = time.monotonic()
    shown = {"shards": "shards done", "chunks_embedded": "chunks embedded"}
    steps = 1 + len(index.chunk_profiles) + 2 * len(index.models)  # raw, each profile's chunks, each model's two
    total = steps * shards if args.select == "*" else None
    with (
        dg.DagsterInstance.get() as instance,
        Display("materialize", total, "steps", shown) as display,
        display.following(_on_refresh),
    ):
        # What the source holds now, observed first: raw_documents records these versions as its inputs,
        # and the UI's source_documents shows them.
        index.sync()
        summaries = index.changes.summaries()
        for shard in keys[keys.index(first) : keys.index(last) + 1]:
            instance.report_runless_asset_event(source_observation(summaries[shard]))
        result = run_in_location(instance, args.select, partition_tags=range_tags(first, last), run_config=QUIET_RUN)
    seconds = time.monotonic() - started
    info = index.store.info(index.live_model_version())
    rows = f"; the live table holds {info.rows} rows" if info else ""
    if not result.success:
        print(f"materialize failed: run {result.run_id} (its events and logs are in the UI)", file=sys.stderr)
        return EXIT_DIFFERENCE
    ranged = RANGE_START_TAG in result.dagster_run.tags  # not for unpartitioned assets
    span = f" for {first}...{last}" if ranged else ""
    print(
        f"materialized {args.select!r}{span} in run {result.run_id} ({seconds:.0f} s): "
        f"{display.counts['chunks_embedded']} chunks embedded{rows}"
    )
    return EXIT_OK


def _on_refresh(display: Display, step: str, item: str, figures: Mapping[str, Any]) -> None:
    if step == "sync":
        display.advance(0, "reading the source's changes", keys_read=int(figures.get("keys_read", 0)))
    elif step == "refresh_plan":
        display.set_total(len(PIPELINE_STEPS) * int(figures["stale_shards"]))
        display.advance(0, f"{figures['stale_shards']} stale shard(s)")
    elif (name := step.rsplit("/", 1)[-1]) in PIPELINE_STEPS:  # a step's asset key: <profile or model>/<name>
        done = int(name == PIPELINE_STEPS[-1])
        display.advance(1, f"{name} {item}", shards=done, chunks_embedded=int(figures.get("chunks_embedded", 0)))


def resync(index: Index, args: argparse.Namespace) -> int:
    """A full listing diffed against the change index (the feed's slot or queue is set up first, so
    nothing written during the listing is lost); the next refresh or sensor tick runs what changed."""
    with Display("resync", None, "", {"keys_read": "keys read"}) as display, display.following(_on_sync):
        report = index.sync(full=True)
    print(
        f"{index.source.name}: {index.changes.keys()} keys; {report.keys_read} read, {report.keys_deleted} deleted, "
        f"{len(report.changed_shards)} shard(s) changed, in {report.seconds:.2f} s"
    )
    return EXIT_OK


def _on_sync(display: Display, step: str, item: str, figures: Mapping[str, Any]) -> None:
    if step == "sync":
        display.advance(0, "listing the source", keys_read=int(figures.get("keys_read", 0)))


def verify(index: Index, args: argparse.Namespace) -> int:
    code, payload, lines = _verify(index, args.verbose)
    if code != EXIT_OK and args.repair:
        _, repair, repair_lines = _refresh(index, payload["mismatched"], verbose=args.verbose)
        code, after, after_lines = _verify(index, False)
        payload = after | {"mismatched_before": payload["mismatched"], "repair": repair}
        lines += repair_lines + after_lines
    return emit(args, code, payload, lines)


def _verify(index: Index, verbose: bool) -> Outcome:
    """Every active model's rows, shard by shard, against what the source (fully listed now) says they
    must be; each shard's documents are read once for all models."""
    shard_count, models = index.shard_count, index.models
    diffs: dict[str, list[ShardDiff]] = {m.model_version: [] for m in models}
    shown = {"differing": "differ", "chunks": "chunks compared"}
    with Display("verify", shard_count, "shards", shown) as display:
        with display.following(_on_sync):
            index.sync(full=True)  # the truth is the source as a full listing finds it now
        # What stale detection reads in place of the rows.
        recorded = {m.model_version: index.store.recorded_states(m.model_version) for m in models}
        for shard in shard_keys(shard_count):
            documents = list(index.documents(shard))
            compared = differing = 0
            for model in models:
                version = model.model_version
                expected = expected_chunks(documents, index.chunking, model.embedder)
                stored = index.store.shard_rows(version, shard, STORED_COLUMNS)
                diff = diff_shard(shard, expected, stored, version, recorded[version].get(shard))
                diffs[version].append(diff)
                compared, differing = compared + len(expected), differing + int(not diff.matches)
            display.advance(1, shard, chunks=compared, differing=differing)
    lines: list[str] = []
    reports: list[dict[str, Any]] = []
    for version, model_diffs in diffs.items():
        mismatched = [d.shard for d in model_diffs if not d.matches]
        lines += [d.describe() for d in model_diffs if verbose or not d.matches]
        lines.append(f"{shard_count - len(mismatched)} of {shard_count} shards match the source ({version})")
        reports.append(
            {
                "model_version": version,
                "shards_matching": shard_count - len(mismatched),
                "mismatched": mismatched,
                "shards": [{"shard": d.shard, "matches": d.matches} | d.figures() for d in model_diffs],
            }
        )
    mismatched = sorted({d.shard for model_diffs in diffs.values() for d in model_diffs if not d.matches})
    payload = {"shards_total": shard_count, "mismatched": mismatched, "models": reports}
    return (EXIT_DIFFERENCE if mismatched else EXIT_OK), payload, lines


def shards(index: Index, args: argparse.Namespace) -> int:
    keys = shard_keys(index.shard_count)
    print(f"{keys[0]}...{keys[-1]}" if args.range else "\n".join(keys))
    return EXIT_OK


def instance_config(index: Index, args: argparse.Namespace) -> int:
    """The profile's dagster.yaml, which the Makefile copies into DAGSTER_HOME."""
    print(profiles.instance_config(index.settings.profile))
    return EXIT_OK


def export(index: Index, args: argparse.Namespace) -> int:
    from pydoc_data.topics import topics

    from embedding_assets.demo_corpus import export_pydoc_topics

    folder = args.folder or index.settings.source_dir
    with Display("export", len(topics), "files", {}) as display, display.following(_on_export):
        count = export_pydoc_topics(folder)
    print(f"exported {count} pydoc topics to {folder}")
    return EXIT_OK


def _on_export(display: Display, step: str, item: str, figures: Mapping[str, Any]) -> None:
    if step == "export":
        display.advance(1, item)
