"""The ``embedding-assets`` command: search, inspect, refresh, verify and migrate the index.

``materialize`` runs under the UI's code location (``workspace.yaml``) with progress; backfills use
Dagster's own CLI (see the README).
Exit codes: 0 nothing is wrong, 1 a difference or a refusal, 2 misconfiguration (``cli.output``).
"""

import argparse
import sys
from collections.abc import Callable

from embedding_assets.cli import index, models
from embedding_assets.cli.output import EXIT_CONFIG, emit
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.index import Index
from embedding_assets.core.sources import SourceError

Command = Callable[[Index, argparse.Namespace], int]


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="embedding-assets", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)

    def command(name: str, run: Command, help: str, *, json: bool = False) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.set_defaults(run=run)
        if json:
            sub.add_argument("--json", action="store_true", help="print one JSON object (schema in the README)")
        return sub

    search = command("search", index.search, "semantic search over the live table", json=True)
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5, help="number of hits (default 5)")
    command("status", index.status, "tables, the live model version, and rows per shard", json=True)
    refresh = command(
        "refresh", index.refresh, "record the source's changes and materialize only the stale shards, now", json=True
    )
    refresh.add_argument("-v", "--verbose", action="store_true", help="also print each shard's figures")
    materialize = command(
        "materialize",
        index.materialize,
        "materialize every asset and check for all shards in one run of the UI's code location, now",
    )
    materialize.add_argument("--select", default="*", help="Dagster asset selection (default: '*', everything)")
    materialize.add_argument("--partition-range", help="first...last shard (default: all, see `shards --range`)")
    command("resync", index.resync, "re-list the whole source and reconcile the change index with it")
    verify = command(
        "verify", index.verify, "compare each shard's rows with the source; exit 1 if any differs", json=True
    )
    verify.add_argument("-v", "--verbose", action="store_true", help="also list the shards that match")
    verify.add_argument("--repair", action="store_true", help="then re-materialize the shards that differ")
    shards = command("shards", index.shards, "list the shard (partition) keys")
    shards.add_argument("--range", action="store_true", help="print first...last, for --partition-range")
    command(
        "instance-config",
        index.instance_config,
        "print the path of the profile's dagster.yaml (EMBEDDING_ASSETS_PROFILE)",
    )
    export = command("export-demo-corpus", index.export, "write pydoc_data topics as .txt files")
    export.add_argument("folder", nargs="?", help="target folder (default: EMBEDDING_ASSETS_SOURCE_DIR)")

    evaluate = command(
        "eval", models.evaluate, "recall@k, MRR and nDCG@10 of the live table and each candidate", json=True
    )
    evaluate.add_argument("--golden", help="golden set JSONL (default: EMBEDDING_ASSETS_GOLDEN_SET or the demo's)")
    evaluate.add_argument("--model-version", action="append", help="evaluate only these (repeatable)")
    promote = command("promote", models.promote, "make a fully materialized candidate the live table")
    promote.add_argument("model_version")
    promote.add_argument("--force", action="store_true", help="promote even if the eval gate refuses")
    promote.add_argument("--golden", help="golden set for the gate")
    command("rollback", models.rollback, "make the previous live table live again (no re-embedding)")
    drop = command("drop", models.drop, "delete a table that is not live")
    drop.add_argument("model_version")
    estimate = command(
        "estimate", models.estimate, "documents, chunks, tokens and cost of embedding, offline", json=True
    )
    estimate.add_argument("--model", help="model spec (default: EMBEDDING_ASSETS_MODEL)")
    estimate.add_argument("--dimensions", type=int, help="dimensions for text-embedding-3-* models")
    estimate.add_argument("--stale-only", action="store_true", help="only what a refresh would embed now")
    estimate.add_argument(
        "--churn-days",
        type=_days,
        default=7.0,
        help="window of the live model's churn that prices the daily upkeep, in days (default 7)",
    )
    return root


def _days(raw: str) -> float:
    """A positive number of days; argparse reports anything else, with the command's usage."""
    try:
        days = float(raw)
    except ValueError:
        days = 0.0
    if not days > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a positive number of days, got {raw!r}")
    return days


def main(argv: list[str] | None = None) -> int:
    """Run one command; misconfiguration (a setting, a missing table or model version, an unusable
    source) exits 2 with one message, as JSON too with ``--json``."""
    args = parser().parse_args(argv)
    try:
        run: Command = args.run
        return run(Index.from_env(), args)
    except (ConfigError, LookupError, SourceError) as err:
        print(f"error: {err}", file=sys.stderr)
        return emit(args, EXIT_CONFIG, {"error": str(err)})  # the JSON object only with --json
