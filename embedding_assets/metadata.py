"""Materialization metadata a user reads first, as Dagster metadata values (figures in ``core.index_totals``).

A ranged run records these on its last shard only (the newest event, which the UI's overview shows),
so each total is one point per run in the plots, and a run's events do not repeat them per shard.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from embedding_assets.core.index_totals import column_types, index_totals, iso, preview, run_totals, table_uri
from embedding_assets.core.shards import shard_keys
from embedding_assets.core.store import VectorStore, table_name

LOCAL_PREFIX = "local:"
PROVIDER_FIGURES = ("cost_usd", "model_calls", "retries", "rate_limited", "paced_seconds")


def provider_figures(model_version: str, figures: Mapping[str, Any]) -> dict[str, Any]:
    """A provider's cost, calls, retries and 429s; nothing for a local model, for which they are always 0."""
    return {} if model_version.startswith(LOCAL_PREFIX) else {k: figures[k] for k in PROVIDER_FIGURES if k in figures}


UNPOOLED_PROFILES = ("local",)  # whose dagster.yaml limits no pool (see deploy/local/dagster.yaml)


def embedding_pool(profile: str, model_version: str) -> str | None:
    """The Dagster concurrency pool one provider's embedding steps share across runs
    (``embedding_api_openai``). None on a profile that limits no pool: a pool without a limit changes
    nothing there, and the UI flags it with an unexplained warning."""
    return None if profile in UNPOOLED_PROFILES else "embedding_api_" + model_version.split(":", 1)[0]


def record_run_totals(context: dg.AssetExecutionContext, per_shard: Sequence[Mapping[str, Any]]) -> None:
    """The run's sums of its shards' figures (``run_chunks_embedded``, ...), on the run's last shard."""
    context.add_asset_metadata(run_totals(per_shard), partition_key=context.partition_keys[-1])


def record_table_summary(context: dg.AssetExecutionContext, store: VectorStore, model_version: str) -> None:
    """The whole table's totals, columns, location and a preview, on the run's last shard."""
    context.add_asset_metadata(table_summary(store, model_version), partition_key=context.partition_keys[-1])


def table_summary(store: VectorStore, model_version: str) -> dict[str, Any]:
    """Index totals from the shard states (O(shards)), the table's schema and URI, and a few rows."""
    info = store.info(model_version)
    if info is None:
        return {}
    totals = index_totals(store.shard_states(model_version, shard_keys(info.shard_count)))
    columns = [dg.TableColumn(name, kind) for name, kind in column_types(store, model_version)]
    rows = preview(store, model_version)
    shown = list(rows[0]) if rows else []
    return {
        "dagster/row_count": totals["rows"],  # the whole table's (each shard's is ``rows``)
        "index_rows": totals["rows"],
        "index_documents": totals["documents"],
        "index_shards_with_rows": totals["shards_with_rows"],
        "index_oldest_embedded_at": iso(totals["oldest_embedded_at"]),
        "dagster/table_name": table_name(model_version),
        "dagster/uri": table_uri(store, model_version),
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "preview": dg.MetadataValue.table(
            records=[dg.TableRecord({k: _cell(v) for k, v in row.items()}) for row in rows],
            schema=dg.TableSchema(columns=[dg.TableColumn(name, _kind(rows[0][name])) for name in shown]),
        ),
    }


def _kind(value: Any) -> str:
    return "int" if isinstance(value, int) and not isinstance(value, bool) else "string"


def _cell(value: Any) -> str | int | float | bool | None:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
