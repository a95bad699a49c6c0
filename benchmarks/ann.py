"""The pipeline's ANN index at scale: build time, recall@10 and query latency, exact vs indexed.

Random unit vectors (the worst case for an IVF index: no clusters to find) in a table with the
pipeline's id column, indexed by ``core.ann.maintain`` exactly as the ``vector_index`` asset does,
then 1% more rows folded in by a second ``maintain``. Writes ``benchmarks/ann.md``.

    .venv/bin/python benchmarks/ann.py --rows 1000000
"""

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa

from embedding_assets.core import ann

BATCH = 100_000
OUT = Path(__file__).with_name("ann.md")
STARTED = time.perf_counter()


def log(message: str) -> None:
    """A progress line with the wall clock, the seconds since start and the load average (shared machine)."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"[{time.strftime('%H:%M:%S')} +{time.perf_counter() - STARTED:6.0f} s, load {load}] {message}", flush=True)


def _batch(rng: np.random.Generator, start: int, count: int, dimensions: int) -> pa.Table:
    vectors = rng.standard_normal((count, dimensions), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    flat = pa.array(vectors.ravel(), pa.float32())
    return pa.table(
        {
            "chunk_id": pa.array([f"c{i}" for i in range(start, start + count)]),
            "vector": pa.FixedSizeListArray.from_arrays(flat, dimensions),
        }
    )


def _probe_sweep(table: Any, queries: np.ndarray, partitions: int) -> list[tuple[int, float, float, float]]:
    """(nprobes, recall@10, p50 ms, p95 ms) at a few probe counts, against one exact pass."""
    exact = [
        set(
            ann.vector_query(table, q, 10, exact=True)
            .select(["chunk_id", "_distance"])
            .to_arrow()
            .column("chunk_id")
            .to_pylist()
        )
        for q in queries
    ]
    rows = []
    for nprobes in sorted({ann.MIN_NPROBES, *(max(1, round(partitions * f)) for f in (0.05, 0.1, 0.25))}):
        found, times = [], []
        for q, truth in zip(queries, exact, strict=True):
            query = ann.vector_query(table, q, 10, nprobes=nprobes).select(["chunk_id", "_distance"])
            started = time.perf_counter()
            hits = set(query.to_arrow().column("chunk_id").to_pylist())
            times.append((time.perf_counter() - started) * 1000)
            found.append(len(hits & truth) / len(truth))
        p50, p95 = np.percentile(times, [50, 95])
        rows.append((nprobes, float(np.mean(found)), float(p50), float(p95)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dimensions", type=int, default=384)
    parser.add_argument("--queries", type=int, default=ann.RECALL_SAMPLE)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    log(f"{args.rows:,} rows x {args.dimensions} dims, {args.queries} queries")
    with tempfile.TemporaryDirectory() as folder:
        table = lancedb.connect(folder).create_table("chunks", _batch(rng, 0, min(BATCH, args.rows), args.dimensions))
        for start in range(BATCH, args.rows, BATCH):
            table.add(_batch(rng, start, min(BATCH, args.rows - start), args.dimensions))
            log(f"  {min(start + BATCH, args.rows):,} rows written")
        table.optimize()  # the pipeline's tables are compacted before they are this big
        log("table compacted; building the index (maintain) ...")
        built = ann.maintain(table, args.dimensions, min_rows=1)
        assert built.state is not None
        log(f"built {built.state.name} in {built.seconds:.1f} s; measuring recall ...")
        queries = ann.sample_vectors(table, args.queries, rng)
        recall = ann.measure_recall(table, queries)
        log(
            f"recall@10 {recall.recall:.3f}, exact p50/p95 {recall.exact_ms} ms, indexed p50/p95 {recall.indexed_ms} ms"
        )
        sweep = _probe_sweep(table, queries, built.state.partitions)
        log("probe sweep: " + "; ".join(f"nprobes {n}: {r:.3f}, p50/p95 {a:.1f}/{b:.1f} ms" for n, r, a, b in sweep))
        extra = max(1, args.rows // 100)
        table.add(_batch(rng, args.rows, extra, args.dimensions))
        before = ann.state(table)
        log(f"+{extra:,} rows added; folding them in (maintain) ...")
        folded = ann.maintain(table, args.dimensions, min_rows=1)
        log(f"maintain: {folded.action} in {folded.seconds:.1f} s; recall again ...")
        after = ann.measure_recall(table, queries)
        log(f"after the fold-in: recall@10 {after.recall:.3f}, indexed p50 {after.indexed_ms[0]} ms")
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    options = ", ".join(f"{k}={v}" for k, v in ann.query_options(built.state).items())
    lines = [
        f"# ANN index at {args.rows:,} rows x {args.dimensions} dims",
        "",
        f"Random unit vectors, cosine, {recall.queries} query vectors sampled from the table, top-10; "
        f"measured {time.strftime('%Y-%m-%d')} on this 2-core machine, shared with other engineers' tests, "
        f"the process pinned to one core (`taskset -c 1 python benchmarks/ann.py --rows {args.rows}`); load "
        f"average (1/5/15 min) {load_before} before, {load_after} after; {time.perf_counter() - STARTED:.0f} s "
        "end to end.",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| index | {built.state.kind}, {built.state.partitions} partitions (`{built.state.name}`) |",
        f"| build (`maintain`, first index) | {built.seconds:.1f} s |",
        f"| query options | {options} |",
        f"| recall@10 vs exact | {recall.recall:.3f} |",
        f"| exact query p50 / p95 | {recall.exact_ms[0]:.1f} / {recall.exact_ms[1]:.1f} ms |",
        f"| indexed query p50 / p95 | {recall.indexed_ms[0]:.1f} / {recall.indexed_ms[1]:.1f} ms |",
        f"| +{extra:,} rows: unindexed before `maintain` | {before.unindexed_rows if before else '?'} |",
        f"| +{extra:,} rows: `maintain` ({folded.action}) | {folded.seconds:.1f} s, "
        f"{folded.state.unindexed_rows if folded.state else '?'} unindexed after |",
        f"| after the fold-in: recall@10, indexed p50 / p95 | {after.recall:.3f}, "
        f"{after.indexed_ms[0]:.1f} / {after.indexed_ms[1]:.1f} ms |",
        "",
        "Recall and indexed latency by partitions probed (the same queries, one exact pass):",
        "",
        "| nprobes | recall@10 | p50 ms | p95 ms |",
        "| --- | --- | --- | --- |",
        *(f"| {n} | {r:.3f} | {p50:.1f} | {p95:.1f} |" for n, r, p50, p95 in sweep),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
