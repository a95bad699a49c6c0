"""The change index on the folder source: a sync reads what changed, shard fingerprints follow it.

Every test runs twice: on SQLite in staging, and on a real PostgreSQL server (the production profile's home)."""

import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from embedding_assets.core.change_index import DUPLICATE, ChangeIndex
from embedding_assets.core.change_index_db import IndexDatabase, PostgresDatabase, SqliteDatabase
from embedding_assets.core.hashing import set_hash
from embedding_assets.core.shards import shard_keys, shard_of
from embedding_assets.core.sources import Read, SourceFolder
from embedding_assets.core.sources.folder import RACY_SECONDS

SHARDS = 4


def age(path: Path, seconds: float = 60) -> None:
    """Backdate a file, as if it had been written a while ago (files fresh from a test are racy)."""
    past = time.time() - seconds
    os.utime(path, (past, past))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    root.mkdir()
    for i in range(20):
        (root / f"doc{i}.md").write_text(f"# Doc {i}\n\nBody of document {i}.")
    (root / "records.jsonl").write_text("\n".join(json.dumps({"id": f"r{i}", "text": f"record {i}"}) for i in range(8)))
    for path in root.iterdir():
        age(path)
    return root


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], IndexDatabase]:
    """Makes a fresh change-index database by name, on SQLite or on PostgreSQL."""
    if request.param == "sqlite":
        return lambda name: SqliteDatabase(tmp_path / f"{name}.sqlite")
    postgres = request.getfixturevalue("postgres")
    dsn = f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/{postgres.db}"
    return lambda name: PostgresDatabase(dsn, f"t_{tmp_path.name[-16:].lower().replace('-', '_')}_{name}")


@pytest.fixture
def index(database: Callable[[str], IndexDatabase]) -> ChangeIndex:
    return ChangeIndex(database("index"), SHARDS)


def sync(index: ChangeIndex, source: Path) -> list[str]:
    """One sync of the folder; the shards it changed."""
    return index.sync(SourceFolder(source)).changed_shards


def test_the_first_sync_reads_everything_and_the_next_reads_nothing(source: Path, index: ChangeIndex) -> None:
    first = index.sync(SourceFolder(source))
    assert (first.keys_read, first.generation, first.listed) == (21, 1, True)
    assert sum(s.documents for s in index.summaries().values()) == 28
    fingerprints = {shard: s.fingerprint for shard, s in index.summaries().items()}
    again = index.sync(SourceFolder(source))
    assert (again.keys_read, again.changed_shards, again.generation) == (0, [], 1)
    assert {shard: s.fingerprint for shard, s in index.summaries().items()} == fingerprints
    assert index.changed_since(1) == []


def test_an_edit_changes_only_its_shard(source: Path, index: ChangeIndex) -> None:
    sync(index, source)
    (source / "doc3.md").write_text("# Doc 3\n\nA new body, same file.")
    report = index.sync(SourceFolder(source))
    assert report.keys_read == 1 and report.changed_shards == [shard_of("doc3.md", SHARDS)]
    assert [s.shard for s in index.changed_since(1)] == [shard_of("doc3.md", SHARDS)]


def test_settle_returns_the_oldest_change_the_table_now_reflects(source: Path, index: ChangeIndex) -> None:
    index.sync(SourceFolder(source), now=1000.0)  # a listing: changes count from the sync that saw them
    shard = shard_of("doc3.md", SHARDS)
    (source / "doc3.md").write_text("# Doc 3\n\nEdited once.")
    age(source / "doc3.md")
    second = index.sync(SourceFolder(source), full=True, now=2000.0).generation
    assert index.generation_of(shard) == second == 2
    assert index.settle(shard, 1, "t", ["t"]) == 1000.0  # a run that read the shard before the edit
    assert index.settle(shard, second, "t", ["t"]) == 2000.0  # the edit waited until a run read it
    assert index.settle(shard, second, "t", ["t"]) is None


def test_each_table_settles_the_changes_it_had_not_reflected(source: Path, index: ChangeIndex) -> None:
    index.sync(SourceFolder(source), now=1000.0)
    shard = shard_of("doc3.md", SHARDS)
    (source / "doc3.md").write_text("# Doc 3\n\nEdited once.")
    age(source / "doc3.md")
    second = index.sync(SourceFolder(source), full=True, now=2000.0).generation
    tables = ["live", "candidate"]
    assert index.settle(shard, second, "live", tables) == 1000.0
    assert index.settle(shard, second, "live", tables) is None
    # The candidate has not reflected either change yet: the live table's settling kept them for it.
    assert index.settle(shard, 1, "candidate", tables) == 1000.0
    assert index.settle(shard, second, "candidate", tables) == 2000.0
    assert index.settle(shard, second, "candidate", tables) is None


