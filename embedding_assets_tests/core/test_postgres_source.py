"""The PostgreSQL-table source against a real server (Debian's PostgreSQL 15, ``wal_level=logical``).

Each server test has its own database and table. A ``Consumer`` drives the source the way the change
index does (changes → read every named key → apply → acknowledge → keep the cursor; a resync replaces
everything by a listing and reads), and after each step it must equal the oracle computed straight from
the table. The decoder, cursor and name helpers are also tested on their own, without a server.
"""

import contextlib
import hashlib
import random
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psycopg2
import pytest

from embedding_assets.core.hashing import content_hash, normalize_text
from embedding_assets.core.sources import Changes, Document, Read, Skip, SourceError
from embedding_assets.core.sources.pgoutput import (
    UNCHANGED,
    Commit,
    DecodeError,
    Decoder,
    Delete,
    Insert,
    Relation,
    Truncate,
    Update,
    format_lsn,
    parse_lsn,
)
from embedding_assets.core.sources.postgres import (
    PostgresTable,
    WatermarkCursor,
    id_ranges,
    object_name,
    parse_outbox_cursor,
    primary_key_problem,
    wal_level_problem,
)
from embedding_assets.core.sources.postgres import table as postgres_source
from embedding_assets_tests.dagster_dev import free_port
from embedding_assets_tests.services import Postgres

slow = pytest.mark.slow
SKIP = "skip"
DOCS = "CREATE TABLE docs (id integer PRIMARY KEY, text text, n integer NOT NULL DEFAULT 0, updated_at timestamptz)"

# Helpers


