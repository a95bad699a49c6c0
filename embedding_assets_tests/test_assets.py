"""The whole pipeline on a real Dagster instance, real LanceDB and the real local model."""

from pathlib import Path

import dagster as dg
import pytest

from embedding_assets import cli
from embedding_assets.checks import INDEX_MATCHES_SOURCE
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.quality import RETRIEVAL_QUALITY
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_keys, shard_of
from embedding_assets.core.store import VectorStore
from embedding_assets.core.table_checks import EMBEDDING_DRIFT, VECTOR_TABLE_INTEGRITY
from embedding_assets.vector_index import ANN_RECALL
from embedding_assets_tests.pipeline_helpers import (
    asset_key,
    check_evaluations,
    expected_index,
    indexed,
    materialize,
    metadata,
    settings_env,
    table_rows,
)

pytestmark = pytest.mark.slow


def test_every_shard_is_indexed_checked_and_described(settings: Settings, minilm: Embedder) -> None:
    with dg.instance_for_test() as instance:
        result = materialize(settings, instance)
        assert indexed(settings, minilm.model_version) == expected_index(settings, minilm)
        shards = shard_keys(settings.shards)
        expected = [(c, s, True) for c in (VECTOR_TABLE_INTEGRITY, INDEX_MATCHES_SOURCE) for s in shards]
        expected.append((EMBEDDING_DRIFT, None, True))  # one for the table, from the run's sample of its shards
        expected.append((ANN_RECALL, None, True))  # no index yet
        expected.append((RETRIEVAL_QUALITY, None, True))  # the floor is not applied: a golden set of more topics
        assert check_evaluations(result) == sorted(expected)
        counts = VectorStore(settings.lancedb_uri).shard_counts(minilm.model_version)
        assert len(set(counts.values())) > 1, "corpus too uniform to tell per-shard metadata apart"
        for shard in shards:
            table_meta = metadata(instance, asset_key(settings, "vector_table"), shard)
            assert table_meta["rows"] == table_meta["chunks_inserted"] == counts[shard]
            assert table_meta["model_version"] == minilm.model_version
            embed_meta = metadata(instance, asset_key(settings, "embeddings"), shard)
            assert embed_meta["chunks_embedded"] == counts[shard] and embed_meta["dimensions"] == 384
            assert metadata(instance, asset_key(settings, "chunks"), shard)["chunks"] == counts[shard]


def test_rerunning_changes_nothing(settings: Settings, minilm: Embedder) -> None:
    with dg.instance_for_test() as instance:
        materialize(settings, instance)
        before = table_rows(settings, minilm.model_version)
        version = VectorStore(settings.lancedb_uri).table(minilm.model_version).version
        staged = {p: p.stat().st_mtime_ns for p in Path(settings.staging_dir).rglob("raw_documents/*.parquet")}
        first = {s: metadata(instance, "raw_documents", s) for s in shard_keys(settings.shards)}
        materialize(settings, instance)
        assert table_rows(settings, minilm.model_version) == before
        assert VectorStore(settings.lancedb_uri).table(minilm.model_version).version == version
        assert len(staged) == settings.shards  # the raw documents are neither re-read nor rewritten
        assert {p: p.stat().st_mtime_ns for p in staged} == staged
        for shard in shard_keys(settings.shards):
            again = metadata(instance, "raw_documents", shard)
            assert (first[shard]["restaged"], again["restaged"]) == (True, False)
            assert {k: again[k] for k in ("documents", "characters", "skipped_documents")} == {
                k: first[shard][k] for k in ("documents", "characters", "skipped_documents")
            }
            assert metadata(instance, asset_key(settings, "embeddings"), shard)["chunks_embedded"] == 0
            assert metadata(instance, asset_key(settings, "vector_table"), shard)["committed"] is False


def test_edits_shrinks_deletes_and_additions_reach_the_index(settings: Settings, minilm: Embedder) -> None:
    source = Path(settings.source_dir)
    with dg.instance_for_test() as instance:
        materialize(settings, instance)
        (source / "exceptions.txt").write_text("Exceptions\n**********\n\nNow a single short paragraph.")
        (source / "pass.txt").unlink()
        (source / "new.md").write_text("# New page\n\nA document added after the first run.")
        before = indexed(settings, minilm.model_version)
        materialize(settings, instance)
        after = indexed(settings, minilm.model_version)
        assert after == expected_index(settings, minilm)
        assert not any(doc == "pass.txt" for doc, _ in after.values())
        assert [k for k, (doc, _) in after.items() if doc == "exceptions.txt"] == ["exceptions.txt#0"]
        changed = {k for k, v in after.items() if before.get(k) != v}
        embedded = sum(
            metadata(instance, asset_key(settings, "embeddings"), s)["chunks_embedded"]
            for s in shard_keys(settings.shards)
        )
        assert embedded == len({after[k][1] for k in changed}) == 2


def test_unreadable_documents_are_reported_and_the_shard_proceeds(settings: Settings, minilm: Embedder) -> None:
    source = Path(settings.source_dir)
    (source / "broken.txt").write_bytes(b"\x1b\x02\x03abc\x80\x81")  # neither UTF-8 nor any other encoding
    shard = shard_of("broken.txt", settings.shards)
    with dg.instance_for_test() as instance:
        materialize(settings, instance, partition=shard)
        raw = metadata(instance, "raw_documents", shard)
        assert raw["skipped"] == 1
        reason = "not valid UTF-8 (byte 6), and no other encoding fits it"
        assert raw["skipped_documents"] == [{"doc_id": "broken.txt", "reason": reason}]
        assert raw["documents"] == metadata(instance, asset_key(settings, "chunks"), shard)["documents"] > 0


def test_search_and_status_commands(
    settings: Settings, minilm: Embedder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with dg.instance_for_test() as instance:
        materialize(settings, instance)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    assert cli.main(["search", "loop until a condition becomes false", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        f"top 3 for 'loop until a condition becomes false', answered by the live table ({minilm.model_version}; "
        "exact scan, "  # below EMBEDDING_ASSETS_ANN_MIN_ROWS: no vector index yet
    )
    assert lines[0].endswith(" ms):")
    assert "while.txt" in lines[1] and float(lines[1].split()[1]) > 0.3
    assert cli.main(["status"]) == 0
    status = capsys.readouterr().out
    rows = sum(VectorStore(settings.lancedb_uri).shard_counts(minilm.model_version).values())
    assert status.splitlines()[1].split()[:3] == [minilm.model_version, "live", str(rows)]


def test_empty_shards_are_materialized_and_checked(settings: Settings, minilm: Embedder) -> None:
    for path in Path(settings.source_dir).iterdir():
        if path.name != "if.txt":
            path.unlink()
    with dg.instance_for_test() as instance:
        result = materialize(settings, instance)
        evaluations = check_evaluations(result)
        assert (
            len(evaluations) == 2 * settings.shards + 3
        )  # two per shard; drift, the index's recall, retrieval quality
        assert all(passed for _, _, passed in evaluations)
        empty = [s for s in shard_keys(settings.shards) if s != shard_of("if.txt", settings.shards)]
        assert all(metadata(instance, asset_key(settings, "vector_table"), s)["rows"] == 0 for s in empty)
