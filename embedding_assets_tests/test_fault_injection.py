"""SIGKILL the materializing process at many points; after a plain re-run the table equals the oracle."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from embedding_assets.core.embedders import Embedder
from embedding_assets.core.index import Index
from embedding_assets.core.settings import Settings
from embedding_assets.core.store import VectorStore
from embedding_assets.refresh import refresh
from embedding_assets_tests.conftest import write_topics
from embedding_assets_tests.dagster_dev import PROJECT_ROOT, project_env
from embedding_assets_tests.fault_worker import POINTS
from embedding_assets_tests.pipeline_helpers import SPARE_TOPICS, expected_index, random_edit

pytestmark = [pytest.mark.slow, pytest.mark.reliability]
# `make reliability` sets FAULT_TRIALS=all for the whole matrix: the 1st, 2nd and 3rd call at every one of
# the 18 points, and 6 random times. `make test` kills at the 1st call of 8 points, one per state a kill can
# leave behind, and at 1 random time: mid-batch in the model, a half-written staged file, just before, during
# and after the upsert commit, between the upsert and the delete of vanished chunks, with the rows committed
# but the shard's state not recorded, and mid-append to the registry (the first table's promotion). The 10
# left out leave one of those states again: every embed and stage_write point dies before a staged file is
# renamed (a leftover partial file), a LanceDB commit (delete, state, registry append) lands whole or not at
# all, delete:after is fingerprint:before after a delete; fingerprint:after is also killed in make test by
# test_models_e2e's two-model refresh.
ALL_TRIALS = os.environ.get("FAULT_TRIALS") == "all"
QUICK_POINTS = (
    "registry:during",
    "embed:during",
    "stage_write:during",
    "commit:before",
    "commit:during",
    "commit:after",
    "delete:before",
    "fingerprint:before",
)
NTH_CALLS = (1, 2, 3) if ALL_TRIALS else (1,)
RANDOM_TIME_TRIALS = 6 if ALL_TRIALS else 1


def check_table(settings: Settings, embedder: Embedder) -> tuple[int, int, int]:
    """(rows checked, rows lost, duplicate rows) of the table against the oracle; fails on any mismatch."""
    rows = (
        VectorStore(settings.lancedb_uri)
        .table(embedder.model_version)
        .search()
        .select(["chunk_id", "doc_id", "chunk_hash", "model_version"])
        .to_arrow()
        .to_pylist()
    )
    stored = {r["chunk_id"]: (r["doc_id"], r["chunk_hash"]) for r in rows}
    oracle = expected_index(settings, embedder)
    lost = len(oracle.keys() - stored.keys())
    duplicates = len(rows) - len(stored)
    assert (lost, duplicates) == (0, 0) and stored == oracle
    assert {r["model_version"] for r in rows} == {embedder.model_version}
    return len(rows), lost, duplicates


def shrink_longest(source: Path) -> None:
    """Cut the longest document to a quarter: the next refresh upserts its first chunk, then deletes the rest."""
    path = max(source.glob("*.txt"), key=lambda p: (p.stat().st_size, p.name))
    path.write_text(path.read_text()[: path.stat().st_size // 4])


def test_sigkill_anywhere_then_rerun_restores_the_exact_index(
    tmp_path: Path, minilm: Embedder, reliability_log: Callable[[dict], None]
) -> None:
    env = project_env(tmp_path, shards="4")
    source = write_topics(tmp_path / "source")
    (source / "records.jsonl").write_text(
        "\n".join(json.dumps({"id": f"rec-{i}", "text": f"Record {i} about statement number {i}."}) for i in range(6))
    )
    settings = Settings.from_env(env)
    rng, spare = random.Random(5), list(SPARE_TOPICS)
    points = POINTS if ALL_TRIALS else QUICK_POINTS
    assert set(points) <= set(POINTS)
    trials = [
        (p, nth, round(rng.uniform(0.0, 0.05), 3))
        # The registry appends once, when the first table is promoted: its points come first, from nothing.
        for p in sorted(points, key=lambda p: not p.startswith("registry"))
        for nth in NTH_CALLS
    ]
    trials += [("random", 0, round(rng.uniform(2.0, 4.5), 2)) for _ in range(RANDOM_TIME_TRIALS)]
    faults: Counter = Counter()
    rows_checked = lost = duplicates = 0
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for point, nth, delay in trials:
            if faults.total():  # the first trial builds the index from nothing
                random_edit(source, rng, spare)
                random_edit(source, rng, spare)
            if point.startswith("delete:"):
                shrink_longest(source)  # so that a write deletes vanished chunks after its upsert
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "embedding_assets_tests.fault_worker",
                    "none" if point == "random" else point,
                    str(nth),
                    str(delay),
                ],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group, killed whole
            )
            if point == "random":
                time.sleep(delay)
                os.killpg(worker.pid, signal.SIGKILL)
            _, stderr = worker.communicate(timeout=300)
            assert worker.returncode in (0, -9), stderr.decode()[-3000:]
            if worker.returncode == -9:
                faults[point] += 1
            refresh(Index(settings), instance)  # the plain re-run, in this process
            checked, missing, doubled = check_table(settings, minilm)
            rows_checked, lost, duplicates = rows_checked + checked, lost + missing, duplicates + doubled
            assert refresh(Index(settings), instance).runs == [], "after recovery nothing may be stale"
    reliability_log(
        {
            "suite": "fault injection (SIGKILL)",
            "trials": len(trials),
            "faults": dict(faults),
            "rows_checked": rows_checked,
            "rows_lost": lost,
            "duplicates": duplicates,
        }
    )
    if ALL_TRIALS:  # a later call of a point may never come (the registry appends once per model)
        assert faults.total() >= len(POINTS) * len(NTH_CALLS) // 2, faults
    else:  # every chosen point's first call comes in its refresh, so each of those trials must kill
        assert {point: faults[point] for point in QUICK_POINTS} == dict.fromkeys(QUICK_POINTS, 1), faults
