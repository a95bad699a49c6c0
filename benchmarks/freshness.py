"""Edit → searchable under the daemon: p50 and p95, for the folder and for a PostgreSQL table.

`dagster dev` on the local profile's instance (webserver and daemon, 5 s sensor and automation
intervals, the real local model, 4 shards) follows a small corpus of Python's reference topics. Each
trial edits one document at a random moment of the sensor's interval, with a marker sentence, and
polls LanceDB until a chunk holds the marker. The run the sensor requested splits the latency: edit →
run queued (the sensor's tick), queued → started (dequeue, process launch, code load), started →
searchable (the run's steps up to the table commit). Writes benchmarks/freshness.md.
"""

import dataclasses
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg

from embedding_assets.core.profiles import instance_config
from embedding_assets.core.settings import Settings
from embedding_assets.core.store import VectorStore, sql_string
from embedding_assets_tests.conftest import TEST_TOPICS, topics_table, write_topics
from embedding_assets_tests.dagster_dev import dagster_dev, project_env
from embedding_assets_tests.pipeline_helpers import settings_env
from embedding_assets_tests.services import postgres_server

TRIALS = 12
INTERVAL = 5
MODEL = "local:all-MiniLM-L6-v2-onnx-int8@1.0.0/384d"
OUT = Path(__file__).with_name("freshness.md")


@dataclasses.dataclass(frozen=True)
class Trial:
    total: float
    detected: float  # edit → run queued
    launched: float  # queued → started
    ran: float  # started → searchable


def searchable(settings: Settings, marker: str) -> bool:
    table = VectorStore(settings.lancedb_uri).table(MODEL)
    return table is not None and table.count_rows(f"text LIKE {sql_string('%' + marker + '%')}") > 0


def measure(settings: Settings, env: dict[str, str], edit: Callable[[str], None], log: Path) -> list[Trial]:
    """TRIALS edits under `dagster dev`, each timed until searchable, with its run's phases."""
    rng, trials = random.Random(7), []
    shutil.copy(instance_config("local"), Path(env["DAGSTER_HOME"]) / "dagster.yaml")  # as `make ui` runs
    with dagster_dev(env, log) as dev:
        dev.wait_for(lambda: searchable(settings, "Python"), "the first index", 600)
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            dev.wait_for(lambda: all(r.dagster_run.is_finished for r in instance.get_run_records()), "idle", 300)
            for _ in range(TRIALS):
                time.sleep(rng.uniform(0, INTERVAL))  # a random phase of the sensor's interval
                marker = f"marker{uuid.uuid4().hex[:12]}"
                started = time.time()
                edit(marker)
                dev.wait_for(lambda m=marker: searchable(settings, m), "the edit searchable", 300)
                visible = time.time()
                dev.wait_for(lambda: all(r.dagster_run.is_finished for r in instance.get_run_records()), "idle", 300)
                runs = [r for r in instance.get_run_records() if r.create_timestamp.timestamp() >= started]
                run = min(
                    (r for r in runs if r.start_time and r.start_time <= visible), key=lambda r: r.start_time or 0
                )
                queued, begun = run.create_timestamp.timestamp(), run.start_time or visible
                trials.append(Trial(visible - started, queued - started, begun - queued, visible - begun))
    return trials


def folder_trials(root: Path) -> list[Trial]:
    source = write_topics(root / "source")
    env = project_env(root, shards="4", scan_interval_seconds=str(INTERVAL), automation_interval_seconds=str(INTERVAL))
    settings = Settings.from_env(env)
    names = iter(random.Random(3).choices(TEST_TOPICS, k=TRIALS))

    def edit(marker: str) -> None:
        path = source / f"{next(names)}.txt"
        path.write_text(path.read_text() + f"\n\nEdited: {marker} is the newest sentence.\n")

    return measure(settings, env, edit, root / "folder.log")


def postgres_trials(root: Path) -> list[Trial]:
    root.mkdir(parents=True)
    with postgres_server() as server:
        table, connection = topics_table(server, "freshness", root)
        settings = dataclasses.replace(table, scan_interval_seconds=INTERVAL, automation_interval_seconds=INTERVAL)
        env = project_env(root) | settings_env(settings)
        ids = iter(random.Random(3).choices(range(len(TEST_TOPICS)), k=TRIALS))

        def edit(marker: str) -> None:
            with connection.cursor() as cur:
                cur.execute(
                    "UPDATE docs SET body = body || %s WHERE id = %s", (f"\n\nEdited: {marker} is new.", next(ids))
                )

        try:
            return measure(settings, env, edit, root / "postgres.log")
        finally:
            connection.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(name: str, trials: list[Trial]) -> str:
    totals = [t.total for t in trials]
    phases = [statistics.median(getattr(t, f) for t in trials) for f in ("detected", "launched", "ran")]
    return (
        f"| {name} | {percentile(totals, 0.5):.1f} s | {percentile(totals, 0.95):.1f} s | {max(totals):.1f} s | "
        + " | ".join(f"{p:.1f} s" for p in phases)
        + " |"
    )


def main() -> None:
    results: dict[str, list[Trial]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, trials in (("folder", folder_trials), ("PostgreSQL (logical slot)", postgres_trials)):
            results[name] = trials(Path(tmp) / name.split()[0].lower())
            print(row(name, results[name]), flush=True)
    lines = [
        "# Edit → searchable under the daemon",
        "",
        f"`dagster dev`, {INTERVAL} s sensor and automation intervals, the real local model, 4 shards, "
        f"{len(TEST_TOPICS)} documents; {TRIALS} edits each, at random moments. Medians of each phase.",
        "Generated by `benchmarks/freshness.py` (`make bench`). Target: p50 ≤ 15 s, p95 ≤ 30 s.",
        "",
        "| source | p50 | p95 | max | edit → run queued | queued → started | started → searchable |",
        "|---|---|---|---|---|---|---|",
        *(row(name, trials) for name, trials in results.items()),
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
