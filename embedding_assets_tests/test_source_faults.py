"""SIGKILL around a PostgreSQL source's change feed; after a plain re-run the table equals the table's rows.

The points: with a batch recorded in the change index but not acknowledged to the slot (it replays),
just after acknowledging (the index holds it; the runs did not happen), before the model embeds, and
during the LanceDB commit. Real PostgreSQL, real model, real Dagster instance, a real killed process.
"""

import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from embedding_assets.core.embedders import Embedder
from embedding_assets.core.index import Index
from embedding_assets.core.settings import Settings
from embedding_assets.refresh import refresh
from embedding_assets_tests.dagster_dev import PROJECT_ROOT, project_env
from embedding_assets_tests.pipeline_helpers import documents, expected_chunks_of, indexed, settings_env, table_texts

pytestmark = [pytest.mark.slow, pytest.mark.reliability]
POINTS = ["acknowledge:before", "acknowledge:after", "embed:before", "commit:during"]


def edit_rows(connection: Any, rng: random.Random, step: int) -> None:
    """An update, an insert and a delete, in two transactions."""
    with connection.cursor() as cur:
        cur.execute("SELECT id FROM docs ORDER BY id")
        ids = [row[0] for row in cur.fetchall()]
        cur.execute("UPDATE docs SET body = body || %s WHERE id = %s", (f"\n\nEdit {step}.", rng.choice(ids)))
        cur.execute("INSERT INTO docs VALUES (%s, 'new', %s)", (100 + step, f"A row added at step {step}."))
        cur.execute("DELETE FROM docs WHERE id = %s", (rng.choice(ids),))


def test_sigkill_around_the_feed_then_rerun_converges(
    docs_table: tuple[Settings, Any], minilm: Embedder, tmp_path: Path, reliability_log: Callable[[dict], None]
) -> None:
    settings, connection = docs_table
    env = project_env(tmp_path) | settings_env(settings)
    rng, faults, checked = random.Random(12), Counter[str](), 0
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        refresh(Index(settings), instance)
        for step, point in enumerate(POINTS):
            edit_rows(connection, rng, step)
            worker = subprocess.run(
                [sys.executable, "-m", "embedding_assets_tests.fault_worker", point, "1", "0.02"],
                cwd=PROJECT_ROOT,
                env=env,
                capture_output=True,
                timeout=300,
                start_new_session=True,  # its own process group, killed whole
            )
            assert worker.returncode == -9, worker.stderr.decode()[-3000:]
            faults[point] += 1
            refresh(Index(settings), instance)  # the plain re-run, in this process
            stored = indexed(settings, minilm.model_version)
            assert stored == expected_chunks_of(documents(table_texts(connection)), settings, minilm), point
            checked += len(stored)
            assert refresh(Index(settings), instance).runs == [], "after recovery nothing may be stale"
    reliability_log(
        {
            "suite": "fault injection around the PostgreSQL feed (SIGKILL)",
            "trials": len(POINTS),
            "faults": dict(faults),
            "rows_checked": checked,
            "rows_lost": 0,
            "duplicates": 0,
        }
    )
