"""Several active models at once, on real tables: chunks per tokenizer, SIGKILL during a two-model
refresh, and a candidate's budget that stops its own backfill and never the live model's refreshes."""

import dataclasses
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from embedding_assets.assembly import REFRESH_JOB, build_definitions
from embedding_assets.assets import chain_keys
from embedding_assets.core.index import Index
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_keys
from embedding_assets.refresh import refresh
from embedding_assets.shard_runs import range_tags
from embedding_assets_tests.conftest import write_topics
from embedding_assets_tests.dagster_dev import PROJECT_ROOT, project_env
from embedding_assets_tests.openai_server import call
from embedding_assets_tests.pipeline_helpers import expected_index, indexed, tick_sensor
from embedding_assets_tests.test_fault_injection import shrink_longest

pytestmark = pytest.mark.slow
LOCAL, TOY = "local:all-MiniLM-L6-v2", "toy:hashing?dimensions=64"


def both_equal_the_source(settings: Settings) -> None:
    for model in Index(settings).models:
        assert indexed(settings, model.model_version) == expected_index(settings, model.embedder), model.slug


def test_models_with_different_tokenizers_keep_their_own_chunks_and_one_tokenizer_chunks_once(
    settings: Settings,
) -> None:
    settings = dataclasses.replace(settings, models=f"{LOCAL},{TOY},toy:hashing?dimensions=16")
    index = Index(settings)
    local, toy, small_toy = index.models
    assert list(index.chunk_profiles) == [local.profile, toy.profile] and toy.profile == small_toy.profile
    defs = build_definitions(settings)
    chunk_assets = [k for k in defs.resolve_asset_graph().get_all_asset_keys() if k.path[-1] == "chunks"]
    assert sorted(chunk_assets) == sorted(dg.AssetKey([p, "chunks"]) for p in index.chunk_profiles)
    with dg.instance_for_test() as instance:
        report = refresh(index, instance)
        both_equal_the_source(settings)
        rechunked = Counter[str]()
        for key in chunk_assets:
            for record in instance.fetch_materializations(key, limit=100).records:
                rechunked[key.path[0]] += record.asset_materialization.metadata["documents_rechunked"].value
    documents = sum(len(list(index.documents(shard))) for shard in shard_keys(settings.shards))
    # Each profile cut every document exactly once, although the toy profile's chunks ran in two models' runs.
    assert rechunked == {local.profile: documents, toy.profile: documents}
    assert len(report.runs) == 3
    for shard in shard_keys(settings.shards):
        for model in (local, toy):
            staged = pq.read_table(index.shard_work(shard, model).chunks_path).to_pylist()
            counted = model.embedder.count_tokens([row["text"] for row in staged])
            assert [row["token_count"] for row in staged] == counted  # sized in the model's own tokens


def test_sigkill_during_a_two_model_refresh_then_rerun_restores_both_tables(tmp_path: Path) -> None:
    env = project_env(tmp_path, shards="4") | {"EMBEDDING_ASSETS_MODELS": f"{LOCAL},{TOY}"}
    env.pop("EMBEDDING_ASSETS_MODEL", None)
    source = write_topics(tmp_path / "source")
    settings = Settings.from_env(env)
    rng = random.Random(7)
    # Each trial edits one document, so a refresh writes one shard per model: the live model's write is
    # call 1 of a point, the other model's call 2.
    trials = [("none", 0), ("commit:before", 1), ("commit:before", 2), ("commit:during", 2), ("delete:before", 2)]
    trials += [("fingerprint:before", 2), ("fingerprint:after", 1), ("embed:during", 1)]
    kills = 0
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for point, nth in trials:
            if point.startswith("delete:"):
                shrink_longest(source)  # so that the write deletes vanished chunks after its upsert
            elif point != "none":
                edited = rng.choice(sorted(source.glob("*.txt")))
                edited.write_text(edited.read_text() + "\n\nAn appended sentence about loops and names.")
            worker = subprocess.Popen(
                [sys.executable, "-m", "embedding_assets_tests.fault_worker", point, str(nth), "0.01"],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            _, stderr = worker.communicate(timeout=300)
            assert worker.returncode in (0, -signal.SIGKILL), stderr.decode()[-3000:]
            kills += worker.returncode == -signal.SIGKILL
            refresh(Index(settings), instance)
            both_equal_the_source(settings)
            assert refresh(Index(settings), instance).runs == [], f"stale after recovering from {point}"
    assert kills == len(trials) - 1


def test_a_candidate_over_its_budget_pauses_its_backfill_and_never_the_live_models_refresh(
    settings: Settings, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server_url)
    call(server_url, "/control", {"reset": True, "rate_limit_first": 0, "rate_limit_every": 0})
    candidate = "openai:test-embed-64?price_per_mtok=1000&run_budget_usd=0.01"
    settings = dataclasses.replace(settings, models=f"{LOCAL},{candidate}")
    index = Index(settings)
    live, cand = index.models
    defs = build_definitions(settings)
    job = defs.resolve_job_def(REFRESH_JOB)
    keys = shard_keys(settings.shards)
    with dg.instance_for_test() as instance:
        job.execute_in_process(instance=instance, tags=range_tags(keys[0], keys[-1]), asset_selection=chain_keys(live))

        def tick(name: str) -> dg.SensorResult:
            return tick_sensor(defs, name, settings, instance)

        launched = tick(f"{cand.slug}_backfill_sensor")
        (request,) = launched.run_requests
        assert request.tags["dagster/priority"] == "-1" and request.tags["embedding_assets/backfill"] == cand.slug
        assert request.asset_selection == chain_keys(cand)[1:]
        refused = job.execute_in_process(
            instance=instance, tags=request.tags, asset_selection=request.asset_selection, raise_on_error=False
        )
        assert not refused.success
        failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
        assert "over the run budget of $0.0100" in str(failure.event_specific_data.error)
        assert call(server_url, "/stats")["inputs"] == 0  # refused before any request

        paused = tick(f"{cand.slug}_backfill_sensor")
        assert paused.run_requests == [] and paused.skip_reason is not None
        assert f"backfill run {refused.run_id} failed" in (paused.skip_reason.skip_message or "")

        (Path(settings.source_dir) / "while.txt").write_text("The while statement, in one new line.")
        change = tick("source_change_sensor")
        for run in change.run_requests:
            assert run.asset_selection == chain_keys(live)  # the live model's chain only
            job.execute_in_process(instance=instance, tags=run.tags, asset_selection=run.asset_selection)
        assert change.run_requests and indexed(settings, live.model_version) == expected_index(settings, live.embedder)
