"""write_shards: consecutive shards share their commits, each locked until its batch has committed."""

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from embedding_assets.core import table_writes
from embedding_assets.core.store import VectorStore
from embedding_assets.core.table_writes import write_shards
from embedding_assets_tests.core.test_store import MODEL, documents_fingerprint, rows

SHARDS = [f"s{i:03d}" for i in range(5)]


@dataclass
class Staged:
    shard: str
    docs: dict[str, list[str]]

    def rows_to_write(self) -> pa.Table:
        return rows(self.shard, self.docs, shard_count=len(SHARDS))


def test_shards_commit_in_batches_and_stay_locked_until_theirs_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_writes, "WRITE_BATCH_SHARDS", 2)
    store, held, log = VectorStore(str(tmp_path / "lancedb")), set(), []

    @contextmanager
    def lock(shard: str) -> Iterator[None]:
        held.add(shard)
        yield
        held.remove(shard)
        log.append(f"unlock {shard}")

    works = [Staged(s, {f"{s}-d{i}": [f"{s} text {i}"] for i in range(3)}) for s in SHARDS]
    store.replace_shard("s000", works[0].rows_to_write())  # the table exists: its versions count commits
    first = store.table(MODEL).version
    for work, write, seconds in write_shards(store, works, lock):
        assert work.shard in held and seconds >= 0
        assert write.committed == (work.shard != "s000")  # s000 was written already
        log.append(f"yield {work.shard}")
    # Batches of two: s000 (unchanged) and s001, s002 and s003, then s004; one upsert and two state commits
    # for each batch that changes something (each commit of a state is one of the state table's).
    assert log == [
        *("yield s000", "yield s001", "unlock s001", "unlock s000"),
        *("yield s002", "yield s003", "unlock s003", "unlock s002"),
        *("yield s004", "unlock s004"),
    ]
    assert store.table(MODEL).version == first + 3
    for work in works:
        assert store.recorded_states(MODEL)[work.shard].fingerprint == documents_fingerprint(work.docs)


def test_a_batch_commits_once_it_holds_the_bytes_of_changed_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_writes, "WRITE_BATCH_BYTES", 1)  # any change fills a batch
    store = VectorStore(str(tmp_path / "lancedb"))
    works = [Staged(s, {f"{s}-d": ["text"]}) for s in SHARDS]
    versions = [write.table_version for _, write, _ in write_shards(store, works, lambda _: nullcontext())]
    assert len(set(versions)) == len(SHARDS)  # a commit per shard
