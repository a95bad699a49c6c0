import json
import os
import time
from pathlib import Path

import pytest

from embedding_assets.core.scan import RACY_SECONDS, SourceScanner, fingerprint
from embedding_assets.core.shards import shard_of
from embedding_assets.core.sources import SourceFolder

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


def scanner(source: Path, tmp_path: Path) -> SourceScanner:
    return SourceScanner(SourceFolder(source), tmp_path / "state" / "scan.sqlite", SHARDS)


def test_first_scan_reads_everything_and_the_next_reads_nothing(source: Path, tmp_path: Path) -> None:
    first = scanner(source, tmp_path).scan()
    assert (first.files, first.files_read) == (21, 21)
    assert sum(len(s.documents) for s in first.shards.values()) == 28
    again = scanner(source, tmp_path).scan()
    assert again.files_read == 0
    assert again.versions() == first.versions()


def test_an_edit_changes_only_its_shard(source: Path, tmp_path: Path) -> None:
    before = scanner(source, tmp_path).scan()
    (source / "doc3.md").write_text("# Doc 3\n\nA new body, same file.")
    after = scanner(source, tmp_path).scan()
    assert after.files_read == 1
    assert after.changed_since(before.versions()) == [shard_of("doc3.md", SHARDS)]


def test_deletes_and_renames_are_changes(source: Path, tmp_path: Path) -> None:
    before = scanner(source, tmp_path).scan()
    (source / "doc1.md").unlink()
    (source / "doc2.md").rename(source / "moved.md")
    after = scanner(source, tmp_path).scan()
    assert after.files_read == 1 and after.files == 20
    expected = {shard_of(d, SHARDS) for d in ("doc1.md", "doc2.md", "moved.md")}
    assert set(after.changed_since(before.versions())) == expected
    assert not any("doc1.md" in s.documents or "doc2.md" in s.documents for s in after.shards.values())


def test_a_cosmetic_edit_keeps_the_fingerprint(source: Path, tmp_path: Path) -> None:
    before = scanner(source, tmp_path).scan()
    (source / "doc4.md").write_text("# Doc 4\r\n\r\nBody of document 4.   \r\n")
    after = scanner(source, tmp_path).scan()
    assert after.files_read == 1 and after.changed_since(before.versions()) == []


def test_records_are_fingerprinted_one_by_one(source: Path, tmp_path: Path) -> None:
    before = scanner(source, tmp_path).scan()
    lines = [json.dumps({"id": f"r{i}", "text": f"record {i}" + (" edited" if i == 5 else "")}) for i in range(8)]
    (source / "records.jsonl").write_text("\n".join(lines))
    after = scanner(source, tmp_path).scan()
    assert after.changed_since(before.versions()) == [shard_of("r5", SHARDS)]


def test_a_new_skip_changes_the_version_but_not_the_fingerprint(source: Path, tmp_path: Path) -> None:
    before = scanner(source, tmp_path).scan()
    (source / "bad.txt").write_bytes(b"\xff\xfe")
    after = scanner(source, tmp_path).scan()
    shard = shard_of("bad.txt", SHARDS)
    assert after.changed_since(before.versions()) == [shard]
    assert after.shards[shard].fingerprint == before.shards[shard].fingerprint
    assert [s.doc_id for s in after.shards[shard].skipped] == ["bad.txt"]


def test_files_written_just_before_a_scan_are_read_again(source: Path, tmp_path: Path) -> None:
    scanner(source, tmp_path).scan()
    path = source / "doc7.md"
    path.write_text("# Doc 7\n\nFirst version.")
    stamp = os.stat(path).st_mtime_ns
    first = scanner(source, tmp_path).scan()
    assert first.files_read == 1
    path.write_text("# Doc 7\n\nOther version.")  # same size, and the mtime forced back to the old one
    os.utime(path, ns=(stamp, stamp))
    changed = scanner(source, tmp_path).scan()
    assert changed.files_read == 1, f"a file younger than {RACY_SECONDS}s must not be trusted"
    assert changed.changed_since(first.versions()) == [shard_of("doc7.md", SHARDS)]


def test_fingerprint_ignores_order_and_tells_sets_apart() -> None:
    assert fingerprint([("a", "1"), ("b", "2")]) == fingerprint([("b", "2"), ("a", "1")])
    assert fingerprint([("a", "1")]) != fingerprint([("a", "2")])
    assert fingerprint([]) == fingerprint(())
