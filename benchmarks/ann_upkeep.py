"""The vector table's upkeep after a refresh, at two table sizes and one fixed change: does its cost follow
the change or the table?

For each size: a table of clustered unit vectors (384 dims) with the pipeline's scalar indexes, its vector
index built by ``ann.maintain``; then a refresh's 1,000 new rows folded in by ``ann.maintain`` (a delta
segment, ``core.lance_upkeep``), and 20 more such writes compacted by ``lance_upkeep.compact``. Last, at
the smaller size only, LanceDB's own ``table.optimize()`` folds in 1,000 more rows, for comparison (the
path the pipeline took before). Writes ``benchmarks/ann_upkeep.md``.

    .venv/bin/python benchmarks/ann_upkeep.py --rows 100000 400000
"""

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import Bitmap, BTree

from embedding_assets.core import ann, lance_upkeep

DIMENSIONS = 384
CHANGE = 1_000  # rows a refresh writes, the same at every size
WRITES_BEFORE_COMPACTION = 20
OUT = Path(__file__).with_name("ann_upkeep.md")
CENTERS = np.random.default_rng(1).standard_normal((300, DIMENSIONS))


def _rows(rng: np.random.Generator, start: int, count: int) -> pa.Table:
    """``count`` unit vectors around 300 directions (embeddings cluster by topic), with ids and shards."""
    vectors = CENTERS[rng.integers(0, len(CENTERS), count)] + 0.6 * rng.standard_normal((count, DIMENSIONS))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    ids = range(start, start + count)
    return pa.table(
        {
            "chunk_id": [f"c{i}" for i in ids],
            "shard": [f"s{i % 64:03d}" for i in ids],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIMENSIONS),
        }
    )


def _timed(work: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``work``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(rows: int, compare_optimize: bool) -> dict[str, Any]:
    rng = np.random.default_rng(rows)
    table = lancedb.connect(tempfile.mkdtemp()).create_table("t", _rows(rng, 0, rows))
    table.create_index("chunk_id", config=BTree())
    table.create_index("shard", config=Bitmap())
    figures: dict[str, Any] = {"rows": rows, "load_before": os.getloadavg()[0]}
    figures["build"] = _timed(lambda: ann.maintain(table, DIMENSIONS, min_rows=1))
    written = rows
    table.add(_rows(rng, written, CHANGE))
    written += CHANGE
    figures["fold_in"] = _timed(lambda: ann.maintain(table, DIMENSIONS, min_rows=1))
    for _ in range(WRITES_BEFORE_COMPACTION):
        table.add(_rows(rng, written, CHANGE))
        written += CHANGE
    scalar = [i.name for i in table.list_indices() if i.name != ann.state(table).name]  # type: ignore[union-attr]
    figures["compact"] = _timed(lambda: lance_upkeep.compact(table, scalar))
    state = ann.state(table)
    figures["unindexed_after"] = state.unindexed_rows if state else None
    if compare_optimize:  # last: LanceDB's optimize() also compacts, which would change what follows
        table.add(_rows(rng, written, CHANGE))
        figures["lancedb_optimize"] = _timed(lambda: table.optimize(cleanup_older_than=timedelta(days=7)))
    figures["load_after"] = os.getloadavg()[0]
    print(figures, flush=True)
    return figures


def report(results: list[dict[str, Any]]) -> str:
    small, large = results[0], results[-1]

    def cell(figure: dict[str, Any], name: str) -> str:
        if name not in figure:
            return "not run"
        wall, cpu = figure[name]
        return f"{wall:.2f} s ({cpu:.2f} s CPU)"

    def ratio(name: str) -> str:
        return f"{large[name][0] / small[name][0]:.2f}x" if name in small and name in large else ""

    lines = [
        ("index build (`ann.maintain`, first)", "build"),
        (f"fold-in of {CHANGE:,} rows (`ann.maintain`: a delta segment)", "fold_in"),
        (f"compaction after {WRITES_BEFORE_COMPACTION} writes of {CHANGE:,} rows (`lance_upkeep.compact`)", "compact"),
        (f"LanceDB `optimize()` folding in {CHANGE:,} rows (the old path)", "lancedb_optimize"),
    ]
    head = f"| step | {small['rows']:,} rows | {large['rows']:,} rows | ratio |\n|---|---|---|---|\n"
    body = "\n".join(f"| {label} | {cell(small, n)} | {cell(large, n)} | {ratio(n)} |" for label, n in lines)
    loads = ", ".join(f"{r['rows']:,} rows: {r['load_before']:.1f} -> {r['load_after']:.1f}" for r in results)
    return (
        f"# Vector table upkeep: cost against table size, one fixed change\n\n"
        f"Clustered unit vectors, {DIMENSIONS} dims, IVF_HNSW_SQ as `ann.plan` sizes it, BTREE on `chunk_id` "
        f"and BITMAP on `shard`; one run of `benchmarks/ann_upkeep.py` on this 2-core machine "
        f"({time.strftime('%Y-%m-%d')}; "
        f"1-minute load average before -> after: {loads}). A ratio near 1 means the step's cost follows the change; "
        f"near {large['rows'] / small['rows']:.0f} means it follows the table.\n\n{head}{body}\n\n"
        f"Unindexed rows after compaction (written after the fold-in, indexed by the next): "
        f"{small['unindexed_after']:,} and {large['unindexed_after']:,}.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs=2, default=[100_000, 400_000])
    args = parser.parse_args()
    results = [measure(rows, compare_optimize=i == 0) for i, rows in enumerate(sorted(args.rows))]
    OUT.write_text(report(results))
    print(OUT.read_text())


if __name__ == "__main__":
    main()