def run(dsn: str, statement: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """One statement in its own transaction, as an application would write."""
    with contextlib.closing(psycopg2.connect(dsn)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement, tuple(params))
            return cur.fetchall() if cur.description else []


def create_docs(dsn: str, rows: dict[int, str | None]) -> None:
    run(dsn, DOCS)
    for key, text in rows.items():
        run(dsn, "INSERT INTO docs (id, text, updated_at) VALUES (%s, %s, now())", (key, text))


def expected_state(text: str | None) -> str:
    if text is None or not normalize_text(text):
        return SKIP
    return content_hash(normalize_text(text))


def oracle(dsn: str, table: str = "docs") -> dict[str, str]:
    """key → doc_hash (or "skip") of every row, straight from the table."""
    return {key: expected_state(text) for key, text in run(dsn, f"SELECT id::text, text FROM {table}")}


def state_of(read: Read) -> str:
    (item,) = read.items
    return item.doc_hash if isinstance(item, Document) else SKIP


class Consumer:
    """A miniature change index: key → doc_hash (and the version the source reported)."""

    def __init__(self, source: PostgresTable) -> None:
        self.source = source
        self.cursor: str | None = None
        self.hashes: dict[str, str] = {}
        self.versions: dict[str, str] = {}

    def resync(self) -> None:
        keys = [key for key, _ in self.source.listing()]
        self.hashes, self.versions = {}, {}
        self.apply(self.source.read_many(keys))

    def apply(self, reads: Iterable[tuple[str, Read | None]]) -> None:
        for key, read in reads:
            if read is None:
                self.hashes.pop(key, None)
                self.versions.pop(key, None)
            else:
                self.hashes[key], self.versions[key] = state_of(read), read.version

    def tick(self, limit: int = 1000) -> Changes:
        changes = self.source.changes(self.cursor, limit)
        reads = dict(self.source.read_many(changes.changed + changes.deleted))
        if changes.resync:
            self.resync()
        else:
            self.apply(reads.items())
        self.source.acknowledge(changes)
        self.cursor = changes.cursor
        return changes

    def drain(self, limit: int = 1000) -> list[Changes]:
        batches = [self.tick(limit)]
        while batches[-1].more:
            assert len(batches) < 100, "the feed never ran dry"
            batches.append(self.tick(limit))
        return batches

    def reconcile(self) -> set[str]:
        """Diff a full listing against what is held; read what differs. Returns the keys read."""
        listed = dict(self.source.listing())
        stale = {key for key, version in listed.items() if self.versions.get(key) != version}
        stale |= set(self.hashes) - set(listed)
        self.apply(self.source.read_many(sorted(stale)))
        return stale


@pytest.fixture
def dsn(postgres: Postgres) -> str:
    database = postgres.create_database(f"src_{uuid.uuid4().hex[:12]}")
    return f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/{database}"


@pytest.fixture
def make_source(dsn: str) -> Iterator[Callable[..., PostgresTable]]:
    """Prepared sources of ``dsn``; their feeds (slots, triggers) are dropped afterwards."""
    made: list[PostgresTable] = []

    def make(table: str = "docs", **kwargs: Any) -> PostgresTable:
        source = PostgresTable(dsn, table, **kwargs)
        source.prepare()
        made.append(source)
        return source

    yield make
    for source in made:
        with contextlib.suppress(SourceError):
            source.drop_feed()
        source.close()


def slot_status(dsn: str) -> list[tuple[Any, ...]]:
    return run(dsn, "SELECT slot_name, wal_status FROM pg_replication_slots WHERE database = current_database()")


# Logical mode


@slow
def test_logical_follows_inserts_updates_deletes_and_key_changes(dsn: str, make_source: Callable) -> None:
    create_docs(dsn, {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"})
    source = make_source()
    consumer = Consumer(source)
    consumer.resync()
    assert consumer.hashes == oracle(dsn)

    run(dsn, "INSERT INTO docs (id, text) VALUES (6, 'six'), (7, NULL)")
    run(dsn, "UPDATE docs SET text = 'one, edited' WHERE id = 1")
    run(dsn, "DELETE FROM docs WHERE id = 3")
    changes = consumer.tick()
    assert set(changes.changed) == {"1", "6", "7"} and changes.deleted == ("3",)
    assert not changes.resync and not changes.more
    assert consumer.hashes == oracle(dsn) and consumer.hashes["7"] == SKIP
    make_source()  # another process's prepare(): the slot and publication are left as they are

    run(dsn, "UPDATE docs SET id = 40 WHERE id = 4")  # a primary-key change: delete the old, read the new
    changes = consumer.tick()
    assert changes.deleted == ("4",) and changes.changed == ("40",) and not changes.resync
    assert consumer.hashes == oracle(dsn) and "4" not in consumer.hashes

    committed = time.time()
    run(dsn, "UPDATE docs SET text = 'two, again' WHERE id = 2")  # two transactions between two calls
    run(dsn, "UPDATE docs SET text = 'five, again' WHERE id = 5")
    changes = consumer.tick()
    assert set(changes.changed) == {"2", "5"}
    assert changes.since is not None and committed - 1 <= changes.since <= time.time()  # the first commit's time
    assert consumer.hashes == oracle(dsn)

    run(dsn, "DELETE FROM docs WHERE id = 6")  # deleted, then inserted again in the same batch: changed
    run(dsn, "INSERT INTO docs (id, text) VALUES (6, 'six, reborn')")
    changes = consumer.tick()
    assert changes.changed == ("6",) and changes.deleted == ()
    assert consumer.hashes == oracle(dsn)

    started = time.perf_counter()
    idle = consumer.tick()
    assert idle.changed == idle.deleted == () and idle.since is None and time.perf_counter() - started < 1.0
    metrics = source.metrics()
    assert set(metrics) == {"slot_lag_bytes", "slot_retained_bytes"} and metrics["slot_lag_bytes"] >= 0


@slow
def test_logical_toasted_body_updated_elsewhere_keeps_its_hash(dsn: str, make_source: Callable) -> None:
    rng = random.Random(7)  # fresh random words: nothing for pglz to compress
    letters = "abcdefghijklmnopqrstuvwxyz"
    body = " ".join("".join(rng.choices(letters, k=rng.randint(2, 11))) for _ in range(31_000))[:200_000]
    create_docs(dsn, {1: body, 2: "short"})
    toast_bytes = run(dsn, "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'docs'")[0][0]
    assert toast_bytes > 150_000, "the body should be stored out of line, uncompressed"
    source = make_source()
    consumer = Consumer(source)
    consumer.resync()
    before = consumer.hashes["1"]

    run(dsn, "UPDATE docs SET n = n + 1 WHERE id = 1")
    assert consumer.tick().changed == ("1",)
    assert consumer.hashes["1"] == before == oracle(dsn)["1"]
    read = source.read("1")
    assert read is not None and isinstance(read.items[0], Document)
    assert read.items[0].text == normalize_text(body) and len(read.items[0].text) >= 199_000


@slow
def test_pgoutput_sends_an_untouched_toasted_value_as_unchanged(dsn: str) -> None:
    """The hazard the key-only publication avoids: with every column published, the UPDATE's message
    carries no body at all (``u``), so the message is never the row's content."""
    body = " ".join(uuid.uuid4().hex for _ in range(2000))  # 66 KB of hex: stored out of line
    create_docs(dsn, {1: body})
    run(dsn, "CREATE PUBLICATION everything FOR TABLE docs")
    run(dsn, "SELECT pg_create_logical_replication_slot('raw_slot', 'pgoutput')")
    try:
        run(dsn, "UPDATE docs SET n = 5 WHERE id = 1")
        rows = run(
            dsn,
            "SELECT data FROM pg_logical_slot_peek_binary_changes('raw_slot', NULL, NULL, "
            "'proto_version', '1', 'publication_names', 'everything')",
        )
    finally:
        run(dsn, "SELECT pg_drop_replication_slot('raw_slot')")
    decoder = Decoder()
    (update,) = [m for m in (decoder.decode(bytes(row[0])) for row in rows) if isinstance(m, Update)]
    assert update.relation.value(update.new, "text") is UNCHANGED
    assert update.relation.value(update.new, "id") == "1" and update.relation.value(update.new, "n") == "5"


@slow
def test_logical_truncate_resyncs(dsn: str, make_source: Callable) -> None:
    create_docs(dsn, {1: "one", 2: "two"})
    consumer = Consumer(make_source())
    consumer.resync()
    run(dsn, "TRUNCATE docs")
    run(dsn, "INSERT INTO docs (id, text) VALUES (3, 'three')")
    assert consumer.tick().resync
    assert consumer.hashes == oracle(dsn) == {"3": content_hash("three")}
    assert not consumer.tick().resync


@slow
def test_logical_batch_cut_at_the_limit_and_replayed_until_acknowledged(dsn: str, make_source: Callable) -> None:
    create_docs(dsn, {})
    source = make_source()
    consumer = Consumer(source)
    consumer.resync()
    for key in range(1, 11):  # ten transactions of four messages each (B, R, I, C)
        run(dsn, "INSERT INTO docs (id, text) VALUES (%s, %s)", (key, f"doc {key}"))

    first = source.changes(consumer.cursor, 8)
    assert first.more and 0 < len(first.changed) < 10
    again = source.changes(consumer.cursor, 8)  # not acknowledged: the same batch again
    assert again == first

    batches = consumer.drain(limit=8)
    assert batches[0] == first and not batches[-1].more and len(batches) >= 3
    assert {key for batch in batches for key in batch.changed} == {str(key) for key in range(1, 11)}
    assert consumer.hashes == oracle(dsn)
    assert parse_lsn(batches[0].cursor) < parse_lsn(batches[-1].cursor)


@slow
def test_logical_slot_dropped_behind_the_sources_back_resyncs(dsn: str, make_source: Callable) -> None:
    create_docs(dsn, {1: "one", 2: "two", 3: "three"})
    source = make_source()
    consumer = Consumer(source)
    consumer.resync()
    ((slot, _),) = slot_status(dsn)

    run(dsn, "SELECT pg_drop_replication_slot(%s)", (slot,))
    run(dsn, "UPDATE docs SET text = 'lost from the feed' WHERE id = 1")
    changes = consumer.tick()
    assert changes.resync and consumer.hashes == oracle(dsn)
    run(dsn, "DELETE FROM docs WHERE id = 2")
    assert consumer.tick().deleted == ("2",) and consumer.hashes == oracle(dsn)

    # A process that starts after the slot vanished: its prepare() creates the slot afresh, and the
    # slot standing past the recorded cursor still says that changes were lost.
    run(dsn, "SELECT pg_drop_replication_slot(%s)", (slot,))
    run(dsn, "UPDATE docs SET text = 'lost again' WHERE id = 3")
    restarted = Consumer(make_source())
    restarted.cursor, restarted.hashes, restarted.versions = consumer.cursor, consumer.hashes, consumer.versions
    assert restarted.tick().resync and restarted.hashes == oracle(dsn)
    assert not restarted.tick().resync


@slow
def test_logical_lost_slot_is_recreated_and_resyncs(dsn: str, make_source: Callable) -> None:
    create_docs(dsn, {1: "one", 2: "two"})
    consumer = Consumer(make_source())
    consumer.resync()
    run(dsn, "UPDATE docs SET text = 'changed before the slot was lost' WHERE id = 1")
    run(dsn, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
    try:
        run(dsn, "SELECT pg_reload_conf()")
        time.sleep(0.2)  # the checkpointer applies the reload
        for _ in range(3):
            run(dsn, "SELECT pg_switch_wal()")
        run(dsn, "CHECKPOINT")  # invalidates slots that retain more than max_slot_wal_keep_size
    finally:
        run(dsn, "ALTER SYSTEM RESET max_slot_wal_keep_size")
        run(dsn, "SELECT pg_reload_conf()")
    assert [status for _, status in slot_status(dsn)] == ["lost"]

    assert consumer.tick().resync
    assert consumer.hashes == oracle(dsn) and [status for _, status in slot_status(dsn)] != ["lost"]
    run(dsn, "UPDATE docs SET text = 'after' WHERE id = 2")
    assert consumer.tick().changed == ("2",) and consumer.hashes == oracle(dsn)


@slow
def test_logical_writes_during_the_first_listing_converge(
    dsn: str, make_source: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_docs(dsn, {key: f"doc {key}" for key in range(10, 60)})
    monkeypatch.setattr(postgres_source, "LISTING_BATCH", 10)
    source = make_source()  # the slot exists before the listing starts
    consumer = Consumer(source)
    listed: list[str] = []
    for key, _ in source.listing():
        listed.append(key)
        if len(listed) == 15:  # mid-listing: rows already listed and rows not yet listed change
            run(dsn, "UPDATE docs SET text = 'edited, already listed' WHERE id = 12")
            run(dsn, "UPDATE docs SET text = 'edited, not yet listed' WHERE id = 50")
            run(dsn, "DELETE FROM docs WHERE id IN (11, 51)")
            run(dsn, "INSERT INTO docs (id, text) VALUES (1, 'new, before the page'), (99, 'new, after it')")
            run(dsn, "UPDATE docs SET id = 5 WHERE id = 55")  # moves from not-yet-listed to already-listed
    consumer.apply(source.read_many(listed))
    assert consumer.hashes != oracle(dsn)  # the listing alone misses some
    consumer.drain()
    assert consumer.hashes == oracle(dsn)


@slow
def test_logical_text_primary_keys_round_trip(dsn: str, make_source: Callable) -> None:
    run(dsn, "CREATE TABLE notes (slug text PRIMARY KEY, body varchar)")
    run(dsn, "INSERT INTO notes VALUES ('a b', 'x'), ('ünï/çødé', 'y'), ('it''s \"quoted\"', 'z')")
    source = make_source("public.notes", id_field="slug", text_field="body")
    consumer = Consumer(source)
    consumer.resync()
    run(dsn, "UPDATE notes SET body = 'edited' WHERE slug = 'ünï/çødé'")
    run(dsn, "UPDATE notes SET slug = 'moved: ☃' WHERE slug = 'a b'")
    changes = consumer.tick()
    assert set(changes.changed) == {"ünï/çødé", "moved: ☃"} and changes.deleted == ("a b",)
    expected = {key: expected_state(text) for key, text in run(dsn, "SELECT slug, body FROM notes")}
    assert consumer.hashes == expected
    assert source.name == "postgresql:public.notes"


@slow
def test_wal_level_check(dsn: str, make_source: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    create_docs(dsn, {})
    assert run(dsn, "SHOW wal_level") == [("logical",)]  # the query prepare() asks
    make_source()
    message = wal_level_problem("replica", "db.example:5432/app")
    assert message == (
        "PostgreSQL at db.example:5432/app: wal_level is 'replica'; logical mode needs wal_level=logical "
        "(set it in postgresql.conf and restart) or EMBEDDING_ASSETS_SOURCE_MODE=outbox|watermark"
    )
    assert wal_level_problem("logical", "anywhere") is None

    one = postgres_source.PostgresConnection.one  # a server that answers 'replica' fails prepare() with that message

    def replica(db: Any, query: Any, params: Any = ()) -> Any:
        return ("replica",) if query == "SHOW wal_level" else one(db, query, params)

    monkeypatch.setattr(postgres_source.PostgresConnection, "one", replica)
    with pytest.raises(SourceError, match=r"wal_level is 'replica'; logical mode needs wal_level=logical"):
        PostgresTable(dsn, "docs").prepare()


MISCONFIGURED = {
    "no primary key": (
        "CREATE TABLE docs (id integer, text text)",
        {},
        r"has no primary key.*EMBEDDING_ASSETS_ID_FIELD",
    ),
    "composite key": (
        "CREATE TABLE docs (a integer, b integer, text text, PRIMARY KEY (a, b))",
        {"id_field": "a"},
        r"composite primary key \(a, b\).*EMBEDDING_ASSETS_ID_FIELD \(now 'a'\)",
    ),
    "other key": ("CREATE TABLE docs (doc_id integer PRIMARY KEY, text text)", {}, r"has the primary key 'doc_id'"),
    "missing table": ("SELECT 1", {}, r"table public.docs does not exist in 127.0.0.1:\d+/src_"),
    "a view": ("CREATE VIEW docs AS SELECT 1 AS id, 'x' AS text", {}, r"table public.docs is not a table"),
    "missing text": (DOCS, {"text_field": "body"}, r"has no column 'body' \(set EMBEDDING_ASSETS_TEXT_FIELD\)"),
    "text not text": (
        "CREATE TABLE docs (id integer PRIMARY KEY, text integer)",
        {},
        r"'text' of public.docs is integer",
    ),
    "bad mode": (DOCS, {"mode": "cdc"}, r"EMBEDDING_ASSETS_SOURCE_MODE must be one of logical, outbox, watermark"),
    "replica identity full": (
        DOCS + "; ALTER TABLE docs REPLICA IDENTITY FULL",
        {},
        r"REPLICA IDENTITY FULL; logical mode publishes only the primary key",
    ),
    "no updated_at": (
        "CREATE TABLE docs (id integer PRIMARY KEY, text text)",
        {"mode": "watermark"},
        r"has no column 'updated_at'.*EMBEDDING_ASSETS_UPDATED_FIELD",
    ),
    "updated_at not a timestamp": (
        "CREATE TABLE docs (id integer PRIMARY KEY, text text, updated_at text)",
        {"mode": "watermark"},
        r"column of type text, not a timestamp.*EMBEDDING_ASSETS_UPDATED_FIELD",
    ),
}


@slow
@pytest.mark.parametrize("case", MISCONFIGURED)
def test_misconfiguration_fails_in_prepare_with_one_clear_message(dsn: str, case: str) -> None:
    setup, kwargs, message = MISCONFIGURED[case]
    run(dsn, setup)
    source = PostgresTable(dsn, "docs", **kwargs)
    with pytest.raises(SourceError, match=message):
        source.prepare()
    assert slot_status(dsn) == []  # nothing half-created
    source.close()


@slow
def test_the_password_never_appears(postgres: Postgres, dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secret, env_secret = "dsn-SECRET-4f1c9a", "env-SECRET-77ab02"
    monkeypatch.setenv("PGPASSWORD", env_secret)
    create_docs(dsn, {1: "one"})
    with_password = dsn.replace(f"//{postgres.user}@", f"//{postgres.user}:{secret}@")
    source = PostgresTable(with_password, "docs")
    source.prepare()  # the server trusts loopback, so the password is sent and ignored
    said = [source.name, repr(source.metrics()), repr(list(source.listing()))]
    source.drop_feed()
    source.close()
    port = free_port()  # nothing listens there
    failing = {
        "does not exist in": PostgresTable(with_password, "missing"),
        f"cannot connect to PostgreSQL at 127.0.0.1:{port}/nowhere": PostgresTable(
            f"postgresql://{postgres.user}:{secret}@127.0.0.1:{port}/nowhere", "docs"
        ),
        "neither a postgresql:// URI": PostgresTable(f"host=127.0.0.1 password={secret} junk", "docs"),
    }
    for message, failure in failing.items():
        with pytest.raises(SourceError, match=message) as raised:
            failure.prepare()
        said += [failure.name, str(raised.value)]
        assert raised.value.__cause__ is None
    assert all(secret not in text and env_secret not in text for text in said), said


@slow
def test_listing_and_reads_agree_on_versions(dsn: str, make_source: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    texts: dict[int, str | None] = {
        2: "Ελληνικά, 日本語 and emoji 🎉",
        10: "Cafe\u0301\r\nwith a decomposed é and CRLF",
        3: None,
        4: "   \n\n ",
        30: "plain",
        7: "x" * 5000,
    }
    create_docs(dsn, texts)
    monkeypatch.setattr(postgres_source, "LISTING_BATCH", 2)
    monkeypatch.setattr(postgres_source, "READ_BATCH", 2)
    source = make_source()
    listing = list(source.listing())
    assert [key for key, _ in listing] == ["2", "3", "4", "7", "10", "30"]  # key order, over three pages
    versions = dict(listing)
    for key, text in texts.items():
        expected = "null" if text is None else hashlib.md5(text.encode("utf-8")).hexdigest()
        assert versions[str(key)] == expected

    reads = list(source.read_many(["10", "3", "2", "10", "404", "not-a-number", "4", "7", "30"]))
    assert [key for key, _ in reads] == ["10", "3", "2", "404", "not-a-number", "4", "7", "30"]
    by_key = dict(reads)
    assert by_key["404"] is None and by_key["not-a-number"] is None
    for key, read in by_key.items():
        if read is not None:
            assert read.version == versions[key]
    ten = by_key["10"]
    assert ten is not None and ten.items == [
        Document("10", normalize_text(texts[10] or ""), content_hash(normalize_text(texts[10] or "")), "public.docs/10")
    ]
    assert by_key["3"] == Read("null", [Skip("3", "'text' is NULL")])
    assert by_key["4"] is not None and isinstance(by_key["4"].items[0], Skip)
    assert source.read("2") == by_key["2"] and source.read("405") is None


# Outbox mode


@slow
def test_outbox_follows_edits_and_truncate_and_deletes_acknowledged_rows(dsn: str, make_source: Callable) -> None:
    create_docs(dsn, {1: "one", 2: "two", 3: "three", 4: "four"})
    source = make_source(mode="outbox")
    make_source(mode="outbox")  # a second prepare() changes nothing
    assert source.reconcile_seconds is None
    consumer = Consumer(source)
    consumer.resync()

    run(dsn, "INSERT INTO docs (id, text) VALUES (5, 'five')")
    run(dsn, "UPDATE docs SET text = 'one, edited' WHERE id = 1")
    run(dsn, "DELETE FROM docs WHERE id = 3")
    run(dsn, "UPDATE docs SET id = 40 WHERE id = 4")
    assert source.metrics() == {"outbox_depth": 5.0}
    replayed = source.changes(consumer.cursor, 100)
    assert source.changes(consumer.cursor, 100) == replayed  # a peek: nothing is gone until acknowledged
    changes = consumer.tick()
    assert changes == replayed and set(changes.changed) == {"1", "3", "4", "5", "40"}
    assert consumer.hashes == oracle(dsn)
    assert source.metrics() == {"outbox_depth": 0.0}
    assert run(dsn, "SELECT count(*) FROM embedding_assets_changes_docs") == [(0,)]

    run(dsn, "TRUNCATE docs")
    run(dsn, "INSERT INTO docs (id, text) VALUES (9, 'nine')")
    assert consumer.tick().resync
    assert consumer.hashes == oracle(dsn) == {"9": content_hash("nine")}
    assert not consumer.tick().resync and source.metrics() == {"outbox_depth": 0.0}


@slow
def test_outbox_row_committed_late_with_a_smaller_id_is_not_lost(dsn: str, make_source: Callable) -> None:
    create_docs(dsn, {1: "one", 2: "two"})
    source = make_source(mode="outbox")
    consumer = Consumer(source)
    consumer.resync()
    with contextlib.closing(psycopg2.connect(dsn)) as slow_writer:
        with slow_writer.cursor() as cur:
            cur.execute("UPDATE docs SET text = 'one, committed late' WHERE id = 1")  # takes the smaller id
        run(dsn, "UPDATE docs SET text = 'two, committed first' WHERE id = 2")  # a larger id, committed
        assert consumer.tick().changed == ("2",)
        slow_writer.commit()
    assert consumer.tick().changed == ("1",)  # a cursor of "the largest id seen" would skip it for good
    assert consumer.hashes == oracle(dsn)


# Watermark mode


@slow
def test_watermark_edits_with_late_commits_and_hard_deletes_left_to_the_reconcile(
    dsn: str, make_source: Callable
) -> None:
    create_docs(dsn, {1: "one", 2: "two", 3: "three"})
    source = make_source(mode="watermark")
    assert source.reconcile_seconds == postgres_source.WATERMARK_RECONCILE_SECONDS == 600.0
    consumer = Consumer(source)
    consumer.resync()
    assert set(consumer.tick().changed) == {"1", "2", "3"}  # no cursor: from the beginning

    run(dsn, "INSERT INTO docs (id, text, updated_at) VALUES (4, 'four', now())")
    run(dsn, "UPDATE docs SET text = 'two, edited', updated_at = now() WHERE id = 2")
    assert {"2", "4"} <= set(consumer.tick().changed)
    assert consumer.hashes == oracle(dsn)

    with contextlib.closing(psycopg2.connect(dsn)) as late:
        with late.cursor() as cur:  # stamped an hour ago, committed after the watermark has moved on
            cur.execute("UPDATE docs SET text = 'one, late', updated_at = now() - interval '1 hour' WHERE id = 1")
        run(dsn, "UPDATE docs SET text = 'four, edited', updated_at = now() WHERE id = 4")
        consumer.tick()  # the watermark moves on, an hour past the late row's timestamp
        late.commit()
    run(dsn, "DELETE FROM docs WHERE id = 3")  # a hard delete: no watermark sees it
    changes = consumer.tick()
    assert "1" not in changes.changed and "3" not in changes.changed + changes.deleted
    assert consumer.hashes != oracle(dsn)

    assert consumer.reconcile() == {"1", "3"}  # the listing diff catches both
    assert consumer.hashes == oracle(dsn)


@slow
def test_watermark_pages_through_rows_sharing_one_timestamp(dsn: str, make_source: Callable) -> None:
    create_docs(dsn, {key: f"doc {key}" for key in range(1, 26)})
    source = make_source(mode="watermark")
    consumer = Consumer(source)
    consumer.resync()
    consumer.drain(limit=10)
    run(dsn, "UPDATE docs SET text = text || ', bulk', updated_at = now()")  # one transaction: one timestamp
    batches = consumer.drain(limit=10)
    assert [batch.more for batch in batches] == [True, True, False]
    assert {key for batch in batches for key in batch.changed} == {str(key) for key in range(1, 26)}
    assert consumer.hashes == oracle(dsn)
    marks = [mark for batch in batches if (mark := WatermarkCursor.parse(batch.cursor).at) is not None]
    assert len(marks) == len(batches) and marks == sorted(marks)  # never backwards


# Pure helpers: no server


def _relation_message(relid: int, columns: list[str]) -> bytes:
    body = struct.pack("!I", relid) + b"public\x00docs\x00d" + struct.pack("!H", len(columns))
    for position, name in enumerate(columns):
        body += struct.pack("!B", 1 if position == 0 else 0) + name.encode() + b"\x00" + struct.pack("!Ii", 23, -1)
    return b"R" + body


def _tuple(*values: object) -> bytes:
    out = struct.pack("!H", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED:
            out += b"u"
        else:
            data = str(value).encode()
            out += b"t" + struct.pack("!I", len(data)) + data
    return out


def test_decoder_reads_row_messages_and_skips_the_rest() -> None:
    decoder = Decoder()
    assert decoder.decode(b"B" + struct.pack("!QqI", 0x1_0000_0010, 0, 733)) is not None
    relation = decoder.decode(_relation_message(16400, ["id", "text"]))
    assert isinstance(relation, Relation) and [c.name for c in relation.columns] == ["id", "text"]
    assert relation.columns[0].is_key and not relation.columns[1].is_key

    insert = decoder.decode(b"I" + struct.pack("!I", 16400) + b"N" + _tuple("7", "héllo"))
    assert isinstance(insert, Insert) and insert.new == ("7", "héllo")
    moved = decoder.decode(b"U" + struct.pack("!I", 16400) + b"K" + _tuple("7", None) + b"N" + _tuple("8", UNCHANGED))
    assert isinstance(moved, Update) and moved.relation.value(moved.old or (), "id") == "7"
    assert moved.relation.value(moved.new, "text") is UNCHANGED
    in_place = decoder.decode(b"U" + struct.pack("!I", 16400) + b"N" + _tuple("8", None))
    assert isinstance(in_place, Update) and in_place.old is None
    delete = decoder.decode(b"D" + struct.pack("!I", 16400) + b"K" + _tuple("8", None))
    assert isinstance(delete, Delete) and delete.old == ("8", None)
    truncate = decoder.decode(b"T" + struct.pack("!IBI", 1, 0, 16400))
    assert truncate == Truncate((16400,))
    commit = decoder.decode(b"C" + struct.pack("!BQQq", 0, 0x100, 0x130, 1_500_000))  # µs after 2000-01-01
    assert commit == Commit(0x100, 0x130, committed_at=946_684_801.5)
    assert decoder.decode(b"O" + struct.pack("!Q", 1) + b"origin\x00") is None
    assert decoder.decode(b"Y" + struct.pack("!I", 1) + b"public\x00t\x00") is None
    with pytest.raises(DecodeError, match="'S'"):
        decoder.decode(b"S" + struct.pack("!IB", 1, 1))  # streaming: not protocol version 1
    with pytest.raises(DecodeError, match="before its relation"):
        decoder.decode(b"I" + struct.pack("!I", 99) + b"N" + _tuple("1"))
    with pytest.raises(DecodeError, match="truncated"):
        decoder.decode(b"I" + struct.pack("!I", 16400) + b"N" + _tuple("7", "text")[:-2])
    with pytest.raises(DecodeError, match="no column 'body'"):
        relation.value(("1", "x"), "body")


def test_lsns_round_trip_and_reject_other_text() -> None:
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert format_lsn(parse_lsn("0/1924E90")) == "0/1924E90"
    for bad in ("", "16", "0x1/2", "1/2/3", "2024-01-01T00:00:00+00:00", "16420:1-5"):
        with pytest.raises(ValueError, match="not an LSN"):
            parse_lsn(bad)


def test_outbox_cursor_names_exactly_the_rows_it_read() -> None:
    assert id_ranges([9, 5, 6, 7, 12, 13]) == "5-7,9,12-13"
    assert id_ranges([]) == ""
    assert parse_outbox_cursor("16420:5-7,9,12-13") == (16420, [(5, 7), (9, 9), (12, 13)])
    assert parse_outbox_cursor("16420:") == (16420, [])
    for other in ("0/1924E90", "2024-01-01T00:00:00+00:00", "16420:5-", "x:1", "16420:1;DROP"):
        assert parse_outbox_cursor(other) is None


def test_watermark_cursor_round_trips_and_rejects_other_cursors() -> None:
    at = WatermarkCursor.parse("2024-05-01T10:00:00.123456+00:00")
    assert at.after is None and WatermarkCursor.parse(at.text()) == at
    cut = WatermarkCursor.parse("2024-05-01T10:00:00+00:00|2024-05-01T09:00:00+00:00|key|with|bars")
    assert cut.after is not None and cut.after[1] == "key|with|bars" and WatermarkCursor.parse(cut.text()) == cut
    assert WatermarkCursor.parse(None) == WatermarkCursor.parse("") == WatermarkCursor(None)
    for other in ("0/1924E90", "16420:1-5", "2024-05-01T10:00:00", "2024-05-01T10:00:00+00:00|x"):
        with pytest.raises(ValueError, match="not a watermark cursor"):
            WatermarkCursor.parse(other)


def test_object_names_are_slot_safe_and_bounded() -> None:
    assert object_name("embedding_assets", "App-DB", "Docs") == "embedding_assets_app_db_docs"
    long_a, long_b = object_name("p", "d" * 40, "a" * 40), object_name("p", "d" * 40, "a" * 39 + "b")
    assert len(long_a) == len(long_b) == 63 and long_a != long_b
    assert all(ch.isdigit() or ch.islower() or ch == "_" for ch in long_a)


def test_primary_key_problems_name_the_table_and_the_variable() -> None:
    assert primary_key_problem("public.docs", ["id"], "id") is None
    for key in ([], ["a", "b"], ["doc_id"]):
        message = primary_key_problem("public.docs", key, "id")
        assert message is not None and "public.docs" in message and "EMBEDDING_ASSETS_ID_FIELD" in message
