"""The vector table's own costs at 2x10^5 and 2x10^6 rows: shard writes, stale detection, shard reads.

64 shards of random unit vectors (384 dimensions, no model), two chunks per document. Shards s000-s009
hold 3,125 rows at both sizes (what a shard holds at 2x10^5), so their figures isolate the table's
size; s010-s063 share the rest, so a shard write there also shows what a 10x larger shard costs.
Each size runs in a process of its own, so its peak RSS is its own. Writes benchmarks/store_scale.md.

    .venv/bin/python benchmarks/store_scale.py            # both sizes
    .venv/bin/python benchmarks/store_scale.py 200000     # one size, printed as JSON
"""

import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embedding_assets.core.hashing import content_hash, set_hash
from embedding_assets.core.reconcile import stale_shards
from embedding_assets.core.shards import shard_keys
from embedding_assets.core.store import (
    CHANGE_COLUMNS,
    SCALAR_INDEXES,
    VectorStore,
    row_schema,
    sql_string,
    state_table_name,
)

SIZES = (200_000, 2_000_000)
SHARDS = 64
DIMENSIONS = 384
CHUNKS_PER_DOC = 2
FIXED_SHARDS = 10  # s000-s009: the same size at every table size
FIXED_SHARD_ROWS = 3_125
CHANGED = 0.10  # of a shard's rows, per write: 60% of them updated, 20% deleted, 20% inserted
WRITES = 10
REPEATS = 10
LEGACY_WRITES = 3
BUILD_BATCH_ROWS = 100_000
MODEL = "bench:random/384d"
WHEN = datetime(2026, 1, 1, tzinfo=UTC)
OUT = Path(__file__).with_name("store_scale.md")

Docs = dict[str, int]  # doc_id -> revision


def shard_sizes(rows: int) -> dict[str, int]:
    """Rows per shard: FIXED_SHARD_ROWS for the first FIXED_SHARDS, the rest shared by the others."""
    keys = shard_keys(SHARDS)
    rest = (rows - FIXED_SHARDS * FIXED_SHARD_ROWS) // (SHARDS - FIXED_SHARDS)
    return {k: FIXED_SHARD_ROWS if i < FIXED_SHARDS else rest for i, k in enumerate(keys)}


def make_rows(shard: str, docs: Docs, rng: np.random.Generator) -> pa.Table:
    """A shard's rows as the embeddings stage makes them: a document's hash follows its revision."""
    schema = row_schema(DIMENSIONS, model_version=MODEL, shard_count=SHARDS)
    ids, doc_ids, positions, chunk_hashes, doc_hashes, stamps = [], [], [], [], [], []
    for doc_id, revision in docs.items():
        doc_hash = content_hash(f"{doc_id}:{revision}")
        for position in range(CHUNKS_PER_DOC):
            ids.append(f"{doc_id}#{position}")
            doc_ids.append(doc_id)
            positions.append(position)
            chunk_hashes.append(content_hash(f"{doc_id}:{revision}:{position}"))
            doc_hashes.append(doc_hash)
            stamps.append(WHEN + timedelta(seconds=revision))
    n = len(ids)
    vectors = rng.standard_normal((n, DIMENSIONS), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    columns = {
        "chunk_id": ids,
        "doc_id": doc_ids,
        "shard": [shard] * n,
        "position": pa.array(positions, pa.int32()),
        "text": [f"chunk {i} of a benchmark document" for i in ids],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIMENSIONS),
        "chunk_hash": chunk_hashes,
        "doc_hash": doc_hashes,
        "token_count": pa.array([8] * n, pa.int32()),
        "model_version": [MODEL] * n,
        "embedded_at": pa.array(stamps, pa.timestamp("us", tz="UTC")),
        "page": pa.nulls(n, pa.int32()),  # not a paged document
    }
    return pa.table(columns, schema=schema)


