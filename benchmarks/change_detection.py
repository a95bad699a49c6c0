"""What change detection costs at 10^4 and 10^6 source documents: an idle tick and a 10-document change.

The source here is generated (documents made on demand, a change feed in memory), so what is timed is
the change index itself, the part that must not grow with the corpus. A real feed adds its own call:
an idle PostgreSQL slot peek or SQS receive is milliseconds (core/test_postgres_source.py,
core/test_s3_source.py). Writes benchmarks/change_detection.md.
"""

import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embedding_assets.core.change_index import ChangeIndex
from embedding_assets.core.change_index_db import SqliteDatabase
from embedding_assets.core.hashing import content_hash
from embedding_assets.core.sources import Changes, Document, Read, Source

SHARDS = 256
SIZES = (10_000, 1_000_000)
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
    source, index = GeneratedFeed(size), ChangeIndex(SqliteDatabase(root / f"index-{size}.sqlite"), SHARDS)
    started = time.perf_counter()
    index.sync(source, limit=size)  # the first sync lists and reads everything
    first = time.perf_counter() - started
    idle, change = [], []
    for tick in range(TICKS):
        started = time.perf_counter()
        index.sync(source)
        idle.append(time.perf_counter() - started)
        source.edit([f"doc{(tick * 7919 + i * 104729) % size:07d}" for i in range(10)])
        started = time.perf_counter()
        report = index.sync(source)
        change.append(time.perf_counter() - started)
        assert report.keys_read == 10 and report.changed_shards, report
    return {
        "first_sync_s": first,
        "idle_ms": statistics.median(idle) * 1e3,
        "change_ms": statistics.median(change) * 1e3,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        figures = {size: measure(size, Path(tmp)) for size in SIZES}
    small, large = (figures[s] for s in SIZES)
    lines = [
        "# Change detection at 10^4 and 10^6 documents",
        "",
        f"Generated one-document keys, {SHARDS} shards, the change index in SQLite on local disk; medians of "
        f"{TICKS} ticks. Written by `benchmarks/change_detection.py` (`make bench`).",
        "",
        "| documents | first sync (lists and reads all) | idle tick | 10-document change |",
        "|---|---|---|---|",
        *(
            f"| {size:,} | {f['first_sync_s']:.1f} s | {f['idle_ms']:.2f} ms | {f['change_ms']:.2f} ms |"
            for size, f in figures.items()
        ),
        "",
        f"Ratio 10^6 / 10^4: idle tick **{large['idle_ms'] / small['idle_ms']:.2f}x**, "
        f"10-document change **{large['change_ms'] / small['change_ms']:.2f}x** (target: within 1.5x).",
        "",
    ]
    out = Path(__file__).with_name("change_detection.md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
