"""Every format through the pipeline, on real files the tests generate: rows, pages, skips, encodings."""

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from embedding_assets.core.change_index import ChangeIndex
from embedding_assets.core.change_index_db import SqliteDatabase
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_keys
from embedding_assets.core.sources import SourceFolder
from embedding_assets.core.sources import records as records_module
from embedding_assets_tests.generated_files import PAGES, write_documents
from embedding_assets_tests.pipeline_helpers import expected_index, materialize, metadata, table_rows

SHARDS = 4


@pytest.mark.slow
def test_every_format_is_indexed_with_pages_or_skipped_with_its_reason(tmp_path: Path, minilm: Embedder) -> None:
    source = write_documents(tmp_path / "source")
    settings = Settings(
        source_dir=str(source),
        lancedb_uri=str(tmp_path / "lancedb"),
        staging_dir=str(tmp_path / "staging"),
        shards=SHARDS,
    )
    with dg.instance_for_test() as instance:
        materialize(settings, instance)
        raw = [metadata(instance, "raw_documents", shard) for shard in shard_keys(SHARDS)]
    skipped = {s["doc_id"]: s["reason"] for m in raw for s in m["skipped_documents"]}
    assert skipped == {
        "locked.pdf": "encrypted PDF: it needs a password to open",
        "scan.pdf": "no text layer on its 1 page(s): an image-only or scanned PDF (no OCR)",
        "broken.pdf": "corrupt or not a PDF (Failed to load document (PDFium: Data format error).)",
        "garbled.txt": "not valid UTF-8 (byte 6), and no other encoding fits it",
    }
    encodings = {e["doc_id"]: e["encoding"] for m in raw for e in m["detected_encodings"]}
    assert encodings == {"french.txt": "cp1252", "german.md": "cp1252", "japanese.txt": "cp932"}
    assert sum(m["documents_not_utf8"] for m in raw) == 3

    rows = table_rows(settings, minilm.model_version, ["doc_id", "text", "page", "chunk_hash"])
    report = sorted((r for r in rows.values() if r["doc_id"] == "report.pdf"), key=lambda r: r["page"])
    assert [(r["page"], r["text"]) for r in report] == [(1, PAGES[0]), (2, PAGES[1]), (3, PAGES[2])]
    assert all(r["page"] is None for r in rows.values() if r["doc_id"] != "report.pdf")
    first = {r["doc_id"]: r["text"] for chunk_id, r in rows.items() if chunk_id.endswith("#0")}
    assert first["manual.docx"].startswith(
        "# Installation\n\nRun the installer once; the condition is true afterwards."
    )
    assert rows["manual.docx#1"]["text"].startswith("## Usage"), "the heading starts a chunk"
    assert "Straße für Fußgänger" in first["german.md"] and "東京は日本の首都" in first["japanese.txt"]
    assert first["page.html"] == "# Page\n\nThe condition is true.\n\nalpha | beta"
    assert not any("hidden" in r["text"] or "p{}" in r["text"] for r in rows.values()), "no script or style text"
    oracle = {(doc, h) for doc, h in expected_index(settings, minilm).values()}
    assert oracle == {(r["doc_id"], r["chunk_hash"]) for r in rows.values()}


def test_a_changed_reader_rereads_its_keys_and_only_those(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_documents(tmp_path / "source")
    past = time.time() - 60  # files fresh from the test are racy (always re-read): age them
    for path in source.iterdir():
        os.utime(path, (past, past))
    index = ChangeIndex(SqliteDatabase(tmp_path / "index.sqlite"), SHARDS)
    index.sync(SourceFolder(source))
    assert index.sync(SourceFolder(source)).keys_read == 0
    monkeypatch.setitem(records_module.READERS, ".html", "html-next")
    report = index.sync(SourceFolder(source))
    assert report.keys_read == 1, "only the HTML file is read again"
    assert report.changed_shards == [], "same text: nothing to refresh"
