"""Does the index equal its source? Exact differences per shard, and which shards need a refresh."""

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embedding_assets.core.chunking import ChunkingConfig, chunk_document
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.hashing import set_hash
from embedding_assets.core.shard_work import Kept
from embedding_assets.core.sources import Document, Item
from embedding_assets.core.store import ShardState, VectorStore, document_keys, fingerprint

MAX_LISTED = 20
CHUNK_COLUMNS = ("chunk_id", "doc_id", "chunk_hash", "doc_hash")  # what expected_chunks takes from staged chunks
EXPECTED_SCHEMA = pa.schema([(name, pa.string()) for name in CHUNK_COLUMNS])  # what the table must hold
STORED_COLUMNS = (*CHUNK_COLUMNS, "model_version")  # what diff_shard compares
STORED_SCHEMA = pa.schema([(name, pa.string()) for name in STORED_COLUMNS])
PAIR_NAMES = ["doc_id", "doc_hash"]


@dataclass(frozen=True)
class ShardDiff:
    """How the table's rows for a shard differ from what the source says they must be."""

    shard: str
    expected: int
    stored: int
    missing: list[str] = field(default_factory=list)  # chunk ids the table lacks
    extra: list[str] = field(default_factory=list)  # chunk ids the source no longer produces
    changed: list[str] = field(default_factory=list)  # stored with another text or document hash
    wrong_model: list[str] = field(default_factory=list)  # embedded by another model version
    rows_fingerprint: str = ""  # the set hash of the stored rows' (doc_id, doc_hash) pairs
    recorded_fingerprint: str | None = None  # what the shard state records (None: nothing recorded)

    @property
    def fingerprint_matches(self) -> bool:
        """The recorded fingerprint is the stored rows' (vacuously, when none is recorded)."""
        return self.recorded_fingerprint in (None, self.rows_fingerprint)

    @property
    def matches(self) -> bool:
        return not (self.missing or self.extra or self.changed or self.wrong_model) and self.fingerprint_matches

    def figures(self) -> dict[str, int | str | bool]:
        """The counts (and the fingerprint comparison) a check result records."""
        recorded = self.recorded_fingerprint
        return {
            "expected_rows": self.expected,
            "stored_rows": self.stored,
            "missing": len(self.missing),
            "extra": len(self.extra),
            "changed": len(self.changed),
            "wrong_model": len(self.wrong_model),
            "rows_fingerprint": self.rows_fingerprint,
            "recorded_fingerprint": "none" if recorded is None else recorded or "pending",
            "fingerprint_matches": self.fingerprint_matches,
        }

    def describe(self) -> str:
        if self.matches:
            return f"{self.shard}: {self.stored} rows match the source"
        parts = [
            f"{len(ids)} {name} {ids[:MAX_LISTED]}"
            for name, ids in (
                ("missing", self.missing),
                ("extra", self.extra),
                ("changed", self.changed),
                ("wrong model", self.wrong_model),
            )
            if ids
        ]
        if not self.fingerprint_matches:
            recorded = self.recorded_fingerprint or "pending (a write that did not finish)"
            parts.append(f"recorded fingerprint {recorded} is not the rows' {self.rows_fingerprint}")
        return f"{self.shard}: " + "; ".join(parts)


def expected_chunks(
    documents: Iterable[Item | Kept],
    config: ChunkingConfig,
    embedder: Embedder,
    cached: pa.Table | None = None,
    staged: Callable[[str], Document] | None = None,
) -> pa.Table:
    """The chunks (``EXPECTED_SCHEMA``: chunk_id, doc_id, chunk_hash, doc_hash) the table must hold for a
    shard's ``documents`` as the source holds them now (``Index.listing``). ``cached`` chunk rows (made
    by the same chunker) stand in for re-cutting the documents whose hash they carry, column-wise; a
    ``Kept`` document they do not cover is cut from its ``staged`` copy."""
    listed = _listed_documents(documents)
    keys = document_keys(listed.pairs)
    kept = EXPECTED_SCHEMA.empty_table()
    if cached is not None:
        kept = (
            cached.select(CHUNK_COLUMNS).cast(EXPECTED_SCHEMA).filter(pc.is_in(document_keys(cached), value_set=keys))
        )
    uncovered = pc.invert(pc.is_in(keys, value_set=document_keys(kept))).to_numpy(zero_copy_only=False)
    cut = []
    for i in np.flatnonzero(uncovered).tolist():
        doc_id, doc_hash = listed.pairs["doc_id"][i].as_py(), listed.pairs["doc_hash"][i].as_py()
        text = listed.read[i].text if i in listed.read else _staged_text(doc_id, staged)
        cut += [
            {"chunk_id": c.chunk_id, "doc_id": doc_id, "chunk_hash": c.chunk_hash, "doc_hash": doc_hash}
            for c in chunk_document(doc_id, text, config, embedder.count_tokens)
        ]
    return pa.concat_tables([kept, pa.Table.from_pylist(cut, EXPECTED_SCHEMA)])


