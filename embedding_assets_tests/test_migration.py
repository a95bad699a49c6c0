"""Side-by-side migration on real tables: the local model live, an OpenAI-compatible model as candidate,
both active (EMBEDDING_ASSETS_MODELS) so that either can be promoted or rolled back to."""

import dataclasses
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from embedding_assets import cli
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.registry import Registry
from embedding_assets.core.settings import Settings
from embedding_assets.core.store import VectorStore
from embedding_assets.core.table_checks import EMBEDDING_DRIFT
from embedding_assets_tests.openai_server import call
from embedding_assets_tests.pipeline_helpers import (
    asset_key,
    check_evaluations,
    materialize,
    metadata,
    run_checks,
    settings_env,
)

pytestmark = pytest.mark.slow
CANDIDATE = "openai:test-embed-64/native"
GOLDEN = [  # written for the 12 test topics
    {"query": "leave a loop early before it finishes", "relevant": ["break.txt"]},
    {"query": "skip the rest of this iteration and go to the next one", "relevant": ["continue.txt"]},
    {"query": "run code only when a condition holds", "relevant": ["if.txt"]},
    {"query": "repeat statements as long as an expression is true", "relevant": ["while.txt"]},
    {"query": "load a module from a package", "relevant": ["import.txt"]},
    {
        "query": "signal an error condition to the caller",
        "relevant": ["raise.txt", "exceptions.txt"],
        "grades": {"raise.txt": 2, "exceptions.txt": 1},
    },
    {"query": "remove a name binding or a list item", "relevant": ["del.txt"]},
    {"query": "debugging checks that can be disabled", "relevant": ["assert.txt"]},
]


