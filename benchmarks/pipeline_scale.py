"""The pipeline's own cost at size (issue 13): a PostgreSQL table of N documents, 64 shards, the toy
zero-cost model, a real Dagster instance. At each size: the full ingest, the no-op refresh, a
10-document edit's refresh, one shard's write (``VectorStore.replace_shard`` with 10% of a shard
changed) and each phase's peak RSS; plus what a refresh pays per shard in Dagster bookkeeping.

Each phase runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own. Writes
benchmarks/pipeline_scale.md. ``python benchmarks/pipeline_scale.py [N ...]`` (default 10^5 and 10^6).
"""

import cProfile
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARDS = 64
SIZES = (100_000, 1_000_000)
EDITED = 10
PHASES = ("ingest", "noop", "edit", "edit_profile", "shard_write")
# ~65 words per document, made in SQL: one chunk each, so chunking costs little.
DOCUMENT_SQL = (
    "'document ' || i || ' about topic ' || mod(i, 997) || ' and subject ' || mod(i, 101) || ' ' "
    "|| repeat('lorem ipsum dolor sit amet consectetur ', 10)"
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def settings_for(dsn: str, work: Path) -> Any:
    from embedding_assets.core.settings import Settings

    return Settings(
        source=dsn,
        source_table="public.docs",
        text_field="text",
        lancedb_uri=str(work / "lancedb"),
        staging_dir=str(work / "staging"),
        shards=SHARDS,
        model="toy:hashing",
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_events(instance: Any, run_ids: list[str]) -> dict[str, Any]:
    """Events the runs wrote, by type, and the shards they covered (the run tags' ranges)."""
    kinds: Counter[str] = Counter()
    for run_id in run_ids:
        for entry in instance.all_logs(run_id):
            kinds[entry.dagster_event.event_type_value if entry.dagster_event else "log"] += 1
    return {"events": sum(kinds.values()), "by_type": dict(kinds.most_common())}


def step_times(instance: Any, run_ids: list[str]) -> dict[str, Any]:
    """Seconds from run start to run end, and per step (STEP_START to STEP_SUCCESS), summed over runs."""
    steps: Counter[str] = Counter()
    run_seconds = 0.0
    for run_id in run_ids:
        started: dict[str, float] = {}
        first = last = None
        for entry in instance.all_logs(run_id):
            first = entry.timestamp if first is None else first
            last = entry.timestamp
            event = entry.dagster_event
            if event is None or entry.step_key is None:
                continue
            if event.event_type_value == "STEP_START":
                started[entry.step_key] = entry.timestamp
            elif event.event_type_value == "STEP_SUCCESS" and entry.step_key in started:
                steps[entry.step_key] += entry.timestamp - started.pop(entry.step_key)
        run_seconds += (last or 0) - (first or 0)
    return {"run_log_seconds": run_seconds, "step_seconds": dict(steps)}


def phase_refresh(name: str, dsn: str, work: Path) -> dict[str, Any]:
    import dagster as dg

    from embedding_assets.core.index import Index
    from embedding_assets.refresh import refresh

    instance = dg.DagsterInstance.from_config(str(work / "dagster_home"))
    storage = instance.event_log_storage
    stored = {"events": 0, "seconds": 0.0}
    store_event = storage.store_event

    def timed_store_event(event: Any) -> None:  # what each event costs the run to record
        started = time.perf_counter()
        try:
            store_event(event)
        finally:
            stored["events"] += 1
            stored["seconds"] += time.perf_counter() - started

    storage.store_event = timed_store_event  # type: ignore[method-assign]
    index = Index(settings_for(dsn, work))
    profiler = cProfile.Profile() if name.endswith("_profile") else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    report = refresh(index, instance, progress=lambda m: log(f"  {name}: {m}"))
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - started
    covered = len(report.per_shard)
    out: dict[str, Any] = {
        "seconds": seconds,
        "sync_seconds": report.sync.seconds,
        "keys_read": report.sync.keys_read,
        "stale": len(report.stale),
        "runs": len(report.runs),
        "shards_materialized": covered,
        "chunks_embedded": report.total("chunks_embedded"),
        "chunks_inserted": report.total("chunks_inserted"),
        "chunks_updated": report.total("chunks_updated"),
        "chunks_deleted": report.total("chunks_deleted"),
        **run_events(instance, report.runs),
        "store_event_count": stored["events"],
        "store_event_seconds": stored["seconds"],
        **step_times(instance, report.runs),
    }
    if profiler:
        out["profile"] = profile_summary(profiler, work / f"{name}.prof")
    return out


def profile_summary(profiler: cProfile.Profile, path: Path) -> dict[str, Any]:
    """Where the profiled refresh spent its time: the top functions by cumulative time, and the time
    inside Dagster's storage and inside this project's code."""
    profiler.dump_stats(str(path))
    stats = pstats.Stats(str(path))
    rows = []
    for (filename, line, func), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((cumtime, tottime, calls, f"{_short(filename)}:{line}({func})"))
    rows.sort(reverse=True)
    tot_by_area: Counter[str] = Counter()
    for (filename, _line, _func), (_cc, _calls, tottime, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        tot_by_area[_area(filename)] += tottime
    return {
        "top_cumulative": [
            {"cum_s": round(c, 3), "self_s": round(t, 3), "calls": n, "function": f} for c, t, n, f in rows[:45]
        ],
        "self_time_by_area": {k: round(v, 3) for k, v in tot_by_area.most_common(12)},
    }


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/tmp/scale/", "lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _area(filename: str) -> str:
    short = _short(filename)
    if short.startswith("dagster/_core/storage") or short.startswith("dagster/_core/events"):
        return "dagster storage/events"
    if short.startswith("dagster"):
        return "dagster other"
    if short.startswith("sqlalchemy") or "sqlite" in short:
        return "sqlalchemy/sqlite"
    if short.startswith("embedding_assets"):
        return "embedding_assets"
    if short.startswith("lancedb") or short.startswith("pyarrow"):
        return "lancedb/pyarrow"
    if short.startswith("psycopg2"):
        return "psycopg2"
    if short.startswith("{") or short.startswith("~"):
        return "builtins/C"
    return short.split("/", 1)[0]


def phase_shard_write(dsn: str, work: Path) -> dict[str, Any]:
    """``replace_shard`` on one shard with 10% of its rows changed, then back (two writes timed)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from embedding_assets.core.index import Index

    index = Index(settings_for(dsn, work))
    store, model_version = index.store, index.embedder.model_version
    table = store.table(model_version)
    shards = store.shard_counts(model_version)
    shard = sorted(shards)[len(shards) // 2]
    rows = store.shard_rows(model_version, shard)
    rows = rows.replace_schema_metadata(table.schema.metadata)
    n = rows.num_rows

    def changed(selected: list[bool]) -> pa.Table:
        column = rows.column("chunk_hash")
        marked = pc.binary_join_element_wise(column, "x", "")
        return rows.set_column(
            rows.schema.get_field_index("chunk_hash"), "chunk_hash", pc.if_else(pa.array(selected), marked, column)
        )

    timings = {}
    versions = (
        ("tenth", changed([i % 10 == 0 for i in range(n)])),
        ("tenth_restored", rows),
        ("ten_rows", changed([i % (n // EDITED) == 0 and i // (n // EDITED) < EDITED for i in range(n)])),
        ("ten_rows_restored", rows),
    )
    for label, version in versions:
        started = time.perf_counter()
        write = store.replace_shard(shard, version)
        timings[label] = {"seconds": time.perf_counter() - started, "updated": write.updated}
    return {
        "shard": shard,
        "shard_rows": n,
        "table_rows": table.count_rows(),
        "seconds": timings["tenth"]["seconds"],
        "updated": timings["tenth"]["updated"],
        "writes": timings,
    }


def child(name: str, dsn: str, work: Path) -> None:
    out = phase_shard_write(dsn, work) if name == "shard_write" else phase_refresh(name, dsn, work)
    out["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(out), flush=True)


def run_phase(name: str, dsn: str, work: Path) -> dict[str, Any]:
    log(f"phase {name} ...")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", name, dsn, str(work)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    result = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
        else:
            print("    " + line.rstrip(), flush=True)
    if proc.wait() or result is None:
        raise RuntimeError(f"phase {name} failed ({proc.returncode})")
    result["process_seconds"] = time.perf_counter() - started
    brief = {k: v for k, v in result.items() if k not in ("profile",)}
    log(f"phase {name}: {brief}")
    return result


def edit(connection: Any, size: int, round_: int) -> list[str]:
    ids = [f"doc{(round_ * 7919 + i * (size // EDITED) + 13) % size:07d}" for i in range(EDITED)]
    with connection.cursor() as cur:
        cur.execute("UPDATE docs SET text = text || ' edited ' || %s WHERE id = ANY(%s)", (round_, ids))
    return ids


def measure(size: int, server: Any, root: Path) -> dict[str, Any]:
    import psycopg2

    work = root / f"n{size}"
    work.mkdir()
    (work / "dagster_home").mkdir()
    db = server.create_database(f"docs_{size}")
    dsn = f"postgresql://{server.user}@{server.host}:{server.port}/{db}"
    connection = psycopg2.connect(host=server.host, port=server.port, user=server.user, dbname=db)
    connection.autocommit = True
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE docs (id text PRIMARY KEY, text text NOT NULL)")
        cur.execute(
            f"INSERT INTO docs SELECT 'doc' || lpad(i::text, 7, '0'), {DOCUMENT_SQL} "
            "FROM generate_series(0, %s - 1) AS i",
            (size,),
        )
    log(f"{size:,} rows in PostgreSQL in {time.perf_counter() - started:.1f} s")
    figures: dict[str, Any] = {"size": size}
    try:
        figures["ingest"] = run_phase("ingest", dsn, work)
        with connection.cursor() as cur:
            cur.execute("CHECKPOINT")  # so idle slot reads do not re-decode the load's WAL
        figures["noop"] = run_phase("noop", dsn, work)
        figures["noop_profile"] = run_phase("noop_profile", dsn, work)
        edit(connection, size, 1)
        figures["edit"] = run_phase("edit", dsn, work)
        edit(connection, size, 2)
        figures["edit_profile"] = run_phase("edit_profile", dsn, work)
        figures["shard_write"] = run_phase("shard_write", dsn, work)
    finally:
        connection.close()
        (root / f"figures-{size}.json").write_text(json.dumps(figures, indent=1))
        out = Path(os.environ.get("PIPELINE_SCALE_OUT", ROOT / "benchmarks")) / f"pipeline_scale-{size}.json"
        out.write_text(json.dumps(figures, indent=1))
    return figures


TARGET = 50_000_000


def _fit(figures: dict[int, float], at: int = TARGET) -> float:
    """The straight line through the smallest and largest size's figure, at ``at`` documents."""
    small, large = min(figures), max(figures)
    slope = (figures[large] - figures[small]) / (large - small)
    return figures[small] + slope * (at - small)


def _mb(x: float) -> str:
    return f"{x:,.0f} MB"


def _s(x: float) -> str:
    return f"{x:,.1f} s" if x >= 1 else f"{x * 1e3:,.0f} ms"


def write_report(results: dict[int, dict[str, Any]], out: Path) -> str:
    """benchmarks/pipeline_scale.md from the per-size figures."""
    sizes = sorted(results)
    small, large = sizes[0], sizes[-1]

    def get(size: int, phase: str, key: str) -> float:
        return float(results[size][phase][key])

    rows = {
        "full ingest": {n: get(n, "ingest", "seconds") for n in sizes},
        "no-op refresh": {n: get(n, "noop", "seconds") for n in sizes},
        "10-document edit refresh": {n: get(n, "edit", "seconds") for n in sizes},
        "one shard's write, 10% of it changed": {n: get(n, "shard_write", "seconds") for n in sizes},
        "one shard's write, 10 rows changed": {
            n: float(results[n]["shard_write"]["writes"]["ten_rows"]["seconds"]) for n in sizes
        },
        "peak RSS, full ingest": {n: get(n, "ingest", "peak_rss_mb") for n in sizes},
        "peak RSS, no-op refresh": {n: get(n, "noop", "peak_rss_mb") for n in sizes},
        "peak RSS, edit refresh": {n: get(n, "edit", "peak_rss_mb") for n in sizes},
        "peak RSS, shard write": {n: get(n, "shard_write", "peak_rss_mb") for n in sizes},
    }
    fmt = {name: (_mb if name.startswith("peak") else _s) for name in rows}
    head = " | ".join(f"{n:,} docs" for n in sizes)
    lines = [
        f"# The pipeline at {' and '.join(f'{n:,}' for n in sizes)} documents",
        "",
        f"A PostgreSQL table (logical mode) of N documents of ~65 words (one chunk each), {SHARDS} shards, "
        "the toy zero-cost model `toy:hashing`, a Dagster instance with the local profile's storage "
        "(SQLite, in a temporary DAGSTER_HOME), `refresh(index, instance)`. Each phase is its own "
        "subprocess, so peak RSS (`ru_maxrss`) is the phase's own. Times are taken around `refresh(...)` "
        "inside the process: Python start-up and the Dagster import are excluded, LanceDB's import (lazy, "
        "inside `refresh`; 3-6 s on this machine) is included. Written by `benchmarks/pipeline_scale.py`. "
        "One run per figure, on a shared 2-core machine (load average 6-7 during the runs).",
        "",
        f"| figure | {head} | ratio {large:,} / {small:,} |",
        "|---|" + "---|" * len(sizes) + "---|",
    ]
    for name, values in rows.items():
        ratio = values[large] / values[small] if values[small] else float("nan")
        lines.append(f"| {name} | " + " | ".join(fmt[name](values[n]) for n in sizes) + f" | {ratio:.2f}x |")
    lines += ["", "What each refresh did:", ""]
    lines.append(
        "| documents | phase | keys read | sync | stale shards | runs | shards run | events | chunks embedded |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        for phase in ("ingest", "noop", "edit", "edit_profile"):
            f = results[n][phase]
            lines.append(
                f"| {n:,} | {phase} | {f['keys_read']:,} | {_s(f['sync_seconds'])} | {f['stale']} | {f['runs']} | "
                f"{f['shards_materialized']} | {f['events']:,} | {f['chunks_embedded']:,} |"
            )
    lines += ["", "One shard's write (`VectorStore.replace_shard`), the shard in the middle of the table:", ""]
    lines.append("| documents | table rows | shard rows | 10% changed | restore | 10 rows changed | restore |")
    lines.append("|---|---|---|---|---|---|---|")
    for n in sizes:
        w = results[n]["shard_write"]
        ws = w["writes"]
        lines.append(
            f"| {n:,} | {w['table_rows']:,} | {w['shard_rows']:,} | {_s(ws['tenth']['seconds'])} | "
            f"{_s(ws['tenth_restored']['seconds'])} | {_s(ws['ten_rows']['seconds'])} | "
            f"{_s(ws['ten_rows_restored']['seconds'])} |"
        )
    lines += ["", "## Dagster bookkeeping per shard (issue 13 item 6)", ""]
    lines.append(
        "| documents | phase | shards run | events / shard | recording events (store_event) | per event | "
        "per shard | run wall / shard | steps (STEP_START to STEP_SUCCESS) |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        for phase in ("ingest", "edit"):
            f = results[n][phase]
            shards = max(1, f["shards_materialized"])
            if "store_event_seconds" not in f:
                continue
            steps = ", ".join(f"{k} {_s(v)}" for k, v in f["step_seconds"].items())
            lines.append(
                f"| {n:,} | {phase} | {shards} | {f['events'] / shards:.1f} | {_s(f['store_event_seconds'])} | "
                f"{_s(f['store_event_seconds'] / max(1, f['store_event_count']))} | "
                f"{_s(f['store_event_seconds'] / shards)} | {_s(f['seconds'] / shards)} | {steps} |"
            )
    lines += ["", "Events by type (edit refresh):", ""]
    for n in sizes:
        lines.append(f"- {n:,}: " + ", ".join(f"{k} {v}" for k, v in results[n]["edit"]["by_type"].items()))
    for phase in ("noop_profile", "edit_profile"):
        profile = results[large].get(phase, {}).get("profile")
        if not profile:
            continue
        what = "a no-op refresh" if phase == "noop_profile" else "a 10-document edit's refresh"
        lines += ["", f"Profile of {what} at {large:,} (cProfile; self time by area):", ""]
        lines += [f"- {k}: {v:.2f} s" for k, v in profile["self_time_by_area"].items()]
        lines += ["", "Top functions by cumulative time:", "", "```"]
        lines += [
            f"{r['cum_s']:8.2f} s cum {r['self_s']:7.2f} s self {r['calls']:7} calls  {r['function']}"
            for r in profile["top_cumulative"][:35]
        ]
        lines += ["```"]
    lines += ["", f"## Extrapolation to {TARGET:,} documents ({SHARDS} shards)", ""]
    lines.append(
        f"A straight line through the {small:,} and {large:,} figures (a + b·N), evaluated at {TARGET:,}. "
        "A figure that is flat between the sizes stays flat; one that grows is projected linearly."
    )
    lines.append("")
    lines.append(f"| figure | at {small:,} | at {large:,} | at {TARGET:,} |")
    lines.append("|---|---|---|---|")
    for name, values in rows.items():
        projected = fmt[name](max(0.0, _fit(values)))
        lines.append(f"| {name} | {fmt[name](values[small])} | {fmt[name](values[large])} | {projected} |")
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def main(sizes: list[int]) -> None:
    from embedding_assets_tests.services import postgres_server

    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="pipeline-scale-") as tmp, postgres_server() as server:
        for size in sizes:
            log(f"=== {size:,} documents, {SHARDS} shards ===")
            started = time.perf_counter()
            results[size] = measure(size, server, Path(tmp))
            log(f"=== {size:,} done in {time.perf_counter() - started:.0f} s ===")
            if len(results) > 1:
                print(write_report(results, Path(__file__).with_name("pipeline_scale.md")))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--report"]:  # the .md from figures already measured (pipeline_scale-<N>.json)
        found = {int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in map(Path, sys.argv[2:])}
        print(write_report(found, Path(__file__).with_name("pipeline_scale.md")))
    elif sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
    else:
        main([int(a) for a in sys.argv[1:]] or list(SIZES))
