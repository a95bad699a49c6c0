"""The vector (ANN) index on a real LanceDB table in a temporary folder, with random unit vectors."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from embedding_assets.core import ann, lance_upkeep
from embedding_assets.core.store import VectorStore, row_schema
from embedding_assets.vector_index import recall_result
from embedding_assets_tests.services import ObjectStore

MODEL = "toy:random@1/32d"
DIMENSIONS = 32
MIN_ROWS = 2_000  # EMBEDDING_ASSETS_ANN_MIN_ROWS for these tests: big enough to train, quick to build
WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def unit_vectors(count: int, rng: np.random.Generator, clusters: int = 40) -> np.ndarray:
    """Random unit vectors around ``clusters`` random directions (real embeddings cluster by topic)."""
    centers = rng.standard_normal((clusters, DIMENSIONS))
    vectors = centers[rng.integers(0, clusters, count)] + 0.5 * rng.standard_normal((count, DIMENSIONS))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def shard_rows(
    shard: str, start: int, count: int, rng: np.random.Generator, vectors: np.ndarray | None = None
) -> pa.Table:
    vectors = unit_vectors(count, rng) if vectors is None else vectors
    ids = [f"{shard}-{i}" for i in range(start, start + count)]
    return pa.table(
        {
            "chunk_id": ids,
            "doc_id": ids,
            "shard": [shard] * count,
            "position": [0] * count,
            "text": ids,
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIMENSIONS),
            "chunk_hash": ids,
            "doc_hash": ids,
            "token_count": [1] * count,
            "model_version": [MODEL] * count,
            "embedded_at": [WHEN] * count,
            "page": pa.nulls(count, pa.int32()),
        },
        schema=row_schema(DIMENSIONS, model_version=MODEL, shard_count=2),
    )


@pytest.fixture
def store(tmp_path: Path) -> VectorStore:
    return VectorStore(str(tmp_path / "lancedb"))


@pytest.mark.parametrize(
    ("rows", "dimensions", "kind", "partitions", "sub_vectors"),
    [
        (100_000, 384, "IVF_HNSW_SQ", 316, None),
        (1_000_000, 384, "IVF_HNSW_SQ", 1000, None),
        (40_000_000, 384, "IVF_PQ", 6325, 48),
        (40_000_000, 1536, "IVF_PQ", 6325, 192),
        (40_000_000, 100, "IVF_PQ", 6325, 10),
    ],
)
def test_plan_sizes_the_index_by_rows_and_dimensions(
    rows: int, dimensions: int, kind: str, partitions: int, sub_vectors: int | None
) -> None:
    planned = ann.plan(rows, dimensions)
    assert (planned.kind, planned.partitions, planned.sub_vectors) == (kind, partitions, sub_vectors)
    assert sub_vectors is None or dimensions % sub_vectors == 0


def trained(rows: int, indexed: int, unindexed: int) -> ann.IndexState:
    return ann.IndexState("vector_ann__ivf_hnsw_sq__p45__r2000", "IVF_HNSW_SQ", 45, rows, indexed, unindexed)


@pytest.mark.parametrize(
    ("rows", "current", "action"),
    [
        (1_999, None, "none"),
        (2_000, None, "build"),
        (2_000, trained(2_000, 2_000, 0), "none"),
        (2_300, trained(2_000, 2_000, 300), "optimize"),
        (4_000, trained(2_000, 2_000, 2_000), "retrain"),  # doubled since training
        (2_000, trained(2_000, 1_000, 1_000), "retrain"),  # half replaced, not added
    ],
)
def test_decide(rows: int, current: ann.IndexState | None, action: str) -> None:
    assert ann.decide(rows, current, MIN_ROWS)[0] == action


def test_the_index_is_built_at_the_threshold_and_not_below(store: VectorStore) -> None:
    rng = np.random.default_rng(1)
    store.replace_shard("s000", shard_rows("s000", 0, MIN_ROWS - 1, rng))
    below = store.maintain_vector_index(MODEL, MIN_ROWS)
    assert below is not None and below.action == "none" and store.vector_index(MODEL) is None
    query = unit_vectors(1, rng)[0]
    assert store.search(MODEL, query).schema.metadata[b"vector_index"] == b""
    store.replace_shard("s001", shard_rows("s001", 0, 1, rng))
    built = store.maintain_vector_index(MODEL, MIN_ROWS)
    assert built is not None and built.action == "built"
    state = store.vector_index(MODEL)
    assert state is not None and (state.kind, state.partitions, state.trained_rows) == ("IVF_HNSW_SQ", 45, 2_000)
    assert (state.indexed_rows, state.unindexed_rows) == (2_000, 0)
    hits = store.search(MODEL, query)
    assert hits.schema.metadata[b"vector_index"] == state.name.encode() and hits.num_rows == 10
    assert float(hits.schema.metadata[b"search_ms"]) > 0
    exact = store.table(MODEL).search(query).distance_type("cosine").bypass_vector_index().limit(MIN_ROWS)  # type: ignore[union-attr]
    cosine = dict(zip(*exact.select(["chunk_id", "_distance"]).to_arrow().to_pydict().values(), strict=True))
    scores = dict(zip(hits["chunk_id"].to_pylist(), hits["score"].to_pylist(), strict=True))
    assert scores == pytest.approx({c: 1 - cosine[c] for c in scores}, abs=1e-5)  # the same score, indexed or not
    assert store.maintain_vector_index(MODEL, MIN_ROWS).action == "none"  # type: ignore[union-attr]


def test_new_rows_are_folded_in_then_the_index_is_retrained(store: VectorStore) -> None:
    rng = np.random.default_rng(2)
    store.replace_shard("s000", shard_rows("s000", 0, MIN_ROWS, rng))
    store.maintain_vector_index(MODEL, MIN_ROWS)
    store.replace_shard("s001", shard_rows("s001", 0, 300, rng))  # a refresh adds rows
    assert store.vector_index(MODEL).unindexed_rows == 300  # type: ignore[union-attr]
    folded = store.maintain_vector_index(MODEL, MIN_ROWS)
    assert folded is not None and folded.action == "optimized"
    assert folded.state is not None and (folded.state.indexed_rows, folded.state.unindexed_rows) == (2_300, 0)
    assert folded.state.trained_rows == MIN_ROWS  # the same trained index, with the new rows in it
    assert lance_upkeep.segments(store.table(MODEL), folded.state.name) == 2  # the base, and a delta of the 300
    store.replace_shard("s001", shard_rows("s001", 0, 2_000, rng))  # the table doubled since training
    retrained = store.maintain_vector_index(MODEL, MIN_ROWS)
    assert retrained is not None and retrained.action == "retrained"
    assert retrained.state is not None and retrained.state.trained_rows == 4_000
    assert (retrained.state.partitions, retrained.state.unindexed_rows) == (63, 0)
    names = [i.name for i in store.table(MODEL).list_indices() if i.name.startswith(ann.INDEX_PREFIX)]  # type: ignore[union-attr]
    assert names == [retrained.state.name]  # the old index is dropped once the new one answers


def test_the_recall_check_passes_on_a_good_index(store: VectorStore) -> None:
    rng = np.random.default_rng(3)
    store.replace_shard("s000", shard_rows("s000", 0, MIN_ROWS, rng))
    store.maintain_vector_index(MODEL, MIN_ROWS)
    recall = store.ann_recall(MODEL, ann.RECALL_SAMPLE)
    assert recall is not None and recall.queries == ann.RECALL_SAMPLE and recall.unindexed_rows == 0
    result = recall_result(recall, MIN_ROWS)
    assert result.passed, result.description
    assert result.metadata["recall_at_10"].value >= ann.RECALL_WARN_BELOW
    assert result.metadata["unindexed_rows"].value == 0


def test_the_recall_check_warns_on_a_broken_index(store: VectorStore) -> None:
    """An IVF_PQ index with one code book for all 32 dimensions (256 codes for every vector), queried
    without refinement: PQ distances that coarse rank candidates almost at random. The store's own
    query refines 10 x k candidates by their exact vectors, which recovers it."""
    rng = np.random.default_rng(4)
    store.replace_shard("s000", shard_rows("s000", 0, MIN_ROWS, rng))
    broken = ann.IndexPlan("IVF_PQ", 45, 1, MIN_ROWS)
    store.table(MODEL).create_index(ann.COLUMN, config=broken.config(), name=broken.name)  # type: ignore[union-attr]
    assert store.vector_index(MODEL) == ann.IndexState(broken.name, "IVF_PQ", 45, MIN_ROWS, MIN_ROWS, 0)
    recall = store.ann_recall(MODEL, ann.RECALL_SAMPLE, nprobes=ann.MIN_NPROBES, refine_factor=1)
    assert recall is not None and recall.recall < 0.6
    result = recall_result(recall, MIN_ROWS)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["recall_at_10"].value == round(recall.recall, 4)
    assert result.metadata["unindexed_rows"].value == 0
    assert ann.query_options(store.vector_index(MODEL)) == {"nprobes": 20, "refine_factor": ann.PQ_REFINE_FACTOR}
    assert recall_result(store.ann_recall(MODEL, ann.RECALL_SAMPLE), MIN_ROWS).passed  # refined


def test_too_few_probes_warn_too(store: VectorStore) -> None:
    """A good index of unclustered vectors probed in 1 of its 45 partitions misses most neighbours."""
    rng = np.random.default_rng(5)
    store.replace_shard("s000", shard_rows("s000", 0, MIN_ROWS, rng, unit_vectors(MIN_ROWS, rng, clusters=MIN_ROWS)))
    store.maintain_vector_index(MODEL, MIN_ROWS)
    recall = store.ann_recall(MODEL, ann.RECALL_SAMPLE, nprobes=1)
    assert recall is not None and recall.recall < 0.5 and not recall_result(recall, MIN_ROWS).passed


def test_deltas_are_merged_past_a_few_and_compaction_leaves_the_index_alone(store: VectorStore) -> None:
    """Every fold-in adds a delta segment of its rows only; past MAX_DELTA_SEGMENTS they become one, and
    the base segment (trained on most rows) is never rewritten, by a fold-in or by compaction."""
    rng = np.random.default_rng(6)
    store.replace_shard("s000", shard_rows("s000", 0, MIN_ROWS, rng))
    name = store.maintain_vector_index(MODEL, MIN_ROWS).state.name  # type: ignore[union-attr]
    table = store.table(MODEL)
    counts = []
    for fold in range(lance_upkeep.MAX_DELTA_SEGMENTS + 1):
        store.replace_shard("s001", shard_rows("s001", 0, 10 * (fold + 1), rng))  # 10 rows more each time
        assert store.maintain_vector_index(MODEL, MIN_ROWS).action == "optimized"  # type: ignore[union-attr]
        counts.append(lance_upkeep.segments(table, name))
    assert counts == [*range(2, lance_upkeep.MAX_DELTA_SEGMENTS + 2), 2]
    assert store.compact(MODEL, min_small_fragments=2) is not None
    state = store.vector_index(MODEL)
    assert state is not None and state.name == name and lance_upkeep.segments(table, name) == 2
    assert (state.indexed_rows, state.unindexed_rows) == (MIN_ROWS + 90, 0)
    assert store.search(MODEL, unit_vectors(1, rng)[0]).num_rows == 10


def test_upkeep_works_on_object_storage(object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fold-in and compaction open the table through Lance with the connection's storage options
    (moto's S3 here), as LanceDB's own calls do."""
    for name, value in object_store.env().items():
        monkeypatch.setenv(name, value)
    rng = np.random.default_rng(7)
    store = VectorStore(object_store.create_bucket("ann-upkeep") + "/lancedb")
    store.replace_shard("s000", shard_rows("s000", 0, MIN_ROWS, rng))
    assert store.maintain_vector_index(MODEL, MIN_ROWS).action == "built"  # type: ignore[union-attr]
    store.replace_shard("s001", shard_rows("s001", 0, 20, rng))
    store.replace_shard("s001", shard_rows("s001", 0, 30, rng))
    folded = store.maintain_vector_index(MODEL, MIN_ROWS)
    assert folded is not None and folded.action == "optimized" and folded.state is not None
    assert lance_upkeep.segments(store.table(MODEL), folded.state.name) == 2
    assert store.compact(MODEL, min_small_fragments=2) is not None
    state = store.vector_index(MODEL)
    assert state is not None and (state.indexed_rows, state.unindexed_rows) == (MIN_ROWS + 30, 0)