def source_fingerprint(docs: Docs) -> str:
    """What the change index holds for a shard of ``docs``."""
    return set_hash((doc_id, content_hash(f"{doc_id}:{revision}")) for doc_id, revision in docs.items())


def edit(shard: str, docs: Docs, rng: random.Random, serial: list[int]) -> Docs:
    """``docs`` with CHANGED of their rows changed: documents edited, removed and added."""
    touched = max(5, round(len(docs) * CHANGED))
    picked = rng.sample(sorted(docs), touched * 4 // 5)
    edited, removed = picked[: touched * 3 // 5], set(picked[touched * 3 // 5 :])
    after = {d: r + (d in edited) for d, r in docs.items() if d not in removed}
    for _ in range(touched - len(picked)):
        serial[0] += 1
        after[f"{shard}-new{serial[0]}"] = 1
    return after


def growth(loop: dict[str, float]) -> float:
    return round(loop["rss_peak_mb"] - loop["rss_start_mb"], 1)


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def timed(run: Callable[[], Any], repeats: int = REPEATS) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return median_ms(samples)


def reset_peak_rss() -> None:
    """Linux: restart the process's peak-RSS counter (VmHWM) from its current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    raise LookupError(field)


def legacy_write(table: Any, shard: str, rows: pa.Table) -> Any:
    """The write this release replaced: one merge_insert whose by-source delete joins the whole table."""
    return (
        table.merge_insert("chunk_id")
        .when_matched_update_all(where=" OR ".join(f"target.{c} != source.{c}" for c in CHANGE_COLUMNS))
        .when_not_matched_insert_all()
        .when_not_matched_by_source_delete(f"shard = {sql_string(shard)}")
        .execute(rows.cast(table.schema))
    )


def write_loop(
    store: VectorStore, shards: list[str], docs: dict[str, Docs], fingerprints: dict[str, str], seed: int
) -> dict[str, Any]:
    """One 10%-changed write of each of ``shards``: p50 time, peak RSS above the loop's start."""
    rng, vectors, serial = random.Random(seed), np.random.default_rng(seed), [0]
    samples, changed = [], []
    reset_peak_rss()
    start_rss = rss_mb("VmRSS")
    for shard in shards:
        after = edit(shard, docs[shard], rng, serial)
        rows = make_rows(shard, after, vectors)
        started = time.perf_counter()
        write = store.replace_shard(shard, rows)
        samples.append(time.perf_counter() - started)
        changed.append(write.inserted + write.updated + write.deleted)
        docs[shard], fingerprints[shard] = after, source_fingerprint(after)
    return {
        "write_ms": median_ms(samples),
        "changed_rows": round(statistics.median(changed)),
        "shard_rows": rows.num_rows,
        "rss_start_mb": start_rss,
        "rss_peak_mb": rss_mb("VmHWM"),
    }


def measure(size: int, root: Path) -> dict[str, Any]:
    """Every figure at one table size (built under ``root``)."""
    from lancedb.index import Bitmap, BTree

    log = lambda message: print(f"[{size:,}] {message}", file=sys.stderr, flush=True)  # noqa: E731
    store = VectorStore(str(root / "lancedb"))
    keys = shard_keys(SHARDS)
    sizes = shard_sizes(size)
    docs = {k: {f"{k}-doc{i}": 0 for i in range(sizes[k] // CHUNKS_PER_DOC)} for k in keys}
    vectors = np.random.default_rng(0)

    started = time.perf_counter()
    table = store.open_for_write(row_schema(DIMENSIONS, model_version=MODEL, shard_count=SHARDS))
    pending: list[pa.Table] = []
    for shard in keys:  # bulk adds, then the indexes trained over every row
        pending.append(make_rows(shard, docs[shard], vectors))
        if sum(t.num_rows for t in pending) >= BUILD_BATCH_ROWS or shard == keys[-1]:
            table.add(pa.concat_tables(pending))
            pending = []
    for column, kind in SCALAR_INDEXES.items():
        table.create_index(column, config=BTree() if kind == "BTREE" else Bitmap(), replace=True)
    # Rows added behind the store's back: as on a table of an older release, no shard state is recorded.
    store.db.open_table(state_table_name(MODEL)).delete("true")
    build_s = round(time.perf_counter() - started, 1)
    log(f"built {table.count_rows():,} rows in {build_s} s")

    fingerprints = {k: source_fingerprint(d) for k, d in docs.items()}
    started = time.perf_counter()
    assert stale_shards(fingerprints, store, MODEL) == []  # computes and records every shard's state
    first_stale_ms = round((time.perf_counter() - started) * 1000, 1)
    stale_ms = timed(lambda: stale_shards(fingerprints, store, MODEL), 3 * REPEATS)

    fixed, typical = keys[0], keys[FIXED_SHARDS]
    key_columns = ["chunk_id", *CHANGE_COLUMNS]
    read_fixed_ms = timed(lambda: store.shard_rows(MODEL, fixed, key_columns))
    read_typical_ms = timed(lambda: store.shard_rows(MODEL, typical, key_columns))
    read_vectors_ms = timed(lambda: store.shard_rows(MODEL, typical, ["chunk_hash", "embedded_at", "vector"]))
    log("writing")

    fixed_loop = write_loop(store, list(keys[1 : 1 + WRITES]), docs, fingerprints, seed=1)
    typical_loop = write_loop(store, list(keys[FIXED_SHARDS + 1 : FIXED_SHARDS + 1 + WRITES]), docs, fingerprints, 2)
    stale_after_ms = timed(lambda: stale_shards(fingerprints, store, MODEL), 3 * REPEATS)
    assert stale_shards(fingerprints, store, MODEL) == []
    unindexed = table.index_stats("shard_idx").num_unindexed_rows
    read_after_ms = timed(lambda: store.shard_rows(MODEL, fixed, key_columns))
    log("legacy writes")

    legacy = []
    rng, serial = random.Random(3), [0]
    for shard in keys[1 + WRITES : 1 + WRITES + LEGACY_WRITES]:
        rows = make_rows(shard, edit(shard, docs[shard], rng, serial), vectors)
        started = time.perf_counter()
        legacy_write(store.table(MODEL), shard, rows)
        legacy.append(time.perf_counter() - started)
    log("compacting")
    started = time.perf_counter()
    store.compact(MODEL, min_small_fragments=1)
    compact_s = round(time.perf_counter() - started, 1)
    read_compacted_ms = timed(lambda: store.shard_rows(MODEL, fixed, key_columns))
    return {
        "rows": size,
        "build_s": build_s,
        "first_stale_ms": first_stale_ms,
        "stale_ms": stale_ms,
        "stale_after_writes_ms": stale_after_ms,
        "read_fixed_ms": read_fixed_ms,
        "read_typical_ms": read_typical_ms,
        "read_vectors_ms": read_vectors_ms,
        "read_after_writes_ms": read_after_ms,
        "unindexed_rows": unindexed,
        "fixed": fixed_loop,
        "typical": typical_loop,
        "legacy_write_ms": median_ms(legacy),
        "compact_s": compact_s,
        "read_compacted_ms": read_compacted_ms,
    }


def ratio(small: float, large: float) -> str:
    return f"{large / small:.2f}x" if small else "-"


def report(small: dict[str, Any], large: dict[str, Any]) -> str:
    a, b = f"{small['rows']:,} rows", f"{large['rows']:,} rows"
    typical = f"{small['typical']['shard_rows']:,} / {large['typical']['shard_rows']:,} rows"
    unindexed = f"{small['unindexed_rows']:,} / {large['unindexed_rows']:,} unindexed rows"

    def both(name: str, unit: str, figure: Callable[[dict[str, Any]], float]) -> tuple[str, float, float, str]:
        return name, figure(small), figure(large), unit

    rows = [
        both("shard write, 3,125-row shard, 10% changed (p50 of 10)", "ms", lambda r: r["fixed"]["write_ms"]),
        both(
            f"shard write, a typical shard ({typical}), 10% changed (p50 of 10)",
            "ms",
            lambda r: r["typical"]["write_ms"],
        ),
        both("the replaced single merge_insert with by-source delete (p50 of 3)", "ms", lambda r: r["legacy_write_ms"]),
        both("stale detection, all 64 shards (median of 30)", "ms", lambda r: r["stale_ms"]),
        both("stale detection after the 20 writes (median of 30)", "ms", lambda r: r["stale_after_writes_ms"]),
        both("first stale detection on a table with no states (64 shard reads)", "ms", lambda r: r["first_stale_ms"]),
        both("shard read, keys and change columns, 3,125-row shard", "ms", lambda r: r["read_fixed_ms"]),
        both("shard read, keys and change columns, typical shard", "ms", lambda r: r["read_typical_ms"]),
        both("shard read with vectors, typical shard", "ms", lambda r: r["read_vectors_ms"]),
        both(f"shard read, 3,125-row shard, after the writes ({unindexed})", "ms", lambda r: r["read_after_writes_ms"]),
        both("shard read, 3,125-row shard, after compact()", "ms", lambda r: r["read_compacted_ms"]),
        both("compact() after the writes (compaction, then indexes)", "s", lambda r: r["compact_s"]),
        both("peak RSS, write loop of 3,125-row shards", "MB", lambda r: r["fixed"]["rss_peak_mb"]),
        both("... above the RSS at the loop's start", "MB", lambda r: growth(r["fixed"])),
        both("peak RSS, write loop of typical shards", "MB", lambda r: r["typical"]["rss_peak_mb"]),
        both("... above the RSS at the loop's start", "MB", lambda r: growth(r["typical"])),
    ]
    lines = [
        "# The vector table at 2x10^5 and 2x10^6 rows",
        "",
        f"64 shards, random unit vectors ({DIMENSIONS} dimensions, no model), {CHUNKS_PER_DOC} chunks per document, "
        "on local disk; written by `benchmarks/store_scale.py`. Shards s000-s009 hold 3,125 rows at both sizes, so "
        "their figures isolate the table's size; the others share the rest. A 10% change is 60% of those rows "
        "updated, 20% deleted and 20% inserted (whole documents). A write is `VectorStore.replace_shard`: the "
        "shard's keys read, the diff, its state marked pending, the upsert, the delete, its state recorded.",
        "",
        f"| | {a} | {b} | ratio |",
        "|---|---|---|---|",
        *(f"| {name} | {x:,} {unit} | {y:,} {unit} | {ratio(x, y)} |" for name, x, y, unit in rows),
        "",
        f"Build (bulk add, then indexes): {small['build_s']} s and {large['build_s']} s. Peak RSS is the process's "
        "high-water mark during a loop (VmHWM, reset at its start); the RSS at the start includes the benchmark's "
        "own record of every document, which grows with the table, so the rise above it is the write loop's.",
        "",
        "- Stale detection reads the state table (a row per shard) and no row of the vector table; the first one "
        "on a table without states reads each shard once, by the `shard` index, and records its state.",
        "- Rows written since the last `optimize` are in no scalar index: the filtered read and the upsert's join "
        "scan them, so a write slows as they pile up until `compact()` folds them in (its trigger is 64 small "
        "fragments, one per shard write). `compact()` also rewrites fragments, so it costs what the table holds.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if argv:
        with tempfile.TemporaryDirectory(prefix="store_scale_") as root:
            print(json.dumps(measure(int(argv[0]), Path(root))))
        return
    results = []
    for size in SIZES:
        done = subprocess.run([sys.executable, __file__, str(size)], check=True, capture_output=True, text=True)
        sys.stderr.write(done.stderr[-2000:])
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]))
    OUT.write_text(report(*results))
    print(OUT.read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
