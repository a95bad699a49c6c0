"""Writing a run's shards to the vector table in few commits.

A shard write is four LanceDB commits (pending mark, upsert, delete, state), ~13 ms each, whatever
the size of the change: for a refresh that changes a few chunks in each of many shards, most of its
table time. ``write_shards`` lets consecutive shards share those commits (``ShardWriteBatch``), as
many as hold ``WRITE_BATCH_BYTES`` of changed rows, up to ``WRITE_BATCH_SHARDS``: memory still grows
with one shard and the change, never with the run.
"""

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack
from typing import Protocol, TypeVar

import pyarrow as pa

from embedding_assets.core.store import ShardWrite, ShardWriteBatch, VectorStore

WRITE_BATCH_BYTES = 64 << 20  # changed rows held before a commit (a full shard of a first ingest commits alone)
WRITE_BATCH_SHARDS = 64  # shards, so their locks are not held for long


class StagedShard(Protocol):
    """A shard whose rows are staged for the table (a ``ShardWork``)."""

    @property
    def shard(self) -> str: ...

    def rows_to_write(self) -> pa.Table: ...


Work = TypeVar("Work", bound=StagedShard)


def write_shards(
    store: VectorStore,
    works: Iterable[Work],
    lock: Callable[[str], AbstractContextManager[None]],
) -> Iterator[tuple[Work, ShardWrite, float]]:
    """Write each shard's staged rows to the table, batched: every shard is locked (``lock``) from
    the read of its stored rows until its batch has committed. Yields each shard with its write and
    its seconds (its own read and diff, plus its share of the batch's commits) once committed, still
    locked, so what the caller records of it happens before another writer can change it. Locks are
    taken in the order of ``works``: callers pass shards in key order, so two runs never deadlock."""
    with ExitStack() as held:
        batch: ShardWriteBatch | None = None
        added: list[tuple[Work, float]] = []
        for work in works:
            started = time.perf_counter()
            held.enter_context(lock(work.shard))
            rows = work.rows_to_write()
            batch = batch or store.write_batch(rows.schema)
            batch.add(work.shard, rows)
            added.append((work, time.perf_counter() - started))
            if batch.nbytes >= WRITE_BATCH_BYTES or len(added) >= WRITE_BATCH_SHARDS:
                yield from _committed(batch, added)
                held.close()  # the batch's locks
                batch, added = None, []
        if batch is not None:
            yield from _committed(batch, added)


def _committed(batch: ShardWriteBatch, added: list[tuple[Work, float]]) -> Iterator[tuple[Work, ShardWrite, float]]:
    started = time.perf_counter()
    writes = batch.commit()
    share = (time.perf_counter() - started) / len(added)
    for work, seconds in added:
        yield work, writes[work.shard], seconds + share