def test_deletes_and_renames_are_changes(source: Path, index: ChangeIndex) -> None:
    sync(index, source)
    (source / "doc1.md").unlink()
    (source / "doc2.md").rename(source / "moved.md")
    report = index.sync(SourceFolder(source))
    assert (report.keys_read, report.keys_deleted) == (3, 2)  # the moved file, and the two gone ones (read: None)
    assert set(report.changed_shards) == {shard_of(d, SHARDS) for d in ("doc1.md", "doc2.md", "moved.md")}
    held = {doc_id for shard in index.summaries() for _, _, doc_id, _, _ in index.shard_items(shard)}
    assert "moved.md" in held and not {"doc1.md", "doc2.md"} & held


def test_a_cosmetic_edit_keeps_the_fingerprint(source: Path, index: ChangeIndex) -> None:
    sync(index, source)
    (source / "doc4.md").write_text("# Doc 4\r\n\r\nBody of document 4.   \r\n")
    report = index.sync(SourceFolder(source))
    assert report.keys_read == 1 and report.changed_shards == [] and index.changed_since(1) == []


def test_records_are_fingerprinted_one_by_one(source: Path, index: ChangeIndex) -> None:
    sync(index, source)
    lines = [json.dumps({"id": f"r{i}", "text": f"record {i}" + (" edited" if i == 5 else "")}) for i in range(8)]
    (source / "records.jsonl").write_text("\n".join(lines))
    assert sync(index, source) == [shard_of("r5", SHARDS)]


def test_a_new_skip_changes_the_version_but_not_the_fingerprint(source: Path, index: ChangeIndex) -> None:
    sync(index, source)
    before = index.summaries()
    (source / "bad.txt").write_bytes(b"\x1b\x02\x03abc\x80\x81")  # neither UTF-8 nor any other encoding
    shard = shard_of("bad.txt", SHARDS)
    assert sync(index, source) == [shard]
    after = index.summaries()[shard]
    assert after.fingerprint == before[shard].fingerprint and after.version != before[shard].version
    assert [(s.doc_id, s.reason) for s in index.skips()] == [
        ("bad.txt", "not valid UTF-8 (byte 6), and no other encoding fits it")
    ]


def test_a_duplicate_id_is_a_skip_until_its_holder_lets_it_go(source: Path, index: ChangeIndex) -> None:
    sync(index, source)
    (source / "more.jsonl").write_text(json.dumps({"id": "r3", "text": "another record 3"}))
    sync(index, source)
    assert [(s.doc_id, s.reason) for s in index.skips()] == [
        ("r3", "duplicate document id, first read from records.jsonl")
    ]
    lines = [json.dumps({"id": f"r{i}", "text": f"record {i}"}) for i in range(8) if i != 3]
    (source / "records.jsonl").write_text("\n".join(lines))
    assert sync(index, source) == [shard_of("r3", SHARDS)]  # more.jsonl was read again: it holds r3 now
    assert index.skips() == []
    items = [item for item in index.shard_items(shard_of("r3", SHARDS)) if item[2] == "r3"]
    assert [(key, reason) for key, _, _, _, reason in items] == [("more.jsonl", None)]


def test_files_written_just_before_a_sync_are_read_again(source: Path, index: ChangeIndex) -> None:
    sync(index, source)
    path = source / "doc7.md"
    path.write_text("# Doc 7\n\nFirst version.")
    stamp = os.stat(path).st_mtime_ns
    assert index.sync(SourceFolder(source)).keys_read == 1
    path.write_text("# Doc 7\n\nOther version.")  # same size, and the mtime forced back to the old one
    os.utime(path, ns=(stamp, stamp))
    changed = index.sync(SourceFolder(source))
    assert changed.keys_read == 1, f"a file younger than {RACY_SECONDS}s must not be trusted"
    assert changed.changed_shards == [shard_of("doc7.md", SHARDS)]


def test_the_fingerprint_is_the_set_hash_of_the_shard_documents(source: Path, index: ChangeIndex) -> None:
    """What stale_shards compares with the table: the same digest, computed from (doc_id, doc_hash) pairs."""
    sync(index, source)
    for shard, summary in index.summaries().items():
        pairs = [(doc_id, doc_hash or "") for _, _, doc_id, doc_hash, reason in index.shard_items(shard) if not reason]
        assert summary.fingerprint == set_hash(pairs) and summary.documents == len(pairs)


def test_set_hash_ignores_order_and_tells_sets_apart() -> None:
    assert set_hash([("a", "1"), ("b", "2")]) == set_hash([("b", "2"), ("a", "1")])
    assert set_hash([("a", "1")]) != set_hash([("a", "2")])
    assert set_hash([]) == set_hash(()) == "0" * 32


