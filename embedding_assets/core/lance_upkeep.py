"""A LanceDB table's upkeep at the cost of what changed, through Lance itself (pylance).

LanceDB's ``Table.optimize()`` compacts, drops old versions and folds the rows written since into
every index by merging them into the index's latest segment. For a vector index that merge rebuilds
the index: folding 1,000 rows into a 10^5-row IVF_HNSW_SQ index took 69 s, 1.6x its own build
(``benchmarks/ann_upkeep.md``). Lance does each step on its own: compaction rewrites only the small
fragments, the scalar indexes take the new rows, and a vector index takes them as a *delta segment*
(``num_indices_to_merge=0``) trained on nothing, whose cost follows the new rows. Searches read the
base segment and every delta, so deltas are merged (the base never) once there are several.
"""

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

KEEP_VERSIONS = timedelta(days=7)  # versions a reader may still hold; older ones' files are deleted
MAX_DELTA_SEGMENTS = 8  # past this, a vector index's delta segments are merged into one
COMMIT_ATTEMPTS = 4  # a concurrent writer's commit makes Lance refuse ours as retryable
T = TypeVar("T")


def dataset(table: Any) -> Any:
    """The Lance dataset behind a LanceDB ``table``, at its latest version."""
    table.checkout_latest()
    return table.to_lance()


def compact(table: Any, scalar_indexes: Sequence[str]) -> None:
    """Merge the small fragments, fold the rows written since into ``scalar_indexes`` (names), and
    delete the files of versions older than ``KEEP_VERSIONS``; the vector index is left as it is."""
    _retrying(lambda: dataset(table).optimize.compact_files())
    if scalar_indexes:
        fold_into_scalar_indexes(table, scalar_indexes)
    dataset(table).cleanup_old_versions(older_than=KEEP_VERSIONS)
    table.checkout_latest()


def fold_into_scalar_indexes(table: Any, names: Sequence[str]) -> None:
    """Index the rows written since in the scalar indexes ``names``."""
    _retrying(lambda: dataset(table).optimize.optimize_indices(index_names=list(names)))
    table.checkout_latest()


def fold_into_vector_index(table: Any, name: str) -> int:
    """Index the rows written since as a delta segment of the vector index ``name``, then merge its
    deltas into one when there are more than ``MAX_DELTA_SEGMENTS``. Returns the segments now."""
    _retrying(lambda: dataset(table).optimize.optimize_indices(num_indices_to_merge=0, index_names=[name]))
    deltas = segments(table, name) - 1
    if deltas > MAX_DELTA_SEGMENTS:  # the latest ``deltas`` segments: every one but the base
        _retrying(lambda: dataset(table).optimize.optimize_indices(num_indices_to_merge=deltas, index_names=[name]))
    table.checkout_latest()
    return segments(table, name)


def segments(table: Any, name: str) -> int:
    """Segments of the index ``name``: its base and its deltas."""
    return sum(len(index.segments) for index in dataset(table).describe_indices() if index.name == name)


def _retrying(commit: Callable[[], T]) -> T:
    """``commit``, again after a short pause when a concurrent writer's commit won (Lance says retryable)."""
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return commit()
        except OSError as err:
            if "etryable" not in str(err) or attempt == COMMIT_ATTEMPTS:
                raise
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")
