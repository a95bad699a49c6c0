"""Real parallel processes: different shards write one table without losing anything; runs of one
shard never interleave; two indexes sharing a staging folder never mix their files."""

import itertools
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from embedding_assets.core.embedders import Embedder
from embedding_assets.core.settings import Settings
from embedding_assets.core.store import VectorStore
from embedding_assets_tests.conftest import TEST_TOPICS, write_topics
from embedding_assets_tests.dagster_dev import PROJECT_ROOT, project_env
from embedding_assets_tests.pipeline_helpers import SPARE_TOPICS, expected_index, indexed, random_edit

pytestmark = [pytest.mark.slow, pytest.mark.reliability]
MODEL = "local_all_minilm_l6_v2"  # the default model's chain, as `--select` takes it
ASSETS = f"raw_documents,wordpiece_all_minilm_l6_v2_onnx_int8/chunks,{MODEL}/embeddings,{MODEL}/vector_table"


def parallel_materializations(env: dict[str, str], shards: list[str]) -> None:
    """One `dagster asset materialize` process per shard, all at once; every one must succeed."""
    procs = [
        subprocess.Popen(
            [
                str(PROJECT_ROOT / ".venv/bin/dagster"),
                "asset",
                "materialize",
                "-m",
                "embedding_assets.definitions",
                "--select",
                ASSETS,
                "--partition",
                shard,
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for shard in shards
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr.decode()[-3000:]


def test_parallel_runs_lose_nothing_and_duplicate_nothing(
    tmp_path: Path, minilm: Embedder, reliability_log: Callable[[dict], None]
) -> None:
    env = project_env(tmp_path, shards="4")
    source = write_topics(tmp_path / "source")
    settings = Settings.from_env(env)
    dg.DagsterInstance.from_config(env["DAGSTER_HOME"]).dispose()  # create the instance's databases once
    checked = 0
    for round_ in range(2):
        if round_:
            (source / "while.txt").write_text("The while statement\n\nShort now.")
            (source / "new.md").write_text("# New\n\nA document added between the rounds.")
        # every shard in its own process, plus a second writer of s001 racing the first
        parallel_materializations(env, ["s000", "s001", "s002", "s003", "s001"])
        stored = indexed(settings, minilm.model_version)  # fails on duplicate rows
        assert stored == expected_index(settings, minilm)
        checked += len(stored)
    reliability_log(
        {
            "suite": "concurrency (5 processes, 4 shards, one table)",
            "trials": 2,
            "faults": {"racing writers of one shard": 2},
            "rows_checked": checked,
            "rows_lost": 0,
            "duplicates": 0,
        }
    )


def test_the_shard_lock_serializes_processes(tmp_path: Path) -> None:
    log = tmp_path / "intervals.txt"
    code = (
        "import sys, time; from embedding_assets.core.staging import Staging\n"
        "with Staging(sys.argv[1]).lock('s001', 'raw_documents'):\n"
        "    start = time.monotonic(); time.sleep(0.4)\n"
        "    open(sys.argv[2], 'a').write(f'{start} {time.monotonic()}\\n')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "staging"), str(log)]) for _ in range(4)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    intervals = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    assert len(intervals) == 4
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(intervals))


WRITER = """
import sys
from datetime import UTC, datetime
import pyarrow as pa
from embedding_assets.core.store import VectorStore, row_schema
store, schema = VectorStore(sys.argv[1]), row_schema(4, model_version="toy:hashing@1/4d", shard_count=2)
def rows(version, count):
    return pa.Table.from_pylist([{"chunk_id": f"d{i}#0", "doc_id": f"d{i}", "shard": "s000", "position": 0,
        "text": f"v{version}", "vector": [0.5] * 4, "chunk_hash": f"h{version}-{i}", "doc_hash": f"v{version}",
        "token_count": 1, "model_version": "toy:hashing@1/4d", "embedded_at": datetime(2026, 1, 1, tzinfo=UTC)}
        for i in range(count)], schema=schema)
for n in range(int(sys.argv[2])):
    store.replace_shard("s000", rows(n % 2, 40 if n % 2 else 25))
"""


def test_readers_never_miss_a_current_chunk_while_a_shard_is_written(
    tmp_path: Path, reliability_log: Callable[[dict], None]
) -> None:
    """A shard write is an upsert, then a delete of the vanished chunks: a reader sees the old shard, the
    new one, or the new one plus the chunks about to be deleted, never a shard missing a current chunk."""
    uri = str(tmp_path / "lancedb")
    subprocess.run([sys.executable, "-c", WRITER, uri, "1"], check=True)  # the table exists, in state 0
    writer = subprocess.Popen([sys.executable, "-c", WRITER, uri, "40"])
    store, seen, reads = VectorStore(uri), set(), 0
    while writer.poll() is None or reads == 0:
        rows = store.shard_rows("toy:hashing@1/4d", "s000", ["chunk_hash", "doc_hash"]).to_pylist()
        counts = Counter(r["doc_hash"] for r in rows)  # v0: d0..d24; v1: d0..d39
        assert counts in ({"v1": 40}, {"v0": 25}, {"v0": 25, "v1": 15}), counts
        assert len(rows) == len({r["chunk_hash"] for r in rows})
        seen |= set(counts)
        reads += 1
    assert writer.returncode == 0 and seen == {"v0", "v1"}
    reliability_log(
        {
            "suite": "atomic shard commits (reader vs writer)",
            "trials": reads,
            "faults": {"concurrent commits": 40},
            "rows_checked": reads * 25,
            "rows_lost": 0,
            "duplicates": 0,
        }
    )


def test_two_indexes_sharing_the_default_staging_refreshed_at_once_stay_apart(
    tmp_path: Path, minilm: Embedder, reliability_log: Callable[[dict], None]
) -> None:
    """Two indexes of different sources and LanceDB locations, run from one working folder with the default
    staging (`data/staging`), refreshed at the same time after random edits to both: each table equals its
    own source after every round."""
    work, rng = tmp_path / "work", random.Random(16)
    work.mkdir()
    indexes = []
    for name, topics in (("a", TEST_TOPICS[:6]), ("b", TEST_TOPICS[6:])):
        (tmp_path / name).mkdir()
        env = project_env(tmp_path / name, shards="4")
        del env["EMBEDDING_ASSETS_STAGING_DIR"]  # the default, relative to the working folder
        write_topics(tmp_path / name / "source", topics)
        indexes.append((env, Settings.from_env(env | {"EMBEDDING_ASSETS_STAGING_DIR": str(work / "data/staging")})))
    checked, spare = 0, list(SPARE_TOPICS)
    for round_ in range(3):
        for _, settings in indexes:
            for _ in range(2):
                random_edit(Path(settings.source_dir), rng, spare)
        procs = [
            subprocess.Popen(
                [str(PROJECT_ROOT / ".venv/bin/embedding-assets"), "refresh"],
                cwd=work,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for env, _ in indexes
        ]
        for proc in procs:
            _, stderr = proc.communicate(timeout=600)
            assert proc.returncode == 0, stderr.decode()[-3000:]
        for _, settings in indexes:
            stored = indexed(settings, minilm.model_version)
            assert stored == expected_index(settings, minilm), f"round {round_}: {settings.source_dir}"
            checked += len(stored)
    assert len(list((work / "data/staging").glob("index-*/index.json"))) == 2
    reliability_log(
        {
            "suite": "two indexes, one default staging folder, refreshed at once",
            "trials": 3,
            "faults": {"concurrent refreshes of two indexes": 3},
            "rows_checked": checked,
            "rows_lost": 0,
            "duplicates": 0,
        }
    )
