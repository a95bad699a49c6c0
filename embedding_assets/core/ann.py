"""The table's vector (ANN) index: when it is built, its kind and size, how it is kept fresh, and its recall.

A table gets a vector index once it holds ``min_rows`` rows (EMBEDDING_ASSETS_ANN_MIN_ROWS); below that
an exact scan is cheap enough (p50 147 ms at 50k x 384 on a busy 2-core machine, 6 ms indexed, so the
scan grows with the table and the index does not). After refreshes, ``maintain`` folds the rows
written since into the index as a delta segment over those rows only (``lance_upkeep``: the trained
partitions and quantizer, no retraining, a cost that follows the new rows), and retrains (a new index,
then the old one dropped, so searches use one or the other throughout) when the table has grown past
``RETRAIN_GROWTH`` times the rows it was trained on, or when more than ``RETRAIN_UNINDEXED_FRACTION``
of the rows are unindexed.

Unindexed rows are LanceDB's own count, ``list_indices()[...].num_unindexed_rows`` (the same figure as
``index_stats(name).num_unindexed_rows``): rows in fragments the index does not cover yet. Searches
scan them exactly, so they cost latency, not recall. The rows an index was trained on, and its
partition count, are in its name (``vector_ann__ivf_hnsw_sq__p316__r100000``), so they travel with the
table and need no bookkeeping of their own.
"""

import math
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from embedding_assets.core import lance_upkeep

COLUMN = "vector"
INDEX_PREFIX = "vector_ann"
DISTANCE: Literal["cosine"] = "cosine"  # what every search of the pipeline asks for
ID_COLUMN = "chunk_id"
IndexKind = Literal["IVF_HNSW_SQ", "IVF_PQ"]
# Retrain once the table holds twice the rows the partitions were sized for: each partition then holds
# twice its planned rows, so a query at the same nprobes scans twice as much.
RETRAIN_GROWTH = 2.0
# Retrain when this share of the rows is still unindexed after ``optimize`` (it failed, or a concurrent
# writer kept adding); and before it when rows were mostly replaced, not added (the centroids were
# trained on vectors that are mostly gone).
RETRAIN_UNINDEXED_FRACTION = 0.3
# IVF_HNSW_SQ keeps 1 byte per dimension per row (384 MB at 10^6 x 384) and answers with high recall at
# few probes; beyond this many rows the index is IVF_PQ (one byte per 8 dimensions), refined exactly.
HNSW_MAX_ROWS = 10_000_000
PQ_SUB_VECTOR_DIMS = (8, 16)  # dimensions per PQ sub-vector, in order of preference (SIMD-friendly)
PQ_REFINE_FACTOR = 10  # PQ distances are coarse: re-rank 10 x k candidates by their exact vectors
# IVF_HNSW_SQ answers with its own distance (squared L2 of the quantized unit vectors, about twice the
# cosine distance): re-ranking the k hits by their exact vectors gives cosine distances, so a score
# means the same on an indexed table as on a scanned one, at the cost of reading k vectors.
HNSW_REFINE_FACTOR = 1
# Partitions probed per query: a share of the partitions, never fewer than LanceDB's default of 20.
NPROBES_FRACTION = 0.05
MIN_NPROBES = 20
RECALL_SAMPLE = 50
RECALL_K = 10
RECALL_WARN_BELOW = 0.95
_NAME = re.compile(rf"^{INDEX_PREFIX}__(?P<kind>[a-z_]+)__p(?P<partitions>\d+)__r(?P<rows>\d+)$")


@dataclass(frozen=True)
class IndexPlan:
    """The index to train for a table of ``rows`` vectors."""

    kind: IndexKind
    partitions: int
    sub_vectors: int | None  # IVF_PQ only
    rows: int

    @property
    def name(self) -> str:
        return f"{INDEX_PREFIX}__{self.kind.lower()}__p{self.partitions}__r{self.rows}"

    def config(self) -> Any:
        from lancedb.index import HnswSq, IvfPq

        if self.kind == "IVF_PQ":
            return IvfPq(distance_type=DISTANCE, num_partitions=self.partitions, num_sub_vectors=self.sub_vectors)
        return HnswSq(distance_type=DISTANCE, num_partitions=self.partitions)


@dataclass(frozen=True)
class IndexState:
    """The vector index a table has now."""

    name: str
    kind: IndexKind
    partitions: int
    trained_rows: int
    indexed_rows: int
    unindexed_rows: int

    @property
    def unindexed_fraction(self) -> float:
        total = self.indexed_rows + self.unindexed_rows
        return self.unindexed_rows / total if total else 0.0


@dataclass(frozen=True)
class Maintained:
    """What ``maintain`` did: ``action`` is none, built, optimized or retrained."""

    action: str
    rows: int
    state: IndexState | None
    seconds: float
    reason: str


@dataclass(frozen=True)
class Recall:
    recall: float  # mean recall@k of the indexed search against exact search
    queries: int
    unindexed_rows: int
    exact_ms: tuple[float, float]  # p50, p95
    indexed_ms: tuple[float, float]


def plan(rows: int, dimensions: int) -> IndexPlan:
    """Partitions ≈ sqrt(rows), so a partition holds about as many rows as there are partitions, and
    a probe's scan and the centroid search cost alike; PQ sub-vectors of 8 (else 16) dimensions."""
    partitions = max(1, round(math.sqrt(rows)))
    if rows <= HNSW_MAX_ROWS:
        return IndexPlan("IVF_HNSW_SQ", partitions, None, rows)
    return IndexPlan("IVF_PQ", partitions, sub_vectors(dimensions), rows)