@pytest.fixture
def env(settings: Settings, server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The CLI's environment for ``settings``, with the local OpenAI-compatible server and a golden set."""
    golden = tmp_path / "golden.jsonl"
    golden.write_text("\n".join(json.dumps(q) for q in GOLDEN))
    settings = dataclasses.replace(settings, golden_set=str(golden))
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    call(server_url, "/control", {"reset": True, "rate_limit_first": 0, "rate_limit_every": 0})
    return settings


def candidate(settings: Settings, **changes) -> Settings:
    return dataclasses.replace(settings, model="openai:test-embed-64", **changes)


def both_active(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """``settings`` with the local model and the candidate both active, in the CLI's environment too."""
    both = dataclasses.replace(settings, models="local:all-MiniLM-L6-v2,openai:test-embed-64")
    monkeypatch.delenv("EMBEDDING_ASSETS_MODEL")  # the one-model shorthand and the list may not both be set
    for name, value in settings_env(both).items():
        monkeypatch.setenv(name, value)
    return both


def test_promote_refuse_force_rollback_and_drop(
    env: Settings, minilm: Embedder, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = VectorStore(env.lancedb_uri)
    with dg.instance_for_test() as instance:
        materialize(env, instance)
        assert Registry(store.db).state().live == minilm.model_version  # the first table is live
        materialize(candidate(env), instance, partition="s000")
        capsys.readouterr()
        assert cli.main(["promote", CANDIDATE]) == 2  # not an active model: its table would not be kept fresh
        assert f"cannot promote {CANDIDATE}: it is not an active model" in capsys.readouterr().err

        both = both_active(env, monkeypatch)
        assert cli.main(["promote", CANDIDATE]) == 1
        assert "refused: 3 shard(s) are missing or stale for" in capsys.readouterr().out

        materialize(both, instance)
        assert cli.main(["promote", CANDIDATE]) == 1  # a bag-of-words model loses to MiniLM
        out = capsys.readouterr().out
        assert "refused by the eval gate" in out and f"| {minilm.model_version} | live |" in out
        assert Registry(store.db).state().live == minilm.model_version

        versions = {v: store.info(v).version for v in (minilm.model_version, CANDIDATE)}
        assert cli.main(["promote", CANDIDATE, "--force"]) == 0
        assert cli.main(["search", "leave a loop early"]) == 0
        assert f"answered by the live table ({CANDIDATE}; exact scan" in capsys.readouterr().out
        monkeypatch.setenv("EMBEDDING_ASSETS_MODELS", "openai:test-embed-64")  # the old model retired: not fresh
        assert cli.main(["rollback"]) == 2
        assert f"cannot roll back to {minilm.model_version}: it is not an active model" in capsys.readouterr().err
        monkeypatch.setenv("EMBEDDING_ASSETS_MODELS", both.models)
        assert cli.main(["rollback"]) == 0
        assert f"{minilm.model_version} is live again (was {CANDIDATE})" in capsys.readouterr().out
        assert {v: store.info(v).version for v in versions} == versions  # instant: no table was written

        assert cli.main(["drop", minilm.model_version]) == 2  # live tables are never dropped
        assert cli.main(["eval"]) == 0
        table = capsys.readouterr().out
        assert f"| {minilm.model_version} | live |" in table and f"| {CANDIDATE} | candidate |" in table
        assert cli.main(["drop", CANDIDATE]) == 0
        assert store.model_versions() == [minilm.model_version]


def test_retrieval_eval_asset_records_the_comparison(env: Settings, minilm: Embedder) -> None:
    with dg.instance_for_test() as instance:
        materialize(env, instance)
        live = metadata(instance, asset_key(env, "retrieval_eval"), None)
        assert live["model_version"] == live["live_model_version"] == minilm.model_version
        assert 0.5 < live["recall_at_10"] <= 1.0 and 0 < live["ndcg_at_10"] <= 1.0
        materialize(candidate(env), instance)
        compared = metadata(instance, asset_key(candidate(env), "retrieval_eval"), None)  # the candidate's own
        assert compared["model_version"] == CANDIDATE and compared["live_recall_at_10"] == live["recall_at_10"]
        assert f"| {CANDIDATE} | candidate |" in compared["comparison"]


def test_budget_refuses_a_run_before_any_request(env: Settings, server_url: str) -> None:
    with dg.instance_for_test() as instance:
        cheap = candidate(env, price_per_mtok=0.02, run_budget_usd=0.00001)
        result = materialize(cheap, instance, raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert "over the run budget of $0.0000 (EMBEDDING_ASSETS_RUN_BUDGET_USD)" in str(
            failure.event_specific_data.error.message
        )
        assert call(server_url, "/stats")["embeddings_served"] == 0


def test_rate_limits_are_retried_and_counted(env: Settings, server_url: str) -> None:
    call(server_url, "/control", {"rate_limit_first": 2, "retry_after": 0.05})
    with dg.instance_for_test() as instance:
        materialize(candidate(env), instance, partition="s001")
        figures = metadata(instance, asset_key(candidate(env), "embeddings"), "s001")
        assert (figures["rate_limited"], figures["retries"]) == (2, 2)
        # two refused attempts, the one-off dimension probe of an unknown model, one batch of the shard's chunks
        assert figures["model_calls"] == 4
        assert figures["chunks_embedded"] == call(server_url, "/stats")["batch_sizes"][1]


def test_a_runs_new_texts_go_out_together_and_its_sums_count_every_request(env: Settings, server_url: str) -> None:
    """A run over every shard whose new texts fit one request sends one (after the dimension probe);
    the run's sums count it, retries and 429s included, though no shard made it alone."""
    call(server_url, "/control", {"rate_limit_first": 2, "retry_after": 0.05})
    with dg.instance_for_test() as instance:
        materialize(candidate(env), instance)
        stats = call(server_url, "/stats")
        run = metadata(instance, asset_key(candidate(env), "embeddings"), "s000")
        # one request of every shard's chunks, then the dimension probe (then the eval's and drift check's)
        assert stats["batch_sizes"][:2] == [run["run_chunks_embedded"], 1] and run["run_shards"] == 4
        assert (run["run_model_calls"], run["run_rate_limited"], run["run_retries"]) == (4, 2, 2)


def test_drift_check_warns_when_stored_vectors_change(env: Settings, minilm: Embedder) -> None:
    with dg.instance_for_test() as instance:
        materialize(env, instance, partition="s002")
        assert (EMBEDDING_DRIFT, None, True) in check_evaluations(run_checks(env, instance, "s002", [EMBEDDING_DRIFT]))
        table = VectorStore(env.lancedb_uri).table(minilm.model_version)
        rows = table.search().where("shard = 's002'").to_arrow()
        noise = np.random.default_rng(0).normal(size=(rows.num_rows, 384)).astype(np.float32)
        vectors = pa.array([v / np.linalg.norm(v) for v in noise], type=rows.schema.field("vector").type)
        perturbed = rows.set_column(rows.schema.get_field_index("vector"), "vector", vectors)
        table.merge_insert("chunk_id").when_matched_update_all().execute(perturbed.cast(table.schema))
        result = run_checks(env, instance, "s002", [EMBEDDING_DRIFT])
        assert (EMBEDDING_DRIFT, None, False) in check_evaluations(result)
        evaluation = next(
            e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
        )
        assert evaluation.severity == dg.AssetCheckSeverity.WARN
        assert evaluation.metadata["min_cosine"].value < 0.5
        assert evaluation.metadata["shards_sampled"].value == "s002"