def test_a_listing_is_recorded_in_batches_and_an_interrupted_one_resumes(
    source: Path, index: ChangeIndex, database: Callable[[str], IndexDatabase]
) -> None:
    class Failing(SourceFolder):
        """The folder, failing once ``reads`` keys have been read (a crash in the middle of a sync)."""

        def __init__(self, root: Path, reads: int) -> None:
            super().__init__(root)
            self.left = reads

        def read(self, key: str) -> Read | None:
            if self.left == 0:
                raise RuntimeError("killed")
            self.left -= 1
            return super().read(key)

    with pytest.raises(RuntimeError, match="killed"):
        index.sync(Failing(source, reads=7), limit=3)
    assert index.keys() == 6  # two batches of three were recorded before the third failed
    resumed = index.sync(SourceFolder(source), limit=3)
    assert resumed.keys_read == 21 - 6  # the recorded keys' versions match: only the rest is read
    clean = ChangeIndex(database("clean"), SHARDS)
    clean.sync(SourceFolder(source))
    assert {s: (v.fingerprint, v.version) for s, v in index.summaries().items()} == {
        s: (v.fingerprint, v.version) for s, v in clean.summaries().items()
    }
    assert {s.shard for s in index.changed_since(0)} == {s.shard for s in clean.changed_since(0)}


@pytest.mark.parametrize("limit", [1, 3, 1000])
def test_random_duplicate_ids_keep_one_holder_and_lose_none(tmp_path: Path, index: ChangeIndex, limit: int) -> None:
    """Files whose records share ids, edited at random and synced in batches of ``limit`` keys: every id in
    the source is held as a document by exactly one key, every other copy is a duplicate skip naming it,
    and the fingerprints are those of the documents held."""
    root, rng = tmp_path / "dupes", random.Random(limit)
    root.mkdir()
    for step in range(12):
        for name in rng.sample([f"f{i}.jsonl" for i in range(6)], 3):
            path = root / name
            if rng.random() < 0.2:
                path.unlink(missing_ok=True)
                continue
            ids = rng.sample(range(10), rng.randint(1, 4))
            path.write_text("\n".join(json.dumps({"id": f"d{i}", "text": f"{name} {i} {step}"}) for i in ids))
            age(path)
        index.sync(SourceFolder(root), limit=limit)
        held: dict[str, list[tuple[str, str]]] = {}  # doc_id → (key, doc_hash) of its document copies
        skipped: dict[str, list[str]] = {}  # doc_id → duplicate skip reasons
        for shard in shard_keys(SHARDS):
            for key, _, doc_id, doc_hash, reason in index.shard_items(shard):
                if reason is None:
                    held.setdefault(doc_id, []).append((key, doc_hash or ""))
                else:
                    skipped.setdefault(doc_id, []).append(reason)
        in_source = {json.loads(line)["id"] for path in root.iterdir() for line in path.read_text().splitlines()}
        assert set(held) == in_source, step
        assert all(len(copies) == 1 for copies in held.values()), held
        for doc_id, reasons in skipped.items():
            assert reasons == [DUPLICATE + held[doc_id][0][0]] * len(reasons), (doc_id, reasons)
        for shard, summary in index.summaries().items():
            pairs = [(d, copies[0][1]) for d, copies in held.items() if shard_of(d, SHARDS) == shard]
            assert summary.fingerprint == set_hash(pairs)


def test_shard_items_read_one_range_of_a_covering_index(source: Path, tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:  # a change index made before items_by_shard_key
        old.executescript(
            "CREATE TABLE items (key TEXT NOT NULL, position INTEGER NOT NULL, doc_id TEXT NOT NULL, "
            "shard TEXT NOT NULL, doc_hash TEXT, skip_reason TEXT, PRIMARY KEY (key, position)); "
            "CREATE INDEX items_by_shard ON items (shard);"
        )
    index = ChangeIndex(SqliteDatabase(path), SHARDS)
    sync(index, source)
    shard = next(s for s, summary in index.summaries().items() if summary.documents)
    with sqlite3.connect(path) as db:
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        plan = " ".join(
            str(row[-1])
            for row in db.execute(
                "EXPLAIN QUERY PLAN SELECT key, position, doc_id, doc_hash, skip_reason FROM items "
                "WHERE shard = ? ORDER BY key, position",
                (shard,),
            )
        )
    assert "items_by_shard" not in indexes and "items_by_shard_key" in indexes
    assert "COVERING INDEX items_by_shard_key" in plan and "TEMP B-TREE" not in plan
    assert index.shard_items(shard) == sorted(index.shard_items(shard))
