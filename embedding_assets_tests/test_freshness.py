"""Proof that the index follows its source: randomized edits, refresh, and an exact oracle each step."""

import json
import random
from pathlib import Path

import dagster as dg
import pytest

from embedding_assets import cli
from embedding_assets.checks import INDEX_MATCHES_SOURCE
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.index import Index
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_of
from embedding_assets.core.store import VectorStore, sql_string
from embedding_assets.refresh import refresh
from embedding_assets_tests.pipeline_helpers import (
    SPARE_TOPICS,
    check_evaluations,
    expected_index,
    materialize,
    random_edit,
    run_checks,
    settings_env,
    table_rows,
)

pytestmark = pytest.mark.slow


COLUMNS = ["doc_id", "shard", "chunk_hash", "model_version", "embedded_at"]  # the stored row without the vector


def test_randomized_changes_keep_the_table_equal_to_the_source(settings: Settings, minilm: Embedder) -> None:
    source = Path(settings.source_dir)
    (source / "records.jsonl").write_text(
        "\n".join(
            json.dumps({"id": f"rec-{i}", "text": f"Record {i} describes keyword number {i} of the language."})
            for i in range(10)
        )
    )
    rng, spare = random.Random(20261125), list(SPARE_TOPICS)
    model = minilm.model_version
    with dg.instance_for_test() as instance:
        first = refresh(Index(settings), instance)
        assert len(first.stale) == settings.shards and first.total("chunks_reused") == 0
        for step in range(8):
            before = table_rows(settings, model, COLUMNS)
            oracle_before = expected_index(settings, minilm)
            touched = random_edit(source, rng, spare) | random_edit(source, rng, spare)
            report = refresh(Index(settings), instance)
            after = table_rows(settings, model, COLUMNS)
            oracle = expected_index(settings, minilm)
            assert {k: (r["doc_id"], r["chunk_hash"]) for k, r in after.items()} == oracle, f"step {step}"
            assert {r["model_version"] for r in after.values()} == {model}
            untouched = [k for k, r in after.items() if r["doc_id"] not in touched]
            assert all(after[k] == before[k] for k in untouched), "untouched rows must keep embedded_at"
            assert set(report.stale) == {
                shard_of(d, settings.shards)
                for d in touched
                if any(v[0] == d for v in (*oracle.values(), *oracle_before.values()))
            }
            # Only text this shard has never embedded reaches the model.
            hashes_before = {(r["shard"], r["chunk_hash"]) for r in before.values()}
            new_text = sum(1 for r in after.values() if (r["shard"], r["chunk_hash"]) not in hashes_before)
            assert report.total("chunks_embedded") == new_text, f"step {step}"
        assert refresh(Index(settings), instance).runs == [], "a refresh with nothing changed runs nothing"


def test_verify_finds_drift_the_check_reports_it_and_repair_fixes_it(
    settings: Settings,
    minilm: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.instance_for_test() as instance:
        materialize(settings, instance)
        assert cli.main(["verify"]) == 0
        table = VectorStore(settings.lancedb_uri).table(minilm.model_version)
        table.delete(f"chunk_id = {sql_string('if.txt#0')}")  # the record drifts from the store
        shard = shard_of("if.txt", settings.shards)
        assert cli.main(["verify"]) == 1
        assert f"{shard}: 1 missing ['if.txt#0']" in capsys.readouterr().out
        result = run_checks(settings, instance, shard, [INDEX_MATCHES_SOURCE])
        assert (INDEX_MATCHES_SOURCE, shard, False) in check_evaluations(result)
        assert cli.main(["verify", "--repair"]) == 0
        assert "refreshed 1 shard(s)" in capsys.readouterr().out
