"""The definitions load, have the documented shape (and the asset-spec snapshot), and refuse misconfiguration
with one clear message."""

import dataclasses
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from syrupy.assertion import SnapshotAssertion

from embedding_assets.assembly import build_definitions, build_resources
from embedding_assets.automation import evaluate_after_refresh, follow_upstream
from embedding_assets.checks import INDEX_MATCHES_SOURCE
from embedding_assets.core.chunking import CHUNKER_VERSION
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.profiles import instance_config
from embedding_assets.core.settings import Settings
from embedding_assets.core.table_checks import EMBEDDING_DRIFT, VECTOR_TABLE_INTEGRITY
from embedding_assets.metadata import embedding_pool

MODEL = "local_all_minilm_l6_v2"  # the default model's slug: its assets' key prefix and group
CHUNKS = "wordpiece_all_minilm_l6_v2_onnx_int8/chunks"  # its chunking profile's chunks
CHAIN = ["source_documents", "raw_documents", CHUNKS, f"{MODEL}/embeddings", f"{MODEL}/vector_table"]
GROUPS = {"source_documents": "documents", "raw_documents": "documents", CHUNKS: "documents"}


def key(user_string: str) -> dg.AssetKey:
    return dg.AssetKey.from_user_string(user_string)


def test_asset_graph_is_the_partitioned_chain(settings: Settings) -> None:
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {*CHAIN, f"{MODEL}/retrieval_eval", f"{MODEL}/vector_index"}
    for unpartitioned in (f"{MODEL}/retrieval_eval", f"{MODEL}/vector_index"):
        node = graph.get(key(unpartitioned))
        assert node.parent_keys == {key(f"{MODEL}/vector_table")} and node.partitions_def is None
    assert {k.name for k in graph.asset_check_keys if k.asset_key == key(f"{MODEL}/vector_index")} == {"ann_recall"}
    for upstream, downstream in itertools.pairwise(CHAIN):
        assert graph.get(key(downstream)).parent_keys == {key(upstream)}
    for name in CHAIN:
        node = graph.get(key(name))
        assert node.partitions_def.get_partition_keys() == ["s000", "s001", "s002", "s003"]
        assert node.backfill_policy == (dg.BackfillPolicy.single_run() if node.is_materializable else None)
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == GROUPS | dict.fromkeys(keys - set(GROUPS), f"model_{MODEL}")  # the model's own group
    assert graph.get(key(f"{MODEL}/embeddings")).code_version == "local:all-MiniLM-L6-v2-onnx-int8@1.0.0/384d"
    assert graph.get(key(CHUNKS)).code_version == (
        f"chunker-v{CHUNKER_VERSION}/max200/overlap32/wordpiece:all-MiniLM-L6-v2-onnx-int8"
    )
    assert defs.resolve_assets_def(key(f"{MODEL}/embeddings")).op.pool is None  # the local profile limits no pool
    assert embedding_pool("production", MODEL) == f"embedding_api_{MODEL}"  # elsewhere, the model's own
    checks = {k.name for k in graph.asset_check_keys if k.asset_key == key(f"{MODEL}/vector_table")}
    assert checks == {VECTOR_TABLE_INTEGRITY, INDEX_MATCHES_SOURCE, EMBEDDING_DRIFT}


