"""The whole pipeline on a PostgreSQL table and on an S3 prefix with SQS events: real servers, the real
model, a real Dagster instance. After every change the table equals the oracle computed from the source."""

import dataclasses
import json
import time
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any

import dagster as dg
import pytest

from embedding_assets.core.embedders import Embedder
from embedding_assets.core.index import Index
from embedding_assets.core.settings import Settings
from embedding_assets.refresh import refresh
from embedding_assets_tests.conftest import TEST_TOPICS
from embedding_assets_tests.dagster_dev import dagster_dev, project_env
from embedding_assets_tests.pipeline_helpers import documents, expected_chunks_of, indexed, settings_env, table_texts
from embedding_assets_tests.services import ObjectStore

pytestmark = pytest.mark.slow


def test_a_postgres_table_is_followed_through_its_replication_slot(
    docs_table: tuple[Settings, Any], minilm: Embedder
) -> None:
    settings, connection = docs_table
    with dg.instance_for_test() as instance:
        first = refresh(Index(settings), instance)
        assert first.sync.listed and first.stale == first.sync.changed_shards != []
        assert indexed(settings, minilm.model_version) == expected_chunks_of(
            documents(table_texts(connection)), settings, minilm
        )

        committed = time.time()
        with connection.cursor() as cur:  # two transactions between refreshes
            cur.execute("UPDATE docs SET body = 'The while loop, rewritten: it repeats while true.' WHERE id = 11")
            cur.execute("UPDATE docs SET title = 'renamed' WHERE id = 3")  # not the text column: nothing to embed
            cur.execute("DELETE FROM docs WHERE id = 0")
            cur.execute("INSERT INTO docs VALUES (40, 'new', 'A new row about generators and yield.')")
        report = refresh(Index(settings), instance)
        assert not report.sync.listed  # the slot told it what changed: no listing
        assert report.sync.keys_read == 4  # 11, 3, 0 (gone) and 40
        assert report.total("chunks_embedded") == 2  # the rewritten row and the new one
        latencies = {
            s: f["source_to_table_seconds"] for s, f in report.per_shard.items() if "source_to_table_seconds" in f
        }
        assert set(latencies) == set(report.stale)  # from the first commit the slot reported, per shard
        assert all(0 < seconds <= time.time() - committed + 1 for seconds in latencies.values()), latencies
        assert indexed(settings, minilm.model_version) == expected_chunks_of(
            documents(table_texts(connection)), settings, minilm
        )
        store, model = Index(settings).store, minilm.model_version
        hit = store.search(model, minilm.embed(["a loop that repeats while true"])[0], 1).to_pylist()[0]
        assert hit["doc_id"] == "11"
        assert refresh(Index(settings), instance).runs == [], "an idle slot runs nothing"


@pytest.fixture
def prefix(object_store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, Any]:
    """An S3 prefix whose events reach an SQS queue, and settings that follow it."""
    for name, value in object_store.env().items():
        monkeypatch.setenv(name, value)
    bucket = f"e2e-{tmp_path.name[-10:].lower().replace('_', '-')}"
    s3 = object_store.client()
    s3.create_bucket(Bucket=bucket)
    queue = object_store.notify_queue(bucket, "docs/", bucket)
    for name in TEST_TOPICS:
        s3.put_object(Bucket=bucket, Key=f"docs/{name}.txt", Body=topics[name].encode())
    settings = Settings(
        source=f"s3://{bucket}/docs/",
        source_queue=queue,
        lancedb_uri=str(tmp_path / "lancedb"),
        staging_dir=str(tmp_path / "staging"),
        shards=4,
    )
    return settings, s3


def prefix_texts(s3: Any, settings: Settings) -> dict[str, str]:
    bucket = settings.source.removeprefix("s3://").split("/", 1)[0]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="docs/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    texts: dict[str, str] = {}
    for key in keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        if key.endswith(".jsonl"):
            texts |= {r["id"]: r["text"] for r in map(json.loads, body.splitlines())}
        else:
            texts[key.removeprefix("docs/")] = body
    return texts


def test_an_s3_prefix_is_followed_through_its_event_queue(prefix: tuple[Settings, Any], minilm: Embedder) -> None:
    settings, s3 = prefix
    bucket = settings.source.removeprefix("s3://").split("/", 1)[0]
    with dg.instance_for_test() as instance:
        refresh(Index(settings), instance)
        assert indexed(settings, minilm.model_version) == expected_chunks_of(
            documents(prefix_texts(s3, settings)), settings, minilm
        )
        s3.put_object(Bucket=bucket, Key="docs/while.txt", Body=b"The while loop, rewritten: it repeats while true.")
        s3.put_object(Bucket=bucket, Key="docs/if.txt", Body=topics["if"].encode())  # same content: nothing
        s3.delete_object(Bucket=bucket, Key="docs/pass.txt")
        records = [{"id": "rec one", "text": "A record about generators."}, {"id": "rec+2", "text": "Another."}]
        s3.put_object(Bucket=bucket, Key="docs/new dir/records +1.jsonl", Body="\n".join(map(json.dumps, records)))
        report = refresh(Index(settings), instance)
        assert not report.sync.listed and report.sync.keys_read == 4
        assert report.total("chunks_embedded") == 3  # the rewritten file and the two records
        assert indexed(settings, minilm.model_version) == expected_chunks_of(
            documents(prefix_texts(s3, settings)), settings, minilm
        )


def test_the_daemon_follows_a_postgres_table(
    docs_table: tuple[Settings, Any], minilm: Embedder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under `dagster dev`, with no command from us: a row edited in PostgreSQL becomes searchable."""
    settings, connection = docs_table
    quick = dataclasses.replace(settings, scan_interval_seconds=5, automation_interval_seconds=5)
    env = project_env(tmp_path) | settings_env(quick)

    def oracle() -> dict[str, tuple[str, str]]:
        return expected_chunks_of(documents(table_texts(connection)), settings, minilm)

    with dagster_dev(env, tmp_path / "dagster-dev.log") as dev:
        dev.wait_for(lambda: indexed(settings, minilm.model_version) == oracle(), "the first index", 300)
        with connection.cursor() as cur:
            cur.execute("UPDATE docs SET body = 'Generators yield values lazily, one at a time.' WHERE id = 5")
        edited = time.monotonic()
        dev.wait_for(lambda: indexed(settings, minilm.model_version) == oracle(), "the edit indexed", 300)
        latency = time.monotonic() - edited
    hit = Index(settings).store.search(minilm.model_version, minilm.embed(["lazy generators"])[0], 1).to_pylist()
    assert hit[0]["doc_id"] == "5"
    with capsys.disabled():
        print(f"\nPostgreSQL edit → searchable under dagster dev (5 s intervals): {latency:.1f} s")
