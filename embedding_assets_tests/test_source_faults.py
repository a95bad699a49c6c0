"""SIGKILL around a source's change feed, and writes concurrent with a resync; after a plain re-run the
table equals the oracle computed from the source as it is now.

The kill points: with a batch recorded in the change index but not acknowledged (the PostgreSQL slot is
not advanced, the SQS messages are not deleted: the batch replays), just after acknowledging (the index
holds it; the runs did not happen), before the model embeds, and during the LanceDB commit. They are
tried on a PostgreSQL table and on an S3 prefix fed by SQS, whose queue redelivers within seconds.
Then a thread writes to a PostgreSQL table while ``embedding-assets resync`` (or ``Index.sync(full=True)``)
and a refresh run, in some rounds with the replication slot dropped first. Real PostgreSQL, real moto
S3/SQS, real model, real Dagster instance, real killed processes.
"""

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
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
from embedding_assets_tests.dagster_dev import PROJECT_ROOT, project_env
from embedding_assets_tests.pipeline_helpers import (
    SPARE_TOPICS,
    documents,
    expected_chunks_of,
    indexed,
    settings_env,
    table_texts,
)
from embedding_assets_tests.services import ObjectStore

pytestmark = [pytest.mark.slow, pytest.mark.reliability]
POINTS = ["acknowledge:before", "acknowledge:after", "embed:before", "commit:during"]


