"""What one Dagster event costs the pipeline on each profile's instance storage: the local profile's
SQLite and the production profile's PostgreSQL (a throwaway server on loopback, as the tests start it:
fsync off). A refresh stores about 11 events per shard (4 planned and 4 done materializations, 3 check
results), so this is the per-shard bookkeeping that no change to the pipeline's own work removes.

Stores the same partitioned materializations (with metadata like the assets') through
``report_runless_asset_event`` and writes benchmarks/event_cost.md. ``make bench`` runs it.
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EVENTS = int(os.environ.get("EVENT_COST_EVENTS", "300"))
OUT = Path(__file__).with_name("event_cost.md")


def per_event_ms(instance: dg.DagsterInstance) -> list[float]:
    """Milliseconds to store each of ``EVENTS`` materializations of 64 shards of one asset."""
    key = dg.AssetKey(["toy_hashing", "vector_table"])
    times = []
    for i in range(EVENTS):
        metadata = {"rows": i, "chunks_embedded": 10, "duration_s": 0.1, "model_version": "toy:hashing"}
        event = dg.AssetMaterialization(key, partition=f"s{i % 64:03d}", metadata=metadata)
        started = time.perf_counter()
        instance.report_runless_asset_event(event)
        times.append((time.perf_counter() - started) * 1e3)
    return times


def line(name: str, times: list[float]) -> str:
    times = sorted(times)
    p95 = times[int(0.95 * (len(times) - 1))]
    return f"| {name} | {statistics.median(times):.1f} ms | {p95:.1f} ms | {statistics.mean(times):.1f} ms |"


def main() -> None:
    from embedding_assets_tests.services import postgres_server

    rows, load = [], os.getloadavg()[0]
    home = Path(tempfile.mkdtemp(prefix="event-cost-"))
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:  # no dagster.yaml: SQLite
            rows.append(line("local profile: SQLite in DAGSTER_HOME", per_event_ms(instance)))
        with postgres_server() as server:
            pg_home = home / "pg"
            pg_home.mkdir()
            shutil.copy(ROOT / "embedding_assets" / "deploy" / "production" / "dagster.yaml", pg_home)
            os.environ.update(server.env(server.create_database("events")))
            with dg.DagsterInstance.from_config(str(pg_home)) as instance:
                rows.append(line("production profile: PostgreSQL on loopback (fsync off)", per_event_ms(instance)))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    text = "\n".join(
        [
            "# What a Dagster event costs",
            "",
            f"{EVENTS} partitioned materializations stored one at a time through "
            "`report_runless_asset_event`, on each profile's instance storage; load average before: "
            f"{load:.2f}. A refresh stores ~11 events per shard. Written by "
            "`benchmarks/event_cost.py`.",
            "",
            "| storage | median | p95 | mean |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
