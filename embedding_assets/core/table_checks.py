"""Integrity checks of one shard of the vector table, as plain data the Dagster checks report."""

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embedding_assets.core.shards import shard_of
from embedding_assets.core.store import TableInfo

VECTOR_TABLE_INTEGRITY = "vector_table_integrity"
INTEGRITY_COLUMNS = ("chunk_id", "doc_id", "model_version", "vector")  # what check_shard reads
INTEGRITY_PARTS = (
    "vector_dimension_matches_model",
    "vectors_are_valid",
    "chunk_ids_unique",
    "single_model_version",
    "row_count_matches_chunks",
)


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def check_shard(
    shard: str,
    rows: pa.Table | None,
    info: TableInfo | None,
    *,
    model_version: str,
    dimensions: int,
    expected_chunk_ids: list[str],
) -> CheckOutcome:
    """The shard's integrity: passed when every one of ``INTEGRITY_PARTS`` passes. The description names
    the parts that failed; the metadata holds every part's verdict and figures. (One result rather than
    five per shard, because every check result is an event the Dagster instance stores.) ``rows`` need
    only ``INTEGRITY_COLUMNS``; None, like a missing ``info``, means the model has no table yet."""
    if rows is None or info is None:
        return CheckOutcome(
            VECTOR_TABLE_INTEGRITY, False, f"no vector table for {model_version}; materialize vector_table first"
        )
    parts = [
        _dimension(info, dimensions),
        _valid_vectors(rows),
        _unique_ids(shard, rows, info.shard_count),
        _single_model(rows, info, model_version),
        _row_count(rows, expected_chunk_ids),
    ]
    failed = [p for p in parts if not p.passed]
    description = (
        "; ".join(f"{p.name}: {p.description}" for p in failed)
        if failed
        else f"{rows.num_rows} rows pass: " + ", ".join(p.name for p in parts)
    )
    metadata = {p.name: p.passed for p in parts} | {k: v for p in parts for k, v in p.metadata.items()}
    return CheckOutcome(VECTOR_TABLE_INTEGRITY, not failed, description, metadata)


def _dimension(info: TableInfo, dimensions: int) -> CheckOutcome:
    passed = info.dimensions == dimensions
    return CheckOutcome(
        "vector_dimension_matches_model",
        passed,
        f"table vectors have {info.dimensions} dimensions, the model {dimensions}",
        {"table_dimensions": info.dimensions, "model_dimensions": dimensions},
    )


def _valid_vectors(rows: pa.Table) -> CheckOutcome:
    dimensions = rows.schema.field("vector").type.list_size  # the stored width, whatever the model says
    vectors = rows.column("vector")
    nulls = vectors.null_count
    valid = vectors.drop_null()
    matrix = (
        (
            np.asarray(pc.list_flatten(valid).to_numpy(zero_copy_only=False), dtype=np.float32).reshape(
                len(valid), dimensions
            )
        )
        if len(valid)
        else np.zeros((0, dimensions), dtype=np.float32)
    )
    nan_rows = int(np.isnan(matrix).any(axis=1).sum())
    zero_rows = int((np.abs(matrix).sum(axis=1) == 0).sum())
    bad = nulls + nan_rows + zero_rows
    return CheckOutcome(
        "vectors_are_valid",
        bad == 0,
        f"{nulls} null, {nan_rows} NaN and {zero_rows} all-zero vectors in {rows.num_rows} rows",
        {"null_vectors": nulls, "nan_vectors": nan_rows, "zero_vectors": zero_rows},
    )


def _unique_ids(shard: str, rows: pa.Table, shard_count: int) -> CheckOutcome:
    ids = rows.column("chunk_id")
    duplicates = rows.num_rows - len(pc.unique(ids))
    misplaced = sum(1 for d in rows.column("doc_id").to_pylist() if shard_of(d, shard_count) != shard)
    return CheckOutcome(
        "chunk_ids_unique",
        duplicates == 0 and misplaced == 0,
        f"{duplicates} duplicate chunk ids; {misplaced} rows whose document belongs to another shard",
        {"duplicate_chunk_ids": duplicates, "rows_in_wrong_shard": misplaced},
    )


def _single_model(rows: pa.Table, info: TableInfo, model_version: str) -> CheckOutcome:
    found = sorted(set(rows.column("model_version").to_pylist()) | {info.model_version})
    passed = found == [model_version]
    return CheckOutcome(
        "single_model_version",
        passed,
        f"model versions found: {', '.join(found)}; expected {model_version}",
        {"model_versions": ", ".join(found)},
    )


def _row_count(rows: pa.Table, expected_chunk_ids: list[str]) -> CheckOutcome:
    stored = set(rows.column("chunk_id").to_pylist())
    expected = set(expected_chunk_ids)
    missing, extra = sorted(expected - stored), sorted(stored - expected)
    passed = not missing and not extra and rows.num_rows == len(expected_chunk_ids)
    return CheckOutcome(
        "row_count_matches_chunks",
        passed,
        f"{rows.num_rows} rows stored for {len(expected_chunk_ids)} chunks"
        + (f"; missing {missing[:5]}" if missing else "")
        + (f"; extra {extra[:5]}" if extra else ""),
        {
            "rows": rows.num_rows,
            "chunks": len(expected_chunk_ids),
            "missing_rows": len(missing),
            "extra_rows": len(extra),
        },
    )


EMBEDDING_DRIFT = "embedding_drift"
DRIFT_COLUMNS = ("shard", "text", "vector")  # where each sampled chunk is, what is re-embedded and compared


def sample_quota(shards: list[str], total: int, rng: random.Random) -> dict[str, int]:
    """How many stored chunks the drift check re-embeds from each shard: ``total`` spread as evenly as
    possible over the shards, the remainder going to shards picked at random."""
    order = rng.sample(shards, len(shards))
    return {shard: total // len(shards) + (i < total % len(shards)) for i, shard in enumerate(order)}


def drift_outcome(stored: np.ndarray, fresh: np.ndarray, threshold: float) -> CheckOutcome:
    """Cosine similarity of stored vectors with the same texts re-embedded now by the table's model.

    A drop means the provider changed the model behind the same name, or preprocessing broke.
    """
    if len(stored) == 0:
        return CheckOutcome(
            EMBEDDING_DRIFT,
            True,
            "nothing sampled in this run: EMBEDDING_ASSETS_DRIFT_SAMPLE is 0, or the run's shards hold no rows",
            {"sampled": 0},
        )
    cosines = np.sum(stored * fresh, axis=1) / (np.linalg.norm(stored, axis=1) * np.linalg.norm(fresh, axis=1))
    cosines = np.clip(cosines, -1.0, 1.0)  # float32 rounding gives 1.0000001 for identical vectors
    low = float(np.min(cosines))
    return CheckOutcome(
        EMBEDDING_DRIFT,
        low >= threshold,
        f"re-embedded {len(stored)} stored chunks: cosine min {low:.4f}, mean "
        f"{float(np.mean(cosines)):.4f} (threshold {threshold})",
        {"sampled": len(stored), "min_cosine": low, "mean_cosine": float(np.mean(cosines))},
    )