def kill_refresh(point: str, env: dict[str, str]) -> None:
    """Run a refresh in the fault worker, which SIGKILLs itself at ``point`` (the first call there)."""
    worker = subprocess.run(
        [sys.executable, "-m", "embedding_assets_tests.fault_worker", point, "1", "0.02"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        timeout=300,
        start_new_session=True,  # its own process group, killed whole
    )
    assert worker.returncode == -9, worker.stderr.decode()[-3000:]


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
            kill_refresh(point, env)
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


# S3 with SQS

PREFIX = "docs/"
VISIBILITY_TIMEOUT = 5  # seconds before a message received and not deleted is delivered again
# `make test` kills once at each point; `make reliability` (FAULT_TRIALS=all) three times.
S3_ROUNDS = 3 if os.environ.get("FAULT_TRIALS") == "all" else 1
# Keys with spaces, "+", unicode and "/" (S3 events carry them form-encoded).
ODD_NAMES = ("a b.txt", "c+d.md", "naïve café/ünï cødé.txt", "deep/er/x + y.md", "日本語/文書 1.txt", "sp  ace+.txt")
EDITS = ("put", "overwrite", "same", "copy", "delete", "records")


class Bucket:
    """The bucket behind the S3 source, written and read with the test's own boto3 clients."""

    def __init__(self, store: ObjectStore, name: str) -> None:
        self.name, self.s3, self.sqs = name, store.client(), store.sqs()
        self.s3.create_bucket(Bucket=name)
        self.queue = store.notify_queue(name, PREFIX, name, visibility_timeout=VISIBILITY_TIMEOUT)

    def keys(self) -> list[str]:
        """Keys under the prefix, relative to it."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=PREFIX)
        return [o["Key"].removeprefix(PREFIX) for page in pages for o in page.get("Contents", [])]

    def get(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=self.name, Key=PREFIX + key)["Body"].read())

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.name, Key=PREFIX + key, Body=body)

    def texts(self) -> dict[str, str]:
        """The oracle's source: doc_id → text of every object, read afresh. A text object is one document
        named by its key; each line of a .jsonl object is a record with its own id."""
        texts: dict[str, str] = {}
        for key in self.keys():
            body = self.get(key).decode()
            records = [json.loads(line) for line in body.splitlines() if line.strip()] if key.endswith(".jsonl") else []
            entries = [(r["id"], r["text"]) for r in records] if key.endswith(".jsonl") else [(key, body)]
            for doc_id, text in entries:
                assert doc_id not in texts, f"the edits made a duplicate document id {doc_id!r}"
                texts[doc_id] = text
        return texts

    def depth(self) -> tuple[int, int]:
        """(visible, in flight) messages of the queue."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        got = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=names)["Attributes"]
        return int(got[names[0]]), int(got[names[1]])

    def wait_visible(self, count: int) -> None:
        """Until ``count`` messages are visible (the in-flight ones came back) and none is in flight."""
        deadline = time.monotonic() + VISIBILITY_TIMEOUT + 20
        while (depth := self.depth()) != (count, 0):
            assert time.monotonic() < deadline, f"queue at {depth}, not back to {count} visible messages"
            time.sleep(0.2)


def records_body(records: list[dict[str, str]]) -> bytes:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()


def edit_records(bucket: Bucket, key: str | None, rng: random.Random, step: int) -> str:
    """A JSONL object of several records at a new key (``key`` None), or ``key``'s rewritten with its
    first record edited, its second dropped and one added; returns the key."""
    if key is None:
        key = f"records/batch {step}+{rng.randrange(100)} é.jsonl"
        about = [rng.choice(TEST_TOPICS) for _ in range(3)]
        records = [
            {"id": f"rec {step}+ü/{i}", "text": f"Record {i} of step {step}, on {t}."} for i, t in enumerate(about)
        ]
    else:
        records = [json.loads(line) for line in bucket.get(key).decode().splitlines()]
        records[0]["text"] += f" Edited at step {step}."
        records = [records[0], *records[2:], {"id": f"rec {step}+ü/added", "text": f"A record added at step {step}."}]
    bucket.put(key, records_body(records))
    return key


def edit_objects(bucket: Bucket, rng: random.Random, step: int) -> set[str]:
    """Every kind of S3 edit once, in a random order and on odd keys: a new object, an overwrite with new
    content, one with the same content, a copy, a delete, and a JSONL object of several records (new or
    rewritten). Returns the keys written."""
    touched: set[str] = set()
    for kind in rng.sample(EDITS, len(EDITS)):
        keys = bucket.keys()
        texts, jsonl = [k for k in keys if not k.endswith(".jsonl")], [k for k in keys if k.endswith(".jsonl")]
        if kind == "put":
            name = rng.choice(ODD_NAMES)
            key = name if name not in keys else f"new {step}+{rng.randrange(100)}/{name}"
            bucket.put(key, topics[rng.choice(SPARE_TOPICS)][:1500].encode())
        elif kind == "overwrite":
            key = rng.choice(texts)
            bucket.put(key, bucket.get(key) + f"\n\nEdit {step}: a sentence about iterators and loops.".encode())
        elif kind == "same":
            key = rng.choice(keys)
            bucket.put(key, bucket.get(key))  # an event, and nothing changed
        elif kind == "copy":  # text objects only: a copied JSONL object would duplicate its record ids
            source, key = rng.choice(texts), f"copies/{step}+{rng.randrange(100)} {rng.choice(ODD_NAMES)}"
            copy = {"Bucket": bucket.name, "Key": PREFIX + source}
            bucket.s3.copy_object(Bucket=bucket.name, Key=PREFIX + key, CopySource=copy)
        elif kind == "delete":
            key = rng.choice(keys)  # a text object, or a JSONL object and all its records
            bucket.s3.delete_object(Bucket=bucket.name, Key=PREFIX + key)
        else:
            key = edit_records(bucket, rng.choice(jsonl) if jsonl and rng.random() < 0.5 else None, rng, step)
        touched.add(key)
    return touched


@pytest.fixture
def bucket(object_store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A bucket whose ``docs/`` events reach a queue of short visibility timeout, seeded with odd keys and
    a JSONL object; the AWS variables are set for this process and the workers it starts."""
    for name, value in object_store.env().items():
        monkeypatch.setenv(name, value)
    bucket = Bucket(object_store, f"faults-{tmp_path.name[-10:].lower().replace('_', '-')}")
    for name, topic in zip(ODD_NAMES[:4], TEST_TOPICS, strict=False):
        bucket.put(name, topics[topic].encode())
    seed = [
        {"id": f"seed {i}+ø", "text": f"A seeded record about {topic}."} for i, topic in enumerate(TEST_TOPICS[4:7])
    ]
    bucket.put("records/seed +1.jsonl", records_body(seed))
    return bucket


def test_sigkill_around_the_s3_queue_then_rerun_converges(
    bucket: Bucket, minilm: Embedder, tmp_path: Path, reliability_log: Callable[[dict], None]
) -> None:
    """After "acknowledge:before" the killed worker's messages come back once their visibility timeout
    passes, and the re-run receives them again: it re-reads their keys, which changes nothing in the
    index, and the oldest message of its batch was sent before the worker started. After every other
    point the worker had deleted them. Either way the table then equals the bucket's objects and the
    queue is empty."""
    settings = Settings(
        source=f"s3://{bucket.name}/{PREFIX}",
        source_queue=bucket.queue,
        lancedb_uri=str(tmp_path / "lancedb"),
        staging_dir=str(tmp_path / "staging"),
        shards=4,
    )
    env = project_env(tmp_path) | settings_env(settings)
    rng, faults, edits, checked, redelivered = random.Random(12), Counter[str](), 0, 0, 0
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        refresh(Index(settings), instance)
        assert bucket.depth() == (0, 0)
        for step, point in enumerate(POINTS * S3_ROUNDS):
            touched = edit_objects(bucket, rng, step)
            edits += len(EDITS)
            assert bucket.depth() == (len(EDITS), 0), "one event per edit"
            started = time.time()
            kill_refresh(point, env)
            faults[point] += 1
            replays = point == "acknowledge:before"
            if replays:  # received by the worker, recorded, not deleted: in flight, or visible again
                assert sum(bucket.depth()) == len(EDITS), point
                bucket.wait_visible(len(EDITS))
            else:
                assert bucket.depth() == (0, 0), point
            index, rerun_at = Index(settings), time.time()
            rerun = refresh(index, instance)  # the plain re-run, in this process
            assert not rerun.sync.listed and rerun.sync.keys_read == (len(touched) if replays else 0), point
            if replays:
                assert rerun.sync.changed_shards == [], "the replayed batch was recorded already"
                age = index.source.metrics()["oldest_message_age_seconds"]  # when the re-run received it
                assert age >= rerun_at - started, "the re-run's messages were not the worker's"
                redelivered += len(EDITS)
            assert bucket.depth() == (0, 0), point
            stored = indexed(settings, minilm.model_version)
            assert stored == expected_chunks_of(documents(bucket.texts()), settings, minilm), point
            checked += len(stored)
            idle = refresh(Index(settings), instance)
            assert idle.runs == [] and idle.sync.keys_read == 0, "after recovery nothing may be stale"
    reliability_log(
        {
            "suite": "SIGKILL around the S3 prefix's SQS feed",
            "trials": len(POINTS) * S3_ROUNDS,
            "faults": dict(faults),
            "edits": edits,
            "messages_redelivered": redelivered,
            "rows_checked": checked,
            "rows_lost": 0,
            "duplicates": 0,
        }
    )


# PostgreSQL writes concurrent with a resync

RESYNC_ROUNDS = 4
WORDS = ("loop", "generator", "yield", "exception", "context", "iterator", "class", "scope", "closure", "module")


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(6, 30))).capitalize() + "."


class RowWriter(threading.Thread):
    """Random writes to the docs table until ``done`` is set: inserts, updates of the body, updates of
    another column only, primary-key changes and deletes, one to three to a committed transaction."""

    def __init__(self, dsn: str, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.dsn, self.rng = dsn, rng
        self.done = threading.Event()
        self.writes = Counter[str]()  # statements by kind, read once the thread has ended
        self.committed = 0  # transactions, read while it runs
        self.error: BaseException | None = None

    def run(self) -> None:
        import psycopg2

        connection = psycopg2.connect(self.dsn)
        try:
            with connection, connection.cursor() as cur:
                cur.execute("SELECT id FROM docs")
                ids = sorted(row[0] for row in cur.fetchall())
            while not self.done.is_set():
                with connection, connection.cursor() as cur:  # one transaction, committed at the end
                    for _ in range(self.rng.randint(1, 3)):
                        self._write(cur, ids)
                self.committed += 1
                time.sleep(self.rng.uniform(0.01, 0.04))
        except BaseException as err:  # reported by the test, which cannot see this thread's exceptions
            self.error = err
        finally:
            connection.close()

    def _write(self, cur: Any, ids: list[int]) -> None:
        rng, new = self.rng, max(ids) + 1
        kind = rng.choice(["insert", "body", "title", "key", "delete"] if len(ids) > 20 else ["insert"])
        target = rng.choice(ids)
        if kind == "insert":
            cur.execute("INSERT INTO docs VALUES (%s, 'written', %s)", (new, sentence(rng)))
            ids.append(new)
        elif kind == "body":
            cur.execute("UPDATE docs SET body = %s WHERE id = %s", (sentence(rng), target))
        elif kind == "title":  # not the text column: nothing to embed
            cur.execute("UPDATE docs SET title = %s WHERE id = %s", (sentence(rng)[:20], target))
        elif kind == "key":  # the slot sends the old key's delete and the new key's upsert
            cur.execute("UPDATE docs SET id = %s WHERE id = %s", (new, target))
            ids[ids.index(target)] = new
        else:
            cur.execute("DELETE FROM docs WHERE id = %s", (target,))
            ids.remove(target)
        self.writes[kind] += 1


def resync(settings: Settings, env: dict[str, str], via_cli: bool) -> None:
    """``embedding-assets resync`` in a process of its own, or ``Index.sync(full=True)`` in this one."""
    if via_cli:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "embedding-assets"), "resync"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and " keys; " in done.stdout, done.stderr[-3000:]
    else:
        assert Index(settings).sync(full=True).listed


def drop_slot(connection: Any) -> None:
    """Drop the source's replication slot, as if it were lost: the next sync creates it and resyncs."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()"
        )
        assert cur.rowcount == 1, "the source's slot was not found"


def test_writes_concurrent_with_a_resync_then_a_refresh_converge(
    docs_table: tuple[Settings, Any], minilm: Embedder, tmp_path: Path, reliability_log: Callable[[dict], None]
) -> None:
    """A thread writes to the table while a resync (``embedding-assets resync``, or ``Index.sync(full=True)``)
    and then a refresh run; in the last rounds the replication slot is dropped first, so the resync creates
    it again before it lists (the writes in between reach only the listing). Once the writer stops, one
    plain refresh makes the table equal the table's rows, and the next runs nothing."""
    settings, connection = docs_table
    rng, faults, writes, during, checked = random.Random(12), Counter[str](), Counter[str](), 0, 0
    with connection.cursor() as cur:  # more rows, so that a round has more to list and to run
        cur.executemany("INSERT INTO docs VALUES (%s, 'seed', %s)", [(100 + i, sentence(rng)) for i in range(100)])
    env = project_env(tmp_path) | settings_env(settings)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        refresh(Index(settings), instance)
        for round_ in range(RESYNC_ROUNDS):
            via_cli, lost_slot = round_ % 2 == 0, round_ >= RESYNC_ROUNDS // 2
            writer = RowWriter(connection.dsn, random.Random(rng.random()))
            writer.start()
            try:
                time.sleep(0.2)
                if lost_slot:
                    drop_slot(connection)
                    time.sleep(0.2)
                before = writer.committed
                resync(settings, env, via_cli)
                during += writer.committed - before
                assert writer.committed > before or not via_cli, "no write while the resync command ran"
                refresh(Index(settings), instance)
            finally:
                writer.done.set()
                writer.join(timeout=30)
            assert writer.error is None, repr(writer.error)
            faults["writer during " + ("`embedding-assets resync`" if via_cli else "Index.sync(full=True)")] += 1
            faults["slot dropped under the writer"] += lost_slot
            writes.update(writer.writes)
            refresh(Index(settings), instance)  # the plain refresh once the writer stopped
            stored = indexed(settings, minilm.model_version)
            assert stored == expected_chunks_of(documents(table_texts(connection)), settings, minilm), round_
            checked += len(stored)
            idle = refresh(Index(settings), instance)
            assert idle.runs == [] and idle.sync.keys_read == 0, "after the writer stopped nothing may be stale"
    reliability_log(
        {
            "suite": "PostgreSQL writes concurrent with a resync",
            "trials": RESYNC_ROUNDS,
            "faults": dict(faults),
            "writes": dict(sorted(writes.items())),
            "transactions_during_resyncs": during,
            "rows_checked": checked,
            "rows_lost": 0,
            "duplicates": 0,
        }
    )
