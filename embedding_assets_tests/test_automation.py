"""Declarative automation: only changed shards follow upstream; a model change refreshes every shard
into a new table while the old one stays untouched and searchable."""

import dagster as dg
import numpy as np
import pytest

from embedding_assets.assembly import build_definitions
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.index import Index
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_keys
from embedding_assets.core.store import VectorStore
from embedding_assets_tests.pipeline_helpers import expected_index, materialize, table_rows

pytestmark = pytest.mark.slow
DOWNSTREAM = ("chunks", "embeddings", "vector_table")


def requested(result, asset: str) -> set[str]:
    return set(result.get_requested_partitions(dg.AssetKey(asset)))


def test_only_the_refreshed_shard_moves_and_a_model_change_moves_all(
    settings: Settings, minilm: Embedder, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        materialize(settings, instance)
        baseline = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert baseline.total_requested == 0

        defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, partition_key="s002", asset_selection=[dg.AssetKey("raw_documents")]
        )
        followed = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=baseline.cursor)
        assert {a: requested(followed, a) for a in DOWNSTREAM} == {a: {"s002"} for a in DOWNSTREAM}
        materialize(settings, instance, partition="s002")
        quiet = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=followed.cursor)
        assert {a: requested(quiet, a) for a in DOWNSTREAM} == {a: set() for a in DOWNSTREAM}
        assert quiet.get_num_requested(dg.AssetKey("retrieval_eval")) == 1  # the table changed: re-evaluate it
        assert quiet.get_num_requested(dg.AssetKey("vector_index")) == 1  # fold the new rows into the index

        old_table = VectorStore(settings.lancedb_uri).table(minilm.model_version)
        old_version, old_rows = old_table.version, old_table.count_rows()
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", server_url)
        other = Settings(**{**settings.__dict__, "model": "openai:test-embed-64"})
        switched = dg.evaluate_automation_conditions(
            defs=build_definitions(other), instance=instance, cursor=quiet.cursor
        )
        for asset in DOWNSTREAM:  # the chunker's tokenizer changes too (cl100k_base)
            assert requested(switched, asset) == set(shard_keys(settings.shards)), asset

        materialize(other, instance)
        store = VectorStore(settings.lancedb_uri)
        new_table = store.table("openai:test-embed-64/native")
        assert new_table.name != old_table.name and new_table.schema.field("vector").type.list_size == 64
        rows = table_rows(other, "openai:test-embed-64/native", ["doc_id", "chunk_hash", "model_version"])
        assert {k: (r["doc_id"], r["chunk_hash"]) for k, r in rows.items()} == expected_index(
            other, Index(other).embedder
        )
        assert {r["model_version"] for r in rows.values()} == {"openai:test-embed-64/native"}
        old_table = store.table(minilm.model_version)
        assert (old_table.version, old_table.count_rows()) == (old_version, old_rows)
        hits = store.search(minilm.model_version, minilm.embed(["while loop"])[0], 3)
        assert hits.num_rows == 3 and np.isfinite(hits.column("score").to_numpy()).all()
