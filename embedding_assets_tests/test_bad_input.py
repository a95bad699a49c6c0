"""A corpus of hostile and broken documents: each is indexed correctly or skipped with its reason."""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from embedding_assets.core.embedders import Embedder
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_keys
from embedding_assets_tests.conftest import write_topics
from embedding_assets_tests.pipeline_helpers import expected_index, materialize, metadata, table_rows

pytestmark = [pytest.mark.slow, pytest.mark.reliability]
SECRET = "this text lives outside the source folder"

EXPECTED_SKIPS = {
    "invalid-utf8.txt": "not valid UTF-8 (byte 6), and no other encoding fits it",
    "binary.txt": "binary content (NUL bytes)",
    "empty.md": "empty after normalisation",
    "blank.txt": "empty after normalisation",
    "huge.txt": "file is 52428800 bytes, over the 10485760-byte limit (EMBEDDING_ASSETS_MAX_FILE_BYTES)",
    "escape.md": "symlink points outside the source folder",
    "dangling.md": "No such file or directory",
    "pipe.txt": "not a regular file",
    "broken.json": None,  # the JSON parser's message
    "records.jsonl:2": None,
    "records.jsonl:4": "record has no usable 'id' field",
    "dup-1": "duplicate document id, first read from records.jsonl",
}
EXPECTED_DOCUMENTS = {
    "assert.txt",
    "break.txt",
    "long-line.txt",
    "no-spaces.txt",
    "late-nul.md",
    "with space.md",
    "ünïcødé.md",
    "-leading-dash.md",
    "quote'name.md",
    "semi;colon.md",
    "page.html",
    "legacy-cp1252.txt",
    "dup-1",
    "x' OR '1'='1",
    "'; DROP TABLE chunks; --",
}


def hostile_corpus(root: Path, outside: Path) -> None:
    write_topics(root, ("assert", "break"))
    outside.write_text(SECRET)
    (root / "invalid-utf8.txt").write_bytes(b"\x1b\x02\x03abc\x80\x81")  # no encoding makes this text
    (root / "legacy-cp1252.txt").write_bytes("Caf\xe9 cr\xe8me: \u201cquoted\u201d, not UTF-8".encode("cp1252"))
    (root / "binary.txt").write_bytes(b"\x00\x01\x02PK\x03\x04" * 100)
    (root / "empty.md").write_bytes(b"")
    (root / "blank.txt").write_text(" \n\t\n \r\n")
    with (root / "huge.txt").open("wb") as huge:
        huge.truncate(50 * 1024 * 1024)  # 50 MB (sparse): over the size limit, skipped unread
    # One line without a sentence or line break: halved at words until each piece fits (64 chunks of the
    # real model's tokens; 3,000 words, where 20,000 made 256 chunks and only cost embedding time).
    (root / "long-line.txt").write_text(" ".join(f"word{i % 97}" for i in range(3_000)))
    # One 20,000-character word: the model's tokenizer reads any word over 100 characters as one [UNK]
    # token, so it is a single chunk (core/test_chunking cuts a boundless text at characters).
    (root / "no-spaces.txt").write_text("x" * 20_000)
    (root / "late-nul.md").write_text("# Title\n\n" + "Body text. " * 1000 + "\x00 tail")
    for name in ("with space.md", "ünïcødé.md", "-leading-dash.md", "quote'name.md", "semi;colon.md"):
        (root / name).write_text(f"# {name}\n\nA document with an odd file name.")
    (root / "page.html").write_text("<h1>T</h1><script>alert('x')</script><p>Body &lt;b&gt;</p>")
    os.symlink(outside, root / "escape.md")
    os.symlink(root / "nowhere.md", root / "dangling.md")
    os.symlink(root, root / "loop")  # a directory symlink back to the root: never followed
    os.mkfifo(root / "pipe.txt")
    (root / "broken.json").write_text('{"id": "b1", "text": ')
    (root / "records.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"id": "dup-1", "text": "first of two records with one id"}),
                '{"id": "trunc',
                json.dumps({"id": "x' OR '1'='1", "text": "an id that tries SQL injection"}),
                json.dumps({"text": "no id at all"}),
                json.dumps({"id": "'; DROP TABLE chunks; --", "text": "another hostile id"}),
                json.dumps({"id": "dup-1", "text": "second record, same id"}),
            ]
        )
    )


def test_every_bad_document_is_indexed_or_skipped_with_a_reason(
    tmp_path: Path, minilm: Embedder, reliability_log: Callable[[dict], None]
) -> None:
    root = tmp_path / "source"
    root.mkdir()
    hostile_corpus(root, tmp_path / "secret.txt")
    settings = Settings(
        source_dir=str(root), lancedb_uri=str(tmp_path / "lancedb"), staging_dir=str(tmp_path / "staging"), shards=4
    )
    with dg.instance_for_test() as instance:
        materialize(settings, instance)
        skipped = {
            s["doc_id"]: s["reason"]
            for shard in shard_keys(4)
            for s in metadata(instance, "raw_documents", shard)["skipped_documents"]
        }
    assert set(skipped) == set(EXPECTED_SKIPS)
    for doc_id, reason in EXPECTED_SKIPS.items():
        assert reason is None or reason in skipped[doc_id], (doc_id, skipped[doc_id])
    rows = list(table_rows(settings, minilm.model_version, ["doc_id", "text", "chunk_hash"]).values())
    assert {r["doc_id"] for r in rows} == EXPECTED_DOCUMENTS
    assert all(SECRET not in r["text"] and "\x00" not in r["text"] and "alert(" not in r["text"] for r in rows)
    index = {(d, h) for d, h in expected_index(settings, minilm).values()}
    assert index == {(r["doc_id"], r["chunk_hash"]) for r in rows}
    assert sum(r["doc_id"] == "long-line.txt" for r in rows) > 30  # many chunks, cut from one line
    hostile = "x' OR '1'='1"
    records = root / "records.jsonl"
    records.write_text("\n".join(line for line in records.read_text().splitlines() if "SQL injection" not in line))
    with dg.instance_for_test() as instance:
        materialize(settings, instance)
    after = {r["doc_id"] for r in table_rows(settings, minilm.model_version, ["doc_id"]).values()}
    assert after == EXPECTED_DOCUMENTS - {hostile}, "deleting a hostile id must delete exactly its rows"
    reliability_log(
        {
            "suite": "bad input (hostile corpus)",
            "trials": 2,
            "faults": {f"skipped: {reason or 'malformed JSON'}": 1 for reason in EXPECTED_SKIPS.values()},
            "rows_checked": len(rows) + len(after),
            "rows_lost": 0,
            "duplicates": 0,
        }
    )


def test_unreadable_files_are_skipped(tmp_path: Path) -> None:
    """Root reads everything, so the folder is read by a process without the DAC override capabilities."""
    (tmp_path / "open.txt").write_text("anyone can read this")
    (tmp_path / "locked.txt").write_text("nobody may read this")
    os.chmod(tmp_path / "locked.txt", 0o000)
    code = (
        "import json, sys; from embedding_assets.core.sources import SourceFolder;"
        "items = [i for s in ('s000', 's001') for i in SourceFolder(sys.argv[1]).read_shard(s, 2)];"
        "print(json.dumps({i.doc_id: getattr(i, 'reason', 'indexed') for i in items}))"
    )
    unprivileged = [
        "setpriv",
        "--inh-caps=-dac_override,-dac_read_search",
        "--bounding-set=-dac_override,-dac_read_search",
    ]
    done = subprocess.run([*unprivileged, sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"open.txt": "indexed", "locked.txt": "Permission denied"}