def sub_vectors(dimensions: int) -> int:
    """PQ sub-vectors for ``dimensions``: a divisor of it, each of 8 or 16 dimensions where possible."""
    for width in PQ_SUB_VECTOR_DIMS:
        if dimensions % width == 0:
            return dimensions // width
    return max(d for d in range(1, dimensions // 8 + 1) if dimensions % d == 0)


def state(table: Any) -> IndexState | None:
    """The table's vector index made by ``maintain`` (the newest, if a retrain left two), or None."""
    found = []
    for index in table.list_indices():
        match = _NAME.match(index.name)
        if match and COLUMN in index.columns:
            found.append(
                IndexState(
                    index.name,
                    "IVF_PQ" if match["kind"] == "ivf_pq" else "IVF_HNSW_SQ",
                    int(match["partitions"]),
                    int(match["rows"]),
                    int(index.num_indexed_rows or 0),
                    int(index.num_unindexed_rows or 0),
                )
            )
    return max(found, key=lambda s: s.trained_rows, default=None)


def decide(rows: int, current: IndexState | None, min_rows: int) -> tuple[str, str]:
    """(action, reason) for a table of ``rows`` rows whose index is ``current``."""
    if current is None:
        if rows < min_rows:
            return "none", f"{rows} rows, below the {min_rows} that get an index"
        return "build", f"{rows} rows reached the threshold of {min_rows}"
    if rows >= RETRAIN_GROWTH * current.trained_rows:
        return "retrain", f"{rows} rows, {rows / current.trained_rows:.1f}x the {current.trained_rows} trained on"
    if current.unindexed_fraction > RETRAIN_UNINDEXED_FRACTION:
        return "retrain", f"{current.unindexed_fraction:.0%} of the rows are unindexed"
    if current.unindexed_rows:
        return "optimize", f"{current.unindexed_rows} rows written since the index was last updated"
    return "none", "the index covers every row"


def maintain(table: Any, dimensions: int, min_rows: int) -> Maintained:
    """Build, fold new rows into, or retrain ``table``'s vector index, as ``decide`` says."""
    rows = table.count_rows()
    current = state(table)
    action, reason = decide(rows, current, min_rows)
    started = time.perf_counter()
    if action == "optimize" and current is not None:
        lance_upkeep.fold_into_vector_index(table, current.name)
        current = state(table)
        if current is not None and current.unindexed_fraction > RETRAIN_UNINDEXED_FRACTION:
            action, reason = "retrain", f"{current.unindexed_fraction:.0%} still unindexed after the fold-in"
        else:
            return Maintained("optimized", rows, current, time.perf_counter() - started, reason)
    if action in ("build", "retrain"):
        target = plan(rows, dimensions)
        table.create_index(COLUMN, config=target.config(), name=target.name, replace=True)
        for index in table.list_indices():
            if index.name != target.name and _NAME.match(index.name):
                table.drop_index(index.name)
        done = "built" if action == "build" else "retrained"
        return Maintained(done, rows, state(table), time.perf_counter() - started, reason)
    return Maintained("none", rows, current, 0.0, reason)


def query_options(current: IndexState | None) -> dict[str, int]:
    """nprobes and refine_factor for a search of a table whose index is ``current``."""
    if current is None:
        return {}
    return {
        "nprobes": max(MIN_NPROBES, math.ceil(current.partitions * NPROBES_FRACTION)),
        "refine_factor": PQ_REFINE_FACTOR if current.kind == "IVF_PQ" else HNSW_REFINE_FACTOR,
    }


def vector_query(table: Any, vector: np.ndarray, k: int, *, exact: bool = False, **options: int) -> Any:
    """A cosine top-``k`` query on ``table``: through its index (with ``query_options`` unless
    ``options`` are given), or an exact scan."""
    query = table.search(vector.astype(np.float32)).distance_type(DISTANCE).limit(k)
    if exact:
        return query.bypass_vector_index()
    for option, value in (options or query_options(state(table))).items():
        query = getattr(query, option)(value)
    return query


def sample_vectors(table: Any, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` stored vectors at random offsets (read by offset, never the whole column)."""
    rows = table.count_rows()
    offsets = sorted(rng.choice(rows, size=min(count, rows), replace=False).tolist())
    picked = table.take_offsets(offsets).select([COLUMN]).to_arrow()
    return np.array(picked.column(COLUMN).to_pylist(), dtype=np.float32)


def measure_recall(
    table: Any,
    queries: Sequence[np.ndarray] | np.ndarray,
    k: int = RECALL_K,
    **options: int,
) -> Recall:
    """Recall@``k`` of the indexed search against exact search for ``queries``, with the latency of each."""
    found: list[float] = []
    exact_ms: list[float] = []
    indexed_ms: list[float] = []
    for vector in queries:
        hits = {}
        for exact, times in ((True, exact_ms), (False, indexed_ms)):
            query = vector_query(table, np.asarray(vector), k, exact=exact, **options).select([ID_COLUMN, "_distance"])
            started = time.perf_counter()
            hits[exact] = set(query.to_arrow().column(ID_COLUMN).to_pylist())
            times.append((time.perf_counter() - started) * 1000)
        found.append(len(hits[True] & hits[False]) / max(1, len(hits[True])))
    current = state(table)
    return Recall(
        statistics.mean(found) if found else 1.0,
        len(found),
        current.unindexed_rows if current else table.count_rows(),
        _percentiles(exact_ms),
        _percentiles(indexed_ms),
    )


def _percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    p50, p95 = np.percentile(values, [50, 95])
    return round(float(p50), 2), round(float(p95), 2)
