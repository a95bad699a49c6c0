"""Does the index equal its source? Exact differences per shard, and which shards need a refresh."""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from embedding_assets.core.chunking import ChunkingConfig, chunk_document
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.hashing import set_hash
from embedding_assets.core.shard_work import Kept
from embedding_assets.core.sources import Document, Item, Skip
from embedding_assets.core.store import ShardState, VectorStore, fingerprint

MAX_LISTED = 20
STORED_COLUMNS = ("chunk_id", "doc_id", "chunk_hash", "doc_hash", "model_version")  # what diff_shard compares
CHUNK_COLUMNS = ("chunk_id", "doc_id", "chunk_hash", "doc_hash")  # what expected_chunks takes from staged chunks


class ExpectedChunk(NamedTuple):
    """What the table must hold for one chunk id (a tuple: a shard makes one per chunk, and a frozen
    dataclass costs several times as much to build)."""

    doc_id: str
    chunk_hash: str
    doc_hash: str


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
) -> dict[str, ExpectedChunk]:
    """chunk_id → what the table must hold for it, computed from a shard's ``documents`` as the source
    holds them now (``Index.listing``). ``cached`` chunk rows (made by the same chunker) stand in for
    re-cutting the documents whose hash they carry; a ``Kept`` document they do not cover is cut from
    its ``staged`` copy."""
    known: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (doc_id, doc_hash) → its (chunk_id, chunk_hash)
    columns = [] if cached is None else [cached.column(c).to_pylist() for c in CHUNK_COLUMNS]
    for chunk_id, doc_id, chunk_hash, doc_hash in zip(*columns, strict=True):
        known.setdefault((doc_id, doc_hash), []).append((chunk_id, chunk_hash))
    expected = {}
    for doc in documents:
        if isinstance(doc, Skip):
            continue
        chunks = known.get((doc.doc_id, doc.doc_hash))
        if not chunks:
            text = doc.text if isinstance(doc, Document) else _staged_text(staged, doc)
            chunks = [
                (c.chunk_id, c.chunk_hash) for c in chunk_document(doc.doc_id, text, config, embedder.count_tokens)
            ]
        for chunk_id, chunk_hash in chunks:
            expected[chunk_id] = ExpectedChunk(doc.doc_id, chunk_hash, doc.doc_hash)
    return expected


def _staged_text(staged: Callable[[str], Document] | None, kept: Kept) -> str:
    if staged is None:
        raise ValueError(f"{kept.doc_id} is kept from a staged copy, but no staged copy was given")
    return staged(kept.doc_id).text


def diff_shard(
    shard: str,
    expected: dict[str, ExpectedChunk],
    stored: pa.Table | None,
    model_version: str,
    recorded: ShardState | None = None,
) -> ShardDiff:
    """Compare the stored rows of ``shard`` (None: no table yet) with the expected chunks, and the
    fingerprint its ``recorded`` state holds (None: not compared) with theirs."""
    # chunk_id → (doc_id, chunk_hash, doc_hash, model_version), read column by column (a dict per row
    # costs more than the comparison); the last of duplicated ids is compared, the rest listed as extra.
    columns = [] if stored is None else [stored.column(c).to_pylist() for c in STORED_COLUMNS]
    rows = {chunk_id: tuple(rest) for chunk_id, *rest in zip(*columns, strict=True)}
    both = sorted(expected.keys() & rows.keys())
    return ShardDiff(
        shard,
        len(expected),
        0 if stored is None else stored.num_rows,
        missing=sorted(expected.keys() - rows.keys()),
        extra=sorted(rows.keys() - expected.keys()) + _duplicates(stored),
        changed=[k for k in both if rows[k][:3] != expected[k]],
        wrong_model=sorted(k for k, r in rows.items() if r[3] != model_version),
        rows_fingerprint=fingerprint(stored),
        recorded_fingerprint=None if recorded is None else recorded.fingerprint,
    )


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
