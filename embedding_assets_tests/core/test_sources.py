import json
import os
from pathlib import Path

import pytest

from embedding_assets.core.hashing import content_hash
from embedding_assets.core.shards import shard_keys
from embedding_assets.core.sources import Document, Skip, SourceError, SourceFolder

SHARDS = 4


def read_all(folder: SourceFolder) -> tuple[dict[str, Document], list[Skip], dict[str, str]]:
    """Every document and skip over all shards, and the shard each document came from."""
    docs: dict[str, Document] = {}
    skips: list[Skip] = []
    owner: dict[str, str] = {}
    for shard in shard_keys(SHARDS):
        for item in folder.read_shard(shard, SHARDS):
            if isinstance(item, Skip):
                skips.append(item)
            else:
                assert item.doc_id not in docs, f"{item.doc_id} read by two shards"
                docs[item.doc_id] = item
                owner[item.doc_id] = shard
    return docs, skips, owner


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "guide").mkdir()
    (tmp_path / "guide" / "intro.md").write_text("# Intro\r\n\r\nHello   \r\n")
    (tmp_path / "notes.txt").write_text("Plain notes.")
    (tmp_path / "api.rst").write_text("API\n===\n\nThe API.")
    (tmp_path / "page.html").write_text(
        "<html><head><title>t</title><style>p{}</style></head><body><h1>Page</h1><p>First &amp; only."
        "<script>alert(1)</script></p></body></html>"
    )
    (tmp_path / "records.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"id": "r1", "text": "Record one."}),
                "{not json",
                json.dumps({"id": 7, "text": "Record seven."}),
                json.dumps({"text": "no id"}),
                json.dumps({"id": "r1", "text": "Duplicate of r1."}),
                json.dumps({"id": "r9", "text": 42}),
            ]
        )
    )
    (tmp_path / "list.json").write_text(json.dumps([{"id": "j1", "text": "From a JSON list."}]))
    (tmp_path / "ignored.png").write_bytes(b"\x89PNG")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "garbled.txt").write_bytes(b"\x1b\x02\x03abc\x80\x81")
    (tmp_path / "empty.md").write_text("  \n\n")
    (tmp_path / "binary.txt").write_bytes(b"abc\x00\x01\x02")
    return tmp_path


def test_documents_get_stable_ids_and_normalised_hashed_text(folder: Path) -> None:
    docs, _, _ = read_all(SourceFolder(folder))
    assert set(docs) == {"guide/intro.md", "notes.txt", "api.rst", "page.html", "latin1.txt", "r1", "7", "j1"}
    intro = docs["guide/intro.md"]
    assert intro.text == "# Intro\n\nHello"
    assert intro.doc_hash == content_hash(intro.text)
    assert docs["page.html"].text == "# Page\n\nFirst & only."
    assert docs["r1"].text == "Record one." and docs["r1"].source_path == "records.jsonl"
    assert (docs["latin1.txt"].text, docs["latin1.txt"].encoding) == ("caf\xe9", "cp1252")
    assert docs["notes.txt"].encoding is None


def test_everything_unreadable_is_skipped_once_with_a_reason(folder: Path) -> None:
    _, skips, _ = read_all(SourceFolder(folder))
    reasons = {s.doc_id: s.reason for s in skips}
    assert len(skips) == len(reasons), "a skip was reported by more than one shard"
    assert reasons["records.jsonl:2"].startswith("malformed JSON")
    assert "'id'" in reasons["records.jsonl:4"]
    assert reasons["r1"].startswith("duplicate document id")
    assert "'text'" in reasons["r9"]
    assert reasons["garbled.txt"] == "not valid UTF-8 (byte 6), and no other encoding fits it"
    assert reasons["empty.md"] == "empty after normalisation"
    assert reasons["binary.txt"] == "binary content (NUL bytes)"
    assert "ignored.png" not in reasons


def test_each_document_is_owned_by_exactly_one_shard(folder: Path) -> None:
    docs, _, owner = read_all(SourceFolder(folder))
    assert set(owner) == set(docs)
    assert len(set(owner.values())) > 1


def test_symlinks_out_of_the_folder_are_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("top secret")
    root = tmp_path / "src"
    root.mkdir()
    (root / "inside.txt").write_text("inside")
    os.symlink(outside, root / "link.txt")
    os.symlink(root / "inside.txt", root / "alias.txt")
    docs, skips, _ = read_all(SourceFolder(root))
    assert {s.doc_id: s.reason for s in skips} == {"link.txt": "symlink points outside the source folder"}
    assert docs["alias.txt"].text == "inside"
    assert all("top secret" not in d.text for d in docs.values())


def test_files_over_the_size_limit_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("x" * 2000)
    _, skips, _ = read_all(SourceFolder(tmp_path, max_file_bytes=1000))
    assert skips == [Skip("big.txt", "file is 2000 bytes, over the 1000-byte limit (EMBEDDING_ASSETS_MAX_FILE_BYTES)")]


def test_a_missing_folder_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        list(SourceFolder(tmp_path / "nope").read_shard("s000", 4))
