"""The backfill commands the README documents, run as a user types them, against a real instance."""

import os
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from embedding_assets.core.embedders import Embedder
from embedding_assets.core.settings import Settings
from embedding_assets.core.store import VectorStore
from embedding_assets_tests.pipeline_helpers import asset_key, metadata, settings_env

pytestmark = pytest.mark.slow
DAGSTER = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "dagster"
# The whole chain of the default model, as `--select` takes it (asset keys as paths).
MODEL = "local_all_minilm_l6_v2"
ASSETS = f"raw_documents,wordpiece_all_minilm_l6_v2_onnx_int8/chunks,{MODEL}/embeddings,{MODEL}/vector_table"


def dagster(settings: Settings, home: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDDING_ASSETS_")}
    env.update(settings_env(settings))
    env["DAGSTER_HOME"] = str(home)
    done = subprocess.run(
        [str(DAGSTER), "asset", "materialize", "-m", "embedding_assets.definitions", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_partition_and_partition_range_backfills(settings: Settings, minilm: Embedder, tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    dagster(settings, home, "--select", ASSETS, "--partition-range", "s000...s002")
    dagster(settings, home, "--select", ASSETS, "--partition", "s003")
    counts = VectorStore(settings.lancedb_uri).shard_counts(minilm.model_version)
    assert set(counts) == {"s000", "s001", "s002", "s003"}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2, "a partition range must run as one run"
        for shard, rows in counts.items():
            assert metadata(instance, asset_key(settings, "vector_table"), shard)["rows"] == rows
