"""Declarative automation: only changed shards follow upstream, and a chunker change refreshes every
shard; a new model's missing shards are left to its backfill sensor, which fills a new table while the
old one stays untouched and searchable."""

import dataclasses

import dagster as dg
import numpy as np
import pytest

from embedding_assets.assembly import REFRESH_JOB, build_definitions
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.index import Index
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_keys
from embedding_assets.core.store import VectorStore
from embedding_assets_tests.pipeline_helpers import asset_key, expected_index, materialize, table_rows, tick_sensor

pytestmark = pytest.mark.slow
DOWNSTREAM = ("chunks", "embeddings", "vector_table")
RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def requested(result, key: dg.AssetKey) -> set[str]:
    return set(result.get_requested_partitions(key))


def test_only_the_refreshed_shard_moves_a_chunker_change_moves_all_and_a_new_model_is_backfilled(
    settings: Settings, minilm: Embedder, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    defs = build_definitions(settings)
    chain = {a: asset_key(settings, a) for a in DOWNSTREAM}
    with dg.instance_for_test() as instance:
        materialize(settings, instance)
        baseline = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert baseline.total_requested == 0

        defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, partition_key="s002", asset_selection=[dg.AssetKey("raw_documents")]
        )
        followed = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=baseline.cursor)
        assert {a: requested(followed, k) for a, k in chain.items()} == {a: {"s002"} for a in DOWNSTREAM}
        materialize(settings, instance, partition="s002")
        quiet = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=followed.cursor)
        assert {a: requested(quiet, k) for a, k in chain.items()} == {a: set() for a in DOWNSTREAM}
        # the table changed: re-evaluate it, and fold the new rows into the index
        assert quiet.get_num_requested(asset_key(settings, "retrieval_eval")) == 1
        assert quiet.get_num_requested(asset_key(settings, "vector_index")) == 1

        smaller = dataclasses.replace(settings, chunk_tokens=150)  # the chunks' code version changes
        rechunked = dg.evaluate_automation_conditions(
            defs=build_definitions(smaller), instance=instance, cursor=quiet.cursor
        )
        for name, key in chain.items():  # the re-cut chunks, and everything downstream of them in the same tick
            assert requested(rechunked, key) == set(shard_keys(settings.shards)), name

        # Switching EMBEDDING_ASSETS_MODEL: automation requests none of the new model's missing shards (not
        # even its chunks, in the new tokenizer's profile); its backfill sensor requests every shard, at a
        # low priority, and that run fills the new table.
        old_table = VectorStore(settings.lancedb_uri).table(minilm.model_version)
        old_version, old_rows = old_table.version, old_table.count_rows()
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", server_url)
        other = Settings(**{**settings.__dict__, "model": "openai:test-embed-64"})
        new_defs = build_definitions(other)
        new_chain = [asset_key(other, a) for a in DOWNSTREAM]
        assert new_chain[0] == dg.AssetKey(["cl100k_base", "chunks"])  # the chunker's tokenizer changes too
        switched = dg.evaluate_automation_conditions(defs=new_defs, instance=instance, cursor=quiet.cursor)
        assert switched.total_requested == 0

        def backfill_tick() -> dg.SensorResult:
            return tick_sensor(new_defs, "openai_test_embed_64_backfill_sensor", other, instance)

        (request,) = backfill_tick().run_requests
        assert (request.tags[RANGE[0]], request.tags[RANGE[1]]) == ("s000", "s003")
        assert request.asset_selection == new_chain and request.tags["dagster/priority"] == "-1"
        new_defs.resolve_job_def(REFRESH_JOB).execute_in_process(
            instance=instance, tags=request.tags, asset_selection=request.asset_selection
        )
        done = backfill_tick()
        assert done.run_requests == [] and done.skip_reason.skip_message.startswith("complete: 4/4 shards")

        store = VectorStore(settings.lancedb_uri)
        new_table = store.table("openai:test-embed-64/native")
        assert new_table.name != old_table.name and new_table.schema.field("vector").type.list_size == 64
        rows = table_rows(other, "openai:test-embed-64/native", ["doc_id", "chunk_hash", "model_version"])
        assert {k: (r["doc_id"], r["chunk_hash"]) for k, r in rows.items()} == expected_index(
            other, Index(other).models[0].embedder
        )
        assert {r["model_version"] for r in rows.values()} == {"openai:test-embed-64/native"}
        old_table = store.table(minilm.model_version)
        assert (old_table.version, old_table.count_rows()) == (old_version, old_rows)
        hits = store.search(minilm.model_version, minilm.embed(["while loop"])[0], 3)
        assert hits.num_rows == 3 and np.isfinite(hits.column("score").to_numpy()).all()
