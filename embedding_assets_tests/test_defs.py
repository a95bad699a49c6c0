"""The definitions load, have the documented shape, and refuse misconfiguration with one clear message."""

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from embedding_assets.checks import INDEX_MATCHES_SOURCE
from embedding_assets.core.chunking import CHUNKER_VERSION
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.settings import Settings
from embedding_assets.core.table_checks import EMBEDDING_DRIFT, VECTOR_TABLE_INTEGRITY
from embedding_assets.definitions import build_definitions, build_resources

CHAIN = ["source_documents", "raw_documents", "chunks", "embeddings", "vector_table"]


def test_asset_graph_is_the_partitioned_chain(settings: Settings) -> None:
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {*CHAIN, "retrieval_eval"}
    evaluation = graph.get(dg.AssetKey("retrieval_eval"))
    assert evaluation.parent_keys == {dg.AssetKey("vector_table")} and evaluation.partitions_def is None
    for upstream, downstream in itertools.pairwise(CHAIN):
        assert graph.get(dg.AssetKey(downstream)).parent_keys == {dg.AssetKey(upstream)}
    for name in CHAIN:
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def.get_partition_keys() == ["s000", "s001", "s002", "s003"]
        assert node.backfill_policy == (dg.BackfillPolicy.single_run() if node.is_materializable else None)
    assert graph.get(dg.AssetKey("embeddings")).code_version == "local:all-MiniLM-L6-v2-onnx-int8@1.0.0/384d"
    assert graph.get(dg.AssetKey("chunks")).code_version == (
        f"chunker-v{CHUNKER_VERSION}/max200/overlap32/wordpiece:all-MiniLM-L6-v2-onnx-int8"
    )
    assert defs.resolve_assets_def(dg.AssetKey("embeddings")).op.pool == "embedding_api_local"
    checks = {k.name for k in graph.asset_check_keys if k.asset_key == dg.AssetKey("vector_table")}
    assert checks == {VECTOR_TABLE_INTEGRITY, INDEX_MATCHES_SOURCE, EMBEDDING_DRIFT}


def test_the_openai_key_reaches_the_resource_only_as_an_env_var(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-in-metadata")
    openai_settings = Settings(**{**settings.__dict__, "model": "openai:text-embedding-3-small"})
    embedder = build_resources(openai_settings)["embedder"]
    assert isinstance(embedder.api_key, dg.EnvVar) and embedder.api_key.env_var_name == "OPENAI_API_KEY"
    assert build_resources(settings)["embedder"].api_key is None
    defs = build_definitions(openai_settings)
    assert defs.resolve_asset_graph().get(dg.AssetKey("embeddings")).code_version == (
        "openai:text-embedding-3-small/1536d"
    )


def test_chunks_longer_than_the_model_reads_are_refused(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="CHUNK_TOKENS=300 is over what local:all-MiniLM-L6-v2 reads"):
        build_definitions(Settings(**{**settings.__dict__, "chunk_tokens": 300, "chunk_overlap": 32}))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EMBEDDING_ASSETS_MODEL": "local:bert"}, "unknown embedding model 'local:bert'"),
        (
            {"EMBEDDING_ASSETS_MODEL": "openai:text-embedding-3-small"},
            "model openai:text-embedding-3-small needs an API key: set OPENAI_API_KEY",
        ),
        ({"EMBEDDING_ASSETS_SHARDS": "lots"}, "EMBEDDING_ASSETS_SHARDS must be an integer"),
    ],
)
def test_loading_the_module_fails_fast_with_one_clear_message(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDDING_ASSETS_", "OPENAI_"))}
    done = subprocess.run(
        [sys.executable, "-c", "import embedding_assets.definitions"],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith(f"embedding_assets.core.errors.ConfigError: {message}")


def test_the_local_instance_config_loads(tmp_path: Path) -> None:
    shutil.copy(Path(__file__).parents[1] / "deploy" / "local" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        config = instance.get_concurrency_config()
        # No default pool limit locally: a killed in-process run would hold its slot forever.
        assert config.pool_config.default_pool_limit is None
        assert config.run_queue_config.max_concurrent_runs == 4