@dataclass(frozen=True)
class _Listed:
    pairs: pa.Table  # doc_id, doc_hash of every listed document, in order
    read: dict[int, Document]  # the documents read from the source, by their row in ``pairs``


def _listed_documents(documents: Iterable[Item | Kept]) -> _Listed:
    """The documents of a listing (skips left out) as columns, runs of ``Kept`` joined without Python rows."""
    runs: list[pa.Table] = []
    read: dict[int, Document] = {}
    ids: list[str] = []
    hashes: list[str] = []
    rows = 0

    def close() -> None:
        if ids:
            runs.append(pa.table([pa.array(ids, pa.string()), pa.array(hashes, pa.string())], PAIR_NAMES))
            ids.clear()
            hashes.clear()

    for doc in documents:
        if isinstance(doc, Kept):
            close()
            runs.append(pa.table([doc.doc_ids, doc.doc_hashes], PAIR_NAMES))
            rows += len(doc)
        elif isinstance(doc, Document):
            read[rows] = doc
            ids.append(doc.doc_id)
            hashes.append(doc.doc_hash)
            rows += 1
    close()
    pairs = pa.concat_tables(runs) if runs else pa.table([pa.array([], pa.string())] * 2, PAIR_NAMES)
    return _Listed(pairs, read)


def _staged_text(doc_id: str, staged: Callable[[str], Document] | None) -> str:
    if staged is None:
        raise ValueError(f"{doc_id} is kept from a staged copy, but no staged copy was given")
    return staged(doc_id).text


def diff_shard(
    shard: str,
    expected: pa.Table,
    stored: pa.Table | None,
    model_version: str,
    recorded: ShardState | None = None,
) -> ShardDiff:
    """Compare the stored rows of ``shard`` (``STORED_COLUMNS``; None: no table yet) with the
    ``expected`` chunks (``expected_chunks``), column-wise, and the fingerprint its ``recorded`` state
    holds (None: not compared) with theirs. Duplicated stored ids are listed as extra too."""
    rows = STORED_SCHEMA.empty_table() if stored is None else stored.select(STORED_COLUMNS).cast(STORED_SCHEMA)
    wanted, held = expected.column("chunk_id"), rows.column("chunk_id")
    both = expected.join(rows, keys="chunk_id", join_type="inner", right_suffix="_stored")
    differs = functools.reduce(
        pc.or_,
        [
            pc.not_equal(pc.fill_null(both.column(c), ""), pc.fill_null(both.column(f"{c}_stored"), ""))
            for c in CHUNK_COLUMNS[1:]
        ],
    )
    changed = both.filter(differs)
    other_model = rows.filter(pc.not_equal(pc.fill_null(rows.column("model_version"), ""), model_version))
    return ShardDiff(
        shard,
        expected.num_rows,
        0 if stored is None else stored.num_rows,
        missing=_ids(expected.filter(pc.invert(pc.is_in(wanted, value_set=held)))),
        extra=_ids(rows.filter(pc.invert(pc.is_in(held, value_set=wanted)))) + _duplicates(stored),
        changed=_ids(changed),
        wrong_model=_ids(other_model),
        rows_fingerprint=fingerprint(stored),
        recorded_fingerprint=None if recorded is None else recorded.fingerprint,
    )


def _ids(rows: pa.Table) -> list[str]:
    """The distinct chunk ids of ``rows``, sorted."""
    return sorted(pc.unique(rows.column("chunk_id")).to_pylist())


def _duplicates(stored: pa.Table | None) -> list[str]:
    if stored is None:
        return []
    counts = pc.value_counts(stored.column("chunk_id")).to_pylist()
    return sorted(c["values"] for c in counts if c["counts"] > 1)


def stale_shards(
    fingerprints: Mapping[str, str], store: VectorStore, model_version: str, expire_before: datetime | None = None
) -> list[str]:
    """Shards whose table rows do not come from exactly the documents whose set hash ``fingerprints``
    holds (shard → ``set_hash`` of its (doc_id, doc_hash) pairs, as the change index keeps it), or hold
    vectors embedded before ``expire_before``. Compares with the shard states recorded beside the table
    (one read of a row per shard), never the table itself: a shard whose write did not finish reads as
    pending and so as stale. A shard no state records yet (a table of an older release) is computed
    from its rows once, by an indexed read of that shard."""
    states = store.shard_states(model_version, fingerprints)
    return [shard for shard, source in sorted(fingerprints.items()) if _stale(states.get(shard), source, expire_before)]


def _stale(state: ShardState | None, source: str, expire_before: datetime | None) -> bool:
    """Whether a shard whose state is ``state`` (None: no table yet) must be refreshed."""
    if state is None:
        return source != set_hash(())  # only a shard with documents needs the table
    oldest = state.oldest_embedded_at
    expired = expire_before is not None and oldest is not None and oldest < expire_before
    return state.fingerprint != source or expired
