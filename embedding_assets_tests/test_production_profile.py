"""The production profile on one machine: the Dagster instance on a real PostgreSQL server, LanceDB on a
real S3-compatible server (moto), runs queued and launched in separate processes by the daemon."""

import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from embedding_assets.core.change_index_db import PostgresDatabase
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.index import Index
from embedding_assets.core.object_store import storage_options
from embedding_assets.core.profiles import instance_config
from embedding_assets.core.settings import Settings
from embedding_assets.core.store import VectorStore
from embedding_assets.refresh import refresh
from embedding_assets_tests.conftest import write_topics
from embedding_assets_tests.dagster_dev import PROJECT_ROOT, backfill, process_group, project_env, stop_sensors
from embedding_assets_tests.pipeline_helpers import SPARE_TOPICS, expected_index, indexed, random_edit
from embedding_assets_tests.services import S3_SECRET, ObjectStore, Postgres

STEP_START = dg.DagsterEventType.STEP_START
BIN = PROJECT_ROOT / ".venv" / "bin"
TIMEOUT = 420


@dataclass(frozen=True)
class Production:
    env: dict[str, str]  # for subprocesses: settings, DAGSTER_HOME, DAGSTER_PG_*, AWS_*
    settings: Settings
    home: Path
    db: str
    bucket: str


