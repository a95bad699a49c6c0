"""What a user looks at first: the whole index's totals, a run's totals, the table's columns and a
few of its rows. All from what is already recorded, so their cost never grows with the table:
the index totals from the shard states beside the table (one row per shard), a run's from its
own per-shard figures, and the preview from the first rows LanceDB returns.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

from embedding_assets.core.store import ShardState, VectorStore, table_name

# Per-shard figures a run adds up (those of each step that has them), recorded as ``run_<name>``.
RUN_FIGURES = (
    "documents",
    "skipped",
    "chunks",
    "tokens",
    "chunks_embedded",
    "chunks_reused",
    "tokens_embedded",
    "cost_usd",
    "chunks_inserted",
    "chunks_updated",
    "chunks_deleted",
)
PREVIEW_ROWS = 3
PREVIEW_COLUMNS = ("chunk_id", "doc_id", "shard", "token_count", "text")
PREVIEW_TEXT_CHARS = 120


def index_totals(states: Mapping[str, ShardState]) -> dict[str, Any]:
    """Rows, documents, tokens and shards of the whole table, and its oldest vector, from the shard
    states. A shard whose write is under way (pending) still counts what its state last recorded;
    tokens are None while a shard's state predates token totals (its next write records them)."""
    oldest = [s.oldest_embedded_at for s in states.values() if s.oldest_embedded_at is not None]
    tokens = [s.tokens for s in states.values()]
    return {
        "rows": sum(s.rows for s in states.values()),
        "documents": sum(s.documents for s in states.values()),
        "tokens": None if None in tokens else sum(t or 0 for t in tokens),
        "shards_with_rows": sum(1 for s in states.values() if s.rows),
        "shards_being_written": sum(1 for s in states.values() if s.pending),
        "oldest_embedded_at": min(oldest) if oldest else None,
    }


def run_totals(per_shard: Iterable[Mapping[str, Any]], figures: Sequence[str] = RUN_FIGURES) -> dict[str, float]:
    """The sums over a run's shards of the ``figures`` they report, plus how many shards it ran."""
    shards = list(per_shard)
    totals: dict[str, float] = {"run_shards": len(shards)}
    for name in figures:
        values = [shard[name] for shard in shards if isinstance(shard.get(name), int | float)]
        if values and not any(isinstance(v, bool) for v in values):
            total = sum(values)
            totals[f"run_{name}"] = round(total, 6) if isinstance(total, float) else total
    return totals


def table_uri(lancedb_uri: str, model_version: str) -> str:
    """Where the model's table lives: ``<lancedb uri>/<table>.lance``."""
    return f"{lancedb_uri.rstrip('/')}/{table_name(model_version)}.lance"


def column_types(schema: pa.Schema) -> list[tuple[str, str]]:
    """(name, type) of every column, as Arrow names them (``fixed_size_list<item: float>[384]``)."""
    return [(f.name, str(f.type)) for f in schema]


def declared_dimensions(model_version: str) -> int | None:
    """The vector size a model version names (``.../384d``); None for ``.../native``, which only the
    model itself can tell (asking it is a request, so definitions never do)."""
    found = re.search(r"/(\d+)d$", model_version)
    return int(found.group(1)) if found else None


def preview(store: VectorStore, model_version: str, rows: int = PREVIEW_ROWS) -> list[dict[str, Any]]:
    """A few of the table's rows (the first LanceDB returns), texts shortened, no vectors."""
    table = store.table(model_version)
    if table is None:
        return []
    columns = [c for c in PREVIEW_COLUMNS if c in table.schema.names]
    found: list[dict[str, Any]] = table.search().select(columns).limit(rows).to_arrow().to_pylist()
    for row in found:
        text = " ".join(str(row.get("text", "")).split())
        row["text"] = text if len(text) <= PREVIEW_TEXT_CHARS else text[: PREVIEW_TEXT_CHARS - 3] + "..."
    return found


def iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""
