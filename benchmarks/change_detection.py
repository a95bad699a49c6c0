"""What change detection costs at 10^4 and 10^6 source documents: an idle tick and a 10-document change.

First with a generated source (documents made on demand, a change feed in memory), so that what is
timed is the change index itself, the part that must not grow with the corpus; then with a real feed,
a PostgreSQL table followed through its logical replication slot, with the change index in SQLite
(local profile) and in PostgreSQL (production profile). Writes benchmarks/change_detection.md.
"""

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embedding_assets.core.change_index import ChangeIndex
from embedding_assets.core.change_index_db import IndexDatabase, PostgresDatabase, SqliteDatabase
from embedding_assets.core.hashing import content_hash
from embedding_assets.core.sources import Changes, Document, Read, Source
from embedding_assets.core.sources.postgres import PostgresTable
from embedding_assets_tests.services import Postgres, postgres_server

SHARDS = 256
SIZES = (10_000, 1_000_000)
POSTGRES_INDEX_SIZES = (10_000, 100_000)  # a first sync into PostgreSQL is round-trip bound: 10^6 takes long
TICKS = 20


class GeneratedFeed(Source):
    """``size`` one-document keys; ``edit`` queues changes that the next ``changes`` call reports."""

    name = "generated"

    def __init__(self, size: int) -> None:
        self.size, self.revision, self.pending = size, {}, set()

    def edit(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.revision[key] = self.revision.get(key, 0) + 1
        self.pending |= set(keys)

    def changes(self, cursor: str | None, limit: int) -> Changes | None:
        batch, self.pending = tuple(sorted(self.pending)), set()
        return Changes(changed=batch, cursor=str(int(cursor or 0) + 1))

    def listing(self) -> Iterator[tuple[str, str]]:
        for i in range(self.size):
            yield f"doc{i:07d}", ""

    def read(self, key: str) -> Read | None:
        text = f"document {key} revision {self.revision.get(key, 0)}"
        return Read(str(self.revision.get(key, 0)), [Document(key, text, content_hash(text), key)])


def measure(size: int, root: Path) -> dict[str, float]:
    source = GeneratedFeed(size)
    return timed(ChangeIndex(SqliteDatabase(root / f"index-{size}.sqlite"), SHARDS), source, size, source.edit)


def timed(
    index: ChangeIndex,
    source: Source,
    size: int,
    edit: Callable[[list[str]], None],
    after_first_sync: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """The first sync, then TICKS idle ticks and TICKS ticks after ``edit`` changed 10 keys."""
    started = time.perf_counter()
    source.prepare()
    index.sync(source, limit=10_000)  # the first sync lists and reads everything
    while index.sync(source, limit=10_000).more:
        pass
    first = time.perf_counter() - started
    after_first_sync()
    idle, change = [], []
    for tick in range(TICKS):
        started = time.perf_counter()
        index.sync(source)
        idle.append(time.perf_counter() - started)
        edit([f"doc{(tick * 7919 + i * 104729) % size:07d}" for i in range(10)])
        started = time.perf_counter()
        report = index.sync(source)
        change.append(time.perf_counter() - started)
        assert report.keys_read == 10 and report.changed_shards, report
    return {
        "first_sync_s": first,
        "idle_ms": statistics.median(idle) * 1e3,
        "change_ms": statistics.median(change) * 1e3,
    }


def postgres_feed(
    size: int, server: Postgres, label: str, database: Callable[[str], IndexDatabase]
) -> dict[str, float]:
    """A table of ``size`` short rows followed through a logical slot; edits update 10 rows."""
    import psycopg2

    name = f"feed_{size}_{label}"
    db = server.create_database(name)
    connection = psycopg2.connect(host=server.host, port=server.port, user=server.user, dbname=db)
    connection.autocommit = True
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE docs (id text PRIMARY KEY, text text NOT NULL)")
        cur.execute(
            "INSERT INTO docs SELECT 'doc' || lpad(i::text, 7, '0'), 'document ' || i "
            "FROM generate_series(0, %s - 1) AS i",
            (size,),
        )

    def edit(keys: list[str]) -> None:
        with connection.cursor() as cur:
            cur.execute("UPDATE docs SET text = text || ' edited' WHERE id = ANY(%s)", (keys,))

    source = PostgresTable(f"postgresql://{server.user}@{server.host}:{server.port}/{db}", "public.docs")
    try:
        # A slot decodes from its restart point, which PostgreSQL moves at a checkpoint or a running-xacts
        # record (every 15 s of activity): until then every tick re-decodes the first sync's own WAL.
        return timed(ChangeIndex(database(name), SHARDS), source, size, edit, lambda: checkpoint(connection))
    finally:
        source.close()
        connection.close()


def checkpoint(connection: Any) -> None:
    with connection.cursor() as cur:
        cur.execute("CHECKPOINT")


def table(title: str, figures: dict[int, dict[str, float]]) -> list[str]:
    small, large = (figures[s] for s in sorted(figures))
    return [
        f"### {title}",
        "",
        "| documents | first sync (lists and reads all) | idle tick | 10-document change |",
        "|---|---|---|---|",
        *(
            f"| {size:,} | {f['first_sync_s']:.1f} s | {f['idle_ms']:.2f} ms | {f['change_ms']:.2f} ms |"
            for size, f in figures.items()
        ),
        "",
        f"Ratio {max(figures):,} / {min(figures):,}: idle tick **{large['idle_ms'] / small['idle_ms']:.2f}x**, "
        f"10-document change **{large['change_ms'] / small['change_ms']:.2f}x** (target: within 1.5x).",
        "",
    ]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, postgres_server() as server:
        root = Path(tmp)
        dsn = f"postgresql://{server.user}@{server.host}:{server.port}/{server.db}"
        generated = {size: measure(size, root) for size in SIZES}
        slot_sqlite = {
            size: postgres_feed(size, server, "sqlite", lambda n: SqliteDatabase(root / f"{n}.sqlite"))
            for size in SIZES
        }
        slot_postgres = {
            size: postgres_feed(size, server, "postgres", lambda n: PostgresDatabase(dsn, f"index_{n}"))
            for size in POSTGRES_INDEX_SIZES
        }
    lines = [
        "# Change detection at 10^4 and 10^6 documents",
        "",
        f"{SHARDS} shards; medians of {TICKS} ticks, each tick one `ChangeIndex.sync`. "
        "Written by `benchmarks/change_detection.py` (`make bench`).",
        "",
        *table("Generated source, change index in SQLite (the index's own cost)", generated),
        *table("PostgreSQL table through its logical slot, change index in SQLite (local profile)", slot_sqlite),
        *table(
            "PostgreSQL table through its logical slot, change index in PostgreSQL (production profile)", slot_postgres
        ),
    ]
    out = Path(__file__).with_name("change_detection.md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