@pytest.fixture
def production(
    tmp_path: Path, postgres: Postgres, object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> Production:
    """A fresh database and bucket, DAGSTER_HOME holding embedding_assets/deploy/production/dagster.yaml,
    4 shards."""
    name = f"t{uuid.uuid4().hex[:12]}"
    db, uri = postgres.create_database(name), object_store.create_bucket(f"ea-{name}")
    services = postgres.env(db) | object_store.env()
    for key, value in services.items():
        monkeypatch.setenv(key, value)  # this process reads the instance and the table too
    env = project_env(tmp_path, shards="4", profile="production", lancedb_uri=f"{uri}/lancedb") | services
    write_topics(tmp_path / "source")
    home = Path(env["DAGSTER_HOME"])
    shutil.copy(instance_config("production"), home / "dagster.yaml")
    return Production(env, Settings.from_env(env), home, db, uri.removeprefix("s3://"))


def assert_secret_never_stored(
    production: Production, instance: dg.DagsterInstance, postgres: Postgres, object_store: ObjectStore
) -> None:
    """The S3 secret is in no event, log, run record, database row, table object or staged file."""
    for run in instance.get_runs():
        assert S3_SECRET not in str(run.run_config) and S3_SECRET not in str(run.tags)
        for record in instance.all_logs(run.run_id):
            assert S3_SECRET not in str(record)
    assert S3_SECRET.encode() not in postgres.dump(production.db)
    objects = object_store.objects(production.bucket)
    assert len(objects) > 10 and not [k for k, body in objects.items() if S3_SECRET.encode() in body]
    staged = [p for p in Path(production.settings.staging_dir).rglob("*") if p.is_file()]
    assert staged and not [p for p in staged if S3_SECRET.encode() in p.read_bytes()]


@pytest.mark.slow
def test_the_index_follows_the_source_on_postgres_and_s3(
    production: Production,
    minilm: Embedder,
    postgres: Postgres,
    object_store: ObjectStore,
    capfd: pytest.CaptureFixture[str],
) -> None:
    settings, source = production.settings, Path(production.settings.source_dir)
    assert settings.lancedb_uri.startswith("s3://")
    (source / "records.jsonl").write_text(
        "\n".join(
            json.dumps({"id": f"rec-{i}", "text": f"Record {i} describes keyword number {i} of the language."})
            for i in range(10)
        )
    )
    rng, spare = random.Random(20261126), list(SPARE_TOPICS)
    with dg.DagsterInstance.from_config(str(production.home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert refresh(Index(settings), instance).stale == ["s000", "s001", "s002", "s003"]
        assert indexed(settings, minilm.model_version) == expected_index(settings, minilm)
        for step in range(4):
            random_edit(source, rng, spare)
            random_edit(source, rng, spare)
            refresh(Index(settings), instance)
            assert indexed(settings, minilm.model_version) == expected_index(settings, minilm), f"step {step}"
        assert refresh(Index(settings), instance).runs == [], "a refresh with nothing changed runs nothing"
        assert len(instance.get_runs()) >= 5  # recorded in PostgreSQL
        changes = Index(settings).changes  # in the instance's database, where every run worker finds it
        assert isinstance(changes.database, PostgresDatabase) and changes.database.schema.startswith("change_index_")
        assert changes.keys() == len(list(source.iterdir()))
        assert not list(Path(settings.staging_dir).rglob("change_index.sqlite"))
        assert_secret_never_stored(production, instance, postgres, object_store)
    out, err = capfd.readouterr()
    assert S3_SECRET not in out and S3_SECRET not in err


def finished_runs(home: Path, expected: int, proc: subprocess.Popen, log: Path) -> list[dg.RunRecord]:
    """Wait until ``expected`` runs have finished; their records."""
    deadline = time.monotonic() + TIMEOUT
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"the daemon exited:\n{log.read_text()[-3000:]}"
            records = instance.get_run_records()
            if len(records) >= expected and all(r.dagster_run.is_finished for r in records):
                return records
            time.sleep(1)
    raise TimeoutError(f"runs not finished after {TIMEOUT} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_a_queued_backfill_runs_shards_in_parallel_processes_and_loses_nothing(
    production: Production, minilm: Embedder, postgres: Postgres, object_store: ObjectStore, tmp_path: Path
) -> None:
    env, settings = production.env, production.settings
    dg.DagsterInstance.from_config(str(production.home)).dispose()  # create the schema once, before any racer
    slug = Index(settings).models[0].slug
    automation = ("documents_automation_sensor", f"{slug}_automation_sensor", f"{slug}_backfill_sensor")
    stop_sensors(env, "source_change_sensor", *automation)  # only the backfills run here
    log = tmp_path / "daemon.log"
    with process_group([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env, log) as proc:
        # Every shard, and a second backfill of two of them racing the first: six runs, four shards.
        backfill(env, "s000,s001,s002,s003")
        backfill(env, "s001,s002")
        records = finished_runs(production.home, 6, proc, log)
    assert [r.dagster_run.status for r in records] == [dg.DagsterRunStatus.SUCCESS] * 6, log.read_text()[-3000:]
    assert indexed(settings, minilm.model_version) == expected_index(settings, minilm)

    spans: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        spans.setdefault(record.dagster_run.tags["dagster/partition"], []).append((record.start_time, record.end_time))
    assert sorted(len(s) for s in spans.values()) == [1, 1, 2, 2]
    with dg.DagsterInstance.from_config(str(production.home)) as instance:
        for shard in ("s001", "s002"):  # two runs of one shard take turns on its table's lock: one commits
            records_of = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey([slug, "vector_table"]), asset_partitions=[shard]),
                limit=10,
            ).records
            committed = sorted(r.asset_materialization.metadata["committed"].value for r in records_of)
            assert committed == [False, True], f"{shard}: {committed}"
    intervals = sorted(s for pair in spans.values() for s in pair)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(intervals)), (
        "runs of different shards should run at the same time"
    )
    with dg.DagsterInstance.from_config(str(production.home)) as instance:
        pids = [
            {e.dagster_event.pid for e in instance.all_logs(r.dagster_run.run_id, of_type=STEP_START)} for r in records
        ]
        assert all(len(p) == 1 for p in pids), pids  # every step of a run in the run's process
        assert len(set().union(*pids) - {os.getpid()}) == 6, f"six runs, six separate processes: {pids}"
        assert_secret_never_stored(production, instance, postgres, object_store)


WRITER = """
import json, sys
from datetime import UTC, datetime
import pyarrow as pa
from embedding_assets.core.staging import Staging
from embedding_assets.core.store import VectorStore, row_schema, table_name
uri, shard, rounds, staging = sys.argv[1], sys.argv[2], int(sys.argv[3]), Staging(sys.argv[4])
store, schema = VectorStore(uri), row_schema(4, model_version="toy:hashing@1/4d", shard_count=8)
def rows(r):
    return pa.Table.from_pylist([{"chunk_id": f"{shard}-d{i}#0", "doc_id": f"{shard}-d{i}", "shard": shard,
        "position": 0, "text": f"round {r}", "vector": [0.5] * 4, "chunk_hash": f"h{r % 2}-{i}",
        "doc_hash": f"r{r % 2}", "token_count": 1, "model_version": "toy:hashing@1/4d",
        "embedded_at": datetime(2026, 1, 1, tzinfo=UTC)} for i in range(30 if r % 2 else 20)], schema=schema)
scope, versions = table_name("toy:hashing@1/4d"), []  # the pipeline locks a shard per table
for r in range(rounds):
    with staging.lock(shard, scope):  # as the pipeline's steps do: writers of one shard's table take turns
        write = store.replace_shard(shard, rows(r))
    versions += [write.table_version] if write.committed else []
print(json.dumps(versions))
"""


@pytest.mark.slow
@pytest.mark.reliability
def test_concurrent_writers_on_object_storage_lose_nothing(
    object_store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers of different shards commit at once, unserialized; two writers of one shard hold the shard
    lock, as the pipeline does (without it, two first inserts of the same new rows can both land: we saw
    20 duplicated rows once in a few runs, on S3, with every commit at its own version)."""
    for key, value in object_store.env().items():
        monkeypatch.setenv(key, value)
    uri = object_store.create_bucket(f"ea-writers-{uuid.uuid4().hex[:8]}") + "/lancedb"
    staging = str(tmp_path / "staging")  # in production: the volume every worker shares
    subprocess.run([sys.executable, "-c", WRITER, uri, "s000", "1", staging], check=True, capture_output=True)
    rounds, shards = 5, ["s001", "s002", "s003", "s004", "s005", "s001"]  # s001 written by two processes
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, uri, shard, str(rounds), staging],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for shard in shards
    ]
    versions = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        versions += json.loads(out)
    # Every commit got its own table version: none was overwritten by a racing writer.
    assert len(versions) == len(set(versions))
    table = VectorStore(uri).table("toy:hashing@1/4d")
    rows = table.search().select(["chunk_id", "shard", "doc_hash"]).to_arrow().to_pylist()
    assert len({r["chunk_id"] for r in rows}) == len(rows), "duplicate rows"
    final = f"r{(rounds - 1) % 2}"  # every writer's last round wrote the same rows
    expected = {("s000", "r0", 20)} | {(s, final, 20 if final == "r0" else 30) for s in set(shards)}
    assert {(s, r["doc_hash"], sum(1 for x in rows if x["shard"] == s)) for r in rows for s in [r["shard"]]} == expected
    assert table.version == max(versions)


def test_the_profile_selects_the_instance_config_and_a_bad_one_fails_clearly() -> None:
    deploy = PROJECT_ROOT / "embedding_assets" / "deploy"
    assert Settings.from_env({}).profile == "local"
    assert instance_config(Settings.from_env({}).profile) == deploy / "local" / "dagster.yaml"
    production = Settings.from_env({"EMBEDDING_ASSETS_PROFILE": "production"})
    assert instance_config(production.profile) == deploy / "production" / "dagster.yaml"
    assert "postgres:" in instance_config(production.profile).read_text()
    with pytest.raises(
        ConfigError,
        match=r"^EMBEDDING_ASSETS_PROFILE must be one of local, production, "
        r"got 'prod'$",
    ):
        Settings.from_env({"EMBEDDING_ASSETS_PROFILE": "prod"})
    done = subprocess.run(
        [str(BIN / "embedding-assets"), "instance-config"],
        capture_output=True,
        text=True,
        env=os.environ | {"EMBEDDING_ASSETS_PROFILE": "production"},
    )
    assert done.stdout.strip() == str(instance_config("production"))


def test_storage_options_carry_the_endpoint_and_never_a_credential() -> None:
    environ = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
    }
    assert storage_options("/data/lancedb", environ) is None
    assert storage_options("s3://bucket/lancedb", environ) == {
        "aws_endpoint": "http://127.0.0.1:9000",
        "allow_http": "true",
        "aws_region": "eu-west-1",
    }
    assert storage_options("s3://bucket/lancedb", {"AWS_REGION": "us-east-1"}) == {"aws_region": "us-east-1"}
