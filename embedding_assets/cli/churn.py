"""A model's churn from the Dagster instance: the tokens its ``embeddings`` asset embedded in a recent
window, read from that window's materialization events (their ``tokens_embedded``), so the cost is the
window's events, never the vector table.

The asset key is a parameter: each model will have its own. Until then one key is shared by the models
configured over time, and only events whose ``model_version`` is the model's are counted.
"""

import time
from collections.abc import Iterator

import dagster as dg

from embedding_assets.core.cost import DAY_SECONDS, Churn, measure_churn

PAGE = 1000  # events read per query


def churn(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    model_version: str,
    *,
    window_days: float,
    now: float | None = None,
) -> Churn:
    """Tokens ``model_version`` embedded to keep its table fresh over the last ``window_days`` before ``now``
    (default: now), its first embedding of each shard left out."""
    now = time.time() if now is None else now
    first = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset_key), limit=1, ascending=True)
    history_start = first.records[0].timestamp if first.records else None
    window = dg.AssetRecordsFilter(
        asset_key=asset_key, after_timestamp=now - window_days * DAY_SECONDS, before_timestamp=now
    )
    tokens = [
        _count(record, "tokens_embedded")
        for record in _all(instance, window)
        if _value(record, "model_version") == model_version and not _first_embedding(instance, record)
    ]
    return measure_churn(tokens, history_start=history_start, now=now, window_days=window_days)


def _all(instance: dg.DagsterInstance, records_filter: dg.AssetRecordsFilter) -> Iterator[dg.EventLogRecord]:
    cursor = None
    while True:
        page = instance.fetch_materializations(records_filter, limit=PAGE, cursor=cursor)
        yield from page.records
        if not page.has_more:
            return
        cursor = page.cursor


def _value(record: dg.EventLogRecord, name: str) -> object:
    materialization = record.asset_materialization
    entry = materialization.metadata.get(name) if materialization else None
    return entry.value if entry is not None else None


def _count(record: dg.EventLogRecord, name: str) -> int:
    """A count the event records (0 when it records none)."""
    value = _value(record, name)
    return value if isinstance(value, int) else 0


def _first_embedding(instance: dg.DagsterInstance, record: dg.EventLogRecord) -> bool:
    """Whether ``record`` embedded its shard for the first time with its model: it reused no stored
    vector, and the shard's previous materialization (if any) was another model's. Only events that
    reused nothing cost a query, and a refresh nearly always reuses the rest of its shard."""
    if _value(record, "chunks_reused") != 0 or record.asset_key is None or record.partition_key is None:
        return False
    earlier = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=record.asset_key, asset_partitions=[record.partition_key], before_storage_id=record.storage_id
        ),
        limit=1,
    ).records
    return not earlier or _value(earlier[0], "model_version") != _value(record, "model_version")
