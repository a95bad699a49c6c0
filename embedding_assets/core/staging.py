"""Intermediate asset data on disk: one Parquet file per asset and shard, written atomically.

Parquet rather than pickles, so a person can open any stage with pyarrow, DuckDB or pandas.
"""

import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from embedding_assets.core.errors import ConfigError

BATCH_ROWS = 1024
# No dictionary pages: a staged column is mostly distinct values (ids, texts, hashes, vectors), and trying
# one on real embedding vectors made an embeddings file 4x slower to write and 40% larger
# (40 ms against 9 ms, 3.6 MB against 2.5 MB, for a shard of 1,383 chunks; a toy model's few distinct
# floats had hidden it).
USE_DICTIONARY = False
Row = dict[str, Any]  # one row as pyarrow's to_pylist gives it


IDENTITY_FILE = "index.json"


class Staging:
    """``<root>/<asset>/<shard>.parquet``; ``variant`` separates data that depends on a model or config.

    With an ``identity`` (what the index is), the folder belongs to that index: the first use writes it
    to ``index.json``, and every later use refuses a folder that names another index."""

    def __init__(self, root: str | Path, identity: Mapping[str, str] | None = None) -> None:
        self.root = Path(root)
        self.identity = dict(identity or {})
        self._claimed = False

    def claim(self) -> None:
        """Make sure this folder is this index's (once per object; a no-op without an identity)."""
        if self._claimed or not self.identity:
            return
        path = self.root / IDENTITY_FILE
        if path.exists():
            recorded = json.loads(path.read_text(encoding="utf-8"))
            if recorded != self.identity:
                raise ConfigError(
                    f"the staging folder {self.root} belongs to another index ({recorded}), not to this one "
                    f"({self.identity}); set EMBEDDING_ASSETS_STAGING_DIR to a folder of this index's own"
                )
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{IDENTITY_FILE}.{os.getpid()}.partial")
            partial.write_text(json.dumps(self.identity, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(partial, path)
        self._claimed = True

    def path(self, asset: str, shard: str, variant: str = "") -> Path:
        return self.root / asset / variant / f"{shard}.parquet" if variant else self.root / asset / f"{shard}.parquet"

    @contextmanager
    def lock(self, shard: str, scope: str) -> Iterator[None]:
        """Exclusive lock on one shard's ``scope`` (the raw documents, one profile's chunks, one table)
        for every process on this host (flock, released if the process dies), so two runs writing the same
        file or table for a shard never interleave, while two models' work on one shard does not wait."""
        self.claim()
        path = self.root / "locks" / scope / f"{shard}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def change_index(self) -> Path:
        """The change index: what every key of the source held, and each shard's fingerprint."""
        self.claim()
        return self.root / "change_index.sqlite"

    def read_batches(self, path: Path, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: materialize the upstream asset for this shard first")
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows)

    def row_count(self, path: Path) -> int | None:
        """Rows in a staged file, from its footer (None when the file does not exist)."""
        return pq.read_metadata(path).num_rows if path.exists() else None

    def read(self, path: Path, columns: list[str] | None = None) -> pa.Table:
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: materialize the upstream asset for this shard first")
        return pq.read_table(path, columns=columns)

    def metadata(self, path: Path) -> dict[str, str]:
        """The key-value metadata a stage wrote into the file's footer ({} when there is no file)."""
        if not path.exists():
            return {}
        return {
            k.decode(): v.decode()
            for k, v in (pq.read_metadata(path).metadata or {}).items()
            if not k.startswith(b"ARROW:")
        }

    @contextmanager
    def writer(
        self, path: Path, schema: pa.Schema, metadata: Mapping[str, str] | None = None
    ) -> Iterator[pq.ParquetWriter]:
        """A Parquet writer whose file appears only if the block completes (write, then rename).
        ``metadata`` goes into the footer when the block ends, so it may be filled while rows stream.

        Callers hold the shard's lock, so a leftover partial file of the same target is a dead writer's."""
        path.parent.mkdir(parents=True, exist_ok=True)
        for leftover in path.parent.glob(f".{path.name}.*.partial"):  # from a writer that was killed
            leftover.unlink(missing_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with pq.ParquetWriter(partial, schema, use_dictionary=USE_DICTIONARY) as out:
                yield out
                if metadata:
                    out.add_key_value_metadata(dict(metadata))
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    def write_rows(
        self, path: Path, schema: pa.Schema, rows: Iterable[Row], metadata: Mapping[str, str] | None = None
    ) -> int:
        """Stream ``rows`` to ``path`` in bounded batches; returns the row count."""
        count = 0
        with self.writer(path, schema, metadata) as out:
            batch: list[Row] = []
            for row in rows:
                batch.append(row)
                if len(batch) >= BATCH_ROWS:
                    out.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                    count, batch = count + len(batch), []
            if batch:
                out.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                count += len(batch)
        return count
