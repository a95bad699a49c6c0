"""End to end under a running `dagster dev` (webserver + daemon): the sensors and automation keep the
table equal to the source with no command from us, refreshing only the shard that changed."""

import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from embedding_assets.core.embedders import Embedder
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_of
from embedding_assets_tests.conftest import write_topics
from embedding_assets_tests.dagster_dev import backfill, dagster_dev, project_env
from embedding_assets_tests.pipeline_helpers import expected_index, indexed

pytestmark = pytest.mark.slow
TIMEOUT = 300


def refreshes(home: Path) -> Counter:
    """How many times each shard of the (default) model's vector_table has been materialized."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        key = dg.AssetKey(["local_all_minilm_l6_v2", "vector_table"])
        records = instance.fetch_materializations(key, limit=1000).records
        return Counter(r.partition_key for r in records)


def idle(home: Path) -> bool:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        busy = instance.get_runs(
            filters=dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
            )
        )
        return not busy and all(b.status.value != "REQUESTED" for b in instance.get_backfills())


def test_the_daemon_keeps_the_index_equal_to_the_source(tmp_path: Path, minilm: Embedder) -> None:
    env = project_env(tmp_path, shards="4", scan_interval_seconds="5", automation_interval_seconds="5")
    write_topics(tmp_path / "source")
    settings = Settings.from_env(env)
    home = tmp_path / "home"
    with dagster_dev(env, tmp_path / "dagster-dev.log") as dev:
        dev.wait_for(
            lambda: indexed(settings, minilm.model_version) == expected_index(settings, minilm),
            "first index built by the sensors",
            TIMEOUT,
        )
        dev.wait_for(lambda: idle(home), "idle daemon", TIMEOUT)
        before = refreshes(home)
        assert set(before) == {"s000", "s001", "s002", "s003"}

        (tmp_path / "source" / "while.txt").write_text("The while statement\n\nNow a one-line document.")
        dev.wait_for(
            lambda: indexed(settings, minilm.model_version) == expected_index(settings, minilm),
            "the edit indexed",
            TIMEOUT,
        )
        time.sleep(15)  # several sensor and automation ticks: nothing else may run
        dev.wait_for(lambda: idle(home), "idle daemon", TIMEOUT)
        after = refreshes(home)
        assert after - before == Counter({shard_of("while.txt", settings.shards): 1})

        backfill(env, "s000,s001")
        dev.wait_for(
            lambda: refreshes(home)["s001"] > after["s001"] and refreshes(home)["s000"] > after["s000"],
            "the queued backfill executed by the daemon",
            TIMEOUT,
        )
        assert indexed(settings, minilm.model_version) == expected_index(settings, minilm)