def test_the_openai_key_reaches_the_resource_only_as_an_env_var(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-in-metadata")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    openai_settings = Settings(**{**settings.__dict__, "model": "openai:text-embedding-3-small"})
    pipeline = build_resources(openai_settings)["pipeline"]
    assert isinstance(pipeline.openai_api_key, dg.EnvVar) and pipeline.openai_api_key.env_var_name == "OPENAI_API_KEY"
    assert isinstance(pipeline.openai_base_url, dg.EnvVar)
    assert build_resources(settings)["pipeline"].openai_api_key is None
    defs = build_definitions(openai_settings)
    assert defs.resolve_asset_graph().get(key("openai_text_embedding_3_small/embeddings")).code_version == (
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
    shutil.copy(instance_config("local"), tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        config = instance.get_concurrency_config()
        # No default pool limit locally: a killed in-process run would hold its slot forever.
        assert config.pool_config.default_pool_limit is None
        assert config.run_queue_config.max_concurrent_runs == 4


def describe(condition: dg.AutomationCondition | None) -> str | None:
    """The condition tree, one node a line: its name (with its parameters) and label, children indented."""

    def lines(node: dg.AutomationCondition, depth: int) -> Iterator[str]:
        label = node.get_label()
        yield "  " * depth + node.name + (f" [{label}]" if label else "")
        for child in node.children:
            yield from lines(child, depth + 1)

    return None if condition is None else "\n".join(lines(condition, 0))


def asset_specs(defs: dg.Definitions) -> list[dict[str, Any]]:
    """Every asset's definition as plain values, sorted by key: what the snapshot holds. No tmp paths."""
    graph = defs.resolve_asset_graph()
    specs = []
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        op = defs.resolve_assets_def(key).op if node.is_materializable else None
        backfill, retry, freshness = node.backfill_policy, op.retry_policy if op else None, node.freshness_policy
        specs.append(
            {
                "key": key.to_user_string(),
                "partitions": node.partitions_def.get_partition_keys() if node.partitions_def else None,
                "code_version": node.code_version,
                "automation_condition": describe(node.automation_condition),
                "backfill_policy": None
                if backfill is None
                else {"type": backfill.policy_type.value, "max_partitions_per_run": backfill.max_partitions_per_run},
                "retry_policy": None
                if retry is None
                else {
                    "max_retries": retry.max_retries,
                    "delay": retry.delay,
                    "backoff": retry.backoff.value if retry.backoff else None,
                    "jitter": retry.jitter.value if retry.jitter else None,
                },
                "pool": op.pool if op else None,
                "freshness_policy": None if freshness is None else json.loads(dg.serialize_value(freshness)),
                "group": node.group_name,
                "kinds": sorted(node.kinds),
                "deps": sorted(k.to_user_string() for k in node.parent_keys),
                "checks": sorted(k.name for k in node.check_keys),
            }
        )
    return specs


def test_the_asset_specs_match_the_snapshot(settings: Settings, tmp_path: Path, snapshot: SnapshotAssertion) -> None:
    """After a deliberate change: pytest embedding_assets_tests/test_defs.py --snapshot-update, and review the diff."""
    specs = asset_specs(build_definitions(settings))
    assert str(tmp_path) not in repr(specs) and not re.search(r"0x[0-9a-f]{6,}", repr(specs))  # stable text only
    assert specs == snapshot


def test_a_chunker_change_shows_in_the_specs_as_the_chunks_code_version(settings: Settings) -> None:
    default = asset_specs(build_definitions(settings))
    smaller = asset_specs(build_definitions(dataclasses.replace(settings, chunk_tokens=150)))
    changed = [(a["key"], field) for a, b in zip(default, smaller, strict=True) for field in a if a[field] != b[field]]
    assert changed == [(CHUNKS, "code_version")]


def test_the_specs_tell_the_automation_conditions_apart(settings: Settings) -> None:
    specs = {spec["key"]: spec["automation_condition"] for spec in asset_specs(build_definitions(settings))}
    eager = describe(dg.AutomationCondition.eager())
    table = specs[f"{MODEL}/vector_table"]
    assert table == specs[CHUNKS] == describe(follow_upstream()) != eager
    assert "code_version_changed" in table and "code_version_changed" not in eager
    # A new model's missing shards are its backfill sensor's: unlike eager(), nothing here requests them.
    assert "newly_missing" in eager and "newly_missing" not in table
    assert specs[f"{MODEL}/retrieval_eval"] == describe(evaluate_after_refresh())
    assert specs[f"{MODEL}/retrieval_eval"].split("\n", 1)[1] == eager.split("\n", 1)[1]  # eager(), its own label
