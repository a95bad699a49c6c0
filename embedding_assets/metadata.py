"""Materialization metadata a user reads first, as Dagster metadata values (figures in ``core.index_totals``).

The table's name, location and columns are definition metadata (the same for every shard, shown
without any event). A ranged run's totals (the whole index, the run's sums) are run-level metadata,
so every shard's event carries them: the newest one, whichever shard it is, shows them, and a run's
shards plot as one point, their values being equal.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pyarrow as pa

from embedding_assets.core.index_totals import (
    column_types,
    declared_dimensions,
    index_totals,
    iso,
    preview,
    run_totals,
    table_uri,
)
from embedding_assets.core.shards import shard_keys
from embedding_assets.core.store import VectorStore, row_schema, table_name

LOCAL_PREFIX = "local:"
PROVIDER_FIGURES = ("cost_usd", "model_calls", "retries", "rate_limited", "paced_seconds")
UNPOOLED_PROFILES = ("local",)  # whose dagster.yaml limits no pool (see deploy/local/dagster.yaml)


def provider_figures(model_version: str, figures: Mapping[str, Any]) -> dict[str, Any]:
    """A provider's cost, calls, retries and 429s; nothing for a local model, for which they are always 0."""
    return {} if model_version.startswith(LOCAL_PREFIX) else {k: figures[k] for k in PROVIDER_FIGURES if k in figures}


def embedding_pool(profile: str, slug: str) -> str | None:
    """The Dagster concurrency pool one active model's embedding steps share across runs
    (``embedding_api_<slug>``). None on a profile that limits no pool: a pool without a limit changes
    nothing there, and the UI flags it with an unexplained warning."""
    return None if profile in UNPOOLED_PROFILES else f"embedding_api_{slug}"


def table_definition(lancedb_uri: str, model_version: str, shard_count: int) -> dict[str, Any]:
    """The vector table's name, URI and column schema, as the asset's definition metadata (the vector's
    size as the model version names it: a model of unknown size is not asked while definitions load)."""
    dimensions = declared_dimensions(model_version)
    schema = row_schema(dimensions or 1, model_version=model_version, shard_count=shard_count)
    if dimensions is None:
        schema = schema.set(schema.get_field_index("vector"), pa.field("vector", pa.list_(pa.float32())))
    return {
        "dagster/table_name": table_name(model_version),
        "dagster/uri": table_uri(lancedb_uri, model_version),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, kind) for name, kind in column_types(schema)]
        ),
    }


def run_summary(per_shard: Sequence[Mapping[str, Any]], shared: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The run's sums of its shards' figures (``run_chunks_embedded``, ...), plus the ``shared`` figures
    of work done for several shards at once (a request of texts pooled from many shards)."""
    totals: dict[str, Any] = run_totals(per_shard)
    for name, value in (shared or {}).items():
        totals[f"run_{name}"] = totals.get(f"run_{name}", 0) + value
    return totals


def table_summary(store: VectorStore, model_version: str) -> dict[str, Any]:
    """The whole table's totals from the shard states (O(shards)) and a preview of a few rows."""
    info = store.info(model_version)
    if info is None:
        return {}
    totals = index_totals(store.shard_states(model_version, shard_keys(info.shard_count)))
    rows = preview(store, model_version)
    shown = list(rows[0]) if rows else []
    return {
        "dagster/row_count": totals["rows"],  # the whole table's (each shard's is ``rows``)
        "index_rows": totals["rows"],
        "index_documents": totals["documents"],
        **({} if totals["tokens"] is None else {"index_tokens": totals["tokens"]}),
        "index_shards_with_rows": totals["shards_with_rows"],
        "index_oldest_embedded_at": iso(totals["oldest_embedded_at"]),
        "preview": dg.MetadataValue.table(
            records=[dg.TableRecord({k: _cell(v) for k, v in row.items()}) for row in rows],
            schema=dg.TableSchema(columns=[dg.TableColumn(name, _kind(rows[0][name])) for name in shown]),
        ),
    }


def _kind(value: Any) -> str:
    return "int" if isinstance(value, int) and not isinstance(value, bool) else "string"


def _cell(value: Any) -> str | int | float | bool | None:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
