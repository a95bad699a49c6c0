"""Running the pipeline in tests the way Dagster runs it, and reading back what it recorded."""

import dataclasses
import json
import random
from collections.abc import Iterable
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any

import dagster as dg

from embedding_assets.assembly import REFRESH_JOB, build_definitions, build_resources
from embedding_assets.assets import RAW_DOCUMENTS, SOURCE_DOCUMENTS
from embedding_assets.core.chunking import chunk_document
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.hashing import content_hash, normalize_text
from embedding_assets.core.index import Index
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_keys, shard_of
from embedding_assets.core.sources import Document, SourceFolder
from embedding_assets.core.store import VectorStore

SPARE_TOPICS = ("for", "try", "with", "class", "function", "lambda", "nonlocal", "yield", "assignment", "booleans")


def tick_sensor(
    defs: dg.Definitions, name: str, settings: Settings, instance: dg.DagsterInstance, cursor: str | None = None
) -> dg.SensorResult:
    """Evaluate sensor ``name`` once, as the daemon would. Its context is closed on return: an open one keeps
    an instance entered, and Dagster's defs-state context variable then outlives the test that set it."""
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=build_resources(settings)
    ) as context:
        return defs.resolve_sensor_def(name)(context)


def random_edit(source: Path, rng: random.Random, spare: list[str]) -> set[str]:
    """One random change to the source folder; returns the document ids it touched."""
    files = sorted(p.name for p in source.glob("*.txt"))
    kind = rng.choice(["edit", "shrink", "delete", "rename", "add", "record"]) if len(files) > 4 else "add"
    name = rng.choice(files) if files else ""
    path = source / name
    if kind == "edit":
        lines = path.read_text().split("\n")
        lines.insert(rng.randrange(len(lines)), "An inserted sentence about generators and iterators.")
        path.write_text("\n".join(lines))
    elif kind == "shrink":
        path.write_text(path.read_text()[: max(40, len(path.read_text()) // 4)])
    elif kind == "delete":
        path.unlink()
    elif kind == "rename":
        path.rename(source / f"renamed-{name}")
        return {name, f"renamed-{name}"}
    elif kind == "add":
        topic = spare.pop() if spare else rng.choice(sorted(topics))
        name = f"{topic}.txt" if not (source / f"{topic}.txt").exists() else f"copy-{rng.randrange(10**6)}-{topic}.txt"
        (source / name).write_text(topics[topic])
    else:
        records = source / "records.jsonl"
        lines = records.read_text().splitlines()
        i = rng.randrange(len(lines))
        record = json.loads(lines[i])
        record["text"] += " Edited record."
        lines[i] = json.dumps(record)
        records.write_text("\n".join(lines))
        return {record["id"]}
    return {name}


def materialize(
    settings: Settings, instance: dg.DagsterInstance, *, partition: str | None = None, raise_on_error: bool = True
) -> dg.ExecuteInProcessResult:
    """One run of every asset and check: all shards as a single ranged run (retrieval_eval included),
    or the partitioned assets of one shard."""
    defs = build_definitions(settings)
    if partition is not None:
        job = defs.resolve_job_def(REFRESH_JOB)
        return job.execute_in_process(instance=instance, partition_key=partition, raise_on_error=raise_on_error)
    keys = shard_keys(settings.shards)
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        raise_on_error=raise_on_error,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )


def asset_key(settings: Settings, name: str, model: int = 0) -> dg.AssetKey:
    """The key of asset ``name`` as the ``model``-th active model of ``settings`` reads or writes it: the
    shared raw documents, the chunks of its chunking profile, or its own embeddings, vector_table,
    retrieval_eval and vector_index (under its slug)."""
    if name in (SOURCE_DOCUMENTS, RAW_DOCUMENTS):
        return dg.AssetKey(name)
    active = Index(settings).models[model]
    return dg.AssetKey([active.profile if name == "chunks" else active.slug, name])


def metadata(instance: dg.DagsterInstance, asset: dg.AssetKey | str, shard: str | None) -> dict[str, Any]:
    """The latest materialization metadata of one partition (or of an unpartitioned asset), as plain values;
    ``asset`` is a key or its user string (``local_all_minilm_l6_v2/vector_table``)."""
    key = asset if isinstance(asset, dg.AssetKey) else dg.AssetKey.from_user_string(asset)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[shard] if shard else None), limit=1
    ).records
    assert records, f"{key.to_user_string()}[{shard}] was never materialized"
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def check_evaluations(result: dg.ExecuteInProcessResult) -> list[tuple[str, str, bool]]:
    """(check name, partition, passed) for every check evaluated in the run."""
    return sorted(
        (e.event_specific_data.check_name, e.event_specific_data.partition, e.event_specific_data.passed)
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``EMBEDDING_ASSETS_*`` variables that ``Settings.from_env`` reads back as ``settings``; settings
    that are None are left out (an empty variable reads as unset too), and so is the one-model shorthand
    when the settings list several models (the two may not both be set)."""
    return {
        f"EMBEDDING_ASSETS_{field.name.upper()}": str(value)
        for field in dataclasses.fields(Settings)
        if (value := getattr(settings, field.name)) is not None and not (field.name == "model" and settings.models)
    }


def table_rows(
    location: Settings | str, model_version: str, columns: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """chunk_id → stored row of the model's table, read from ``location`` (settings or a LanceDB URI).

    Args:
        location: the settings whose ``lancedb_uri`` holds the table, or the URI itself.
        model_version: the model whose table is read.
        columns: the columns to read (chunk_id is always read); every column, the vector included, if None.

    Returns:
        The rows keyed by chunk_id, {} when the model has no table. Fails on duplicate chunk ids.
    """
    uri = location if isinstance(location, str) else location.lancedb_uri
    table = VectorStore(uri).table(model_version)
    if table is None:
        return {}
    query = table.search() if columns is None else table.search().select(list(dict.fromkeys(["chunk_id", *columns])))
    rows = query.to_arrow().to_pylist()
    by_id = {r["chunk_id"]: r for r in rows}
    assert len(by_id) == len(rows), "duplicate chunk ids in the table"
    return by_id


def indexed(settings: Settings, model_version: str) -> dict[str, tuple[str, str]]:
    """chunk_id → (doc_id, chunk_hash) of the stored rows ({} without a table); fails on duplicate chunk ids."""
    rows = table_rows(settings, model_version, ["doc_id", "chunk_hash"])
    return {chunk_id: (r["doc_id"], r["chunk_hash"]) for chunk_id, r in rows.items()}


def expected_index(settings: Settings, embedder: Embedder) -> dict[str, tuple[str, str]]:
    """The oracle: chunk_id → (doc_id, chunk_hash) computed straight from the source folder."""
    folder = SourceFolder(settings.source_dir)
    documents = []
    for shard in shard_keys(settings.shards):
        for doc in folder.read_shard(shard, settings.shards):
            if isinstance(doc, Document):
                assert shard_of(doc.doc_id, settings.shards) == shard
                documents.append(doc)
    return expected_chunks_of(documents, settings, embedder)


def expected_chunks_of(
    documents: Iterable[Document], settings: Settings, embedder: Embedder
) -> dict[str, tuple[str, str]]:
    """chunk_id → (doc_id, chunk_hash) of ``documents`` as the pipeline must index them."""
    return {
        chunk.chunk_id: (chunk.doc_id, chunk.chunk_hash)
        for doc in documents
        for chunk in chunk_document(doc.doc_id, doc.text, settings.chunking, embedder.count_tokens)
    }


def run_checks(
    settings: Settings, instance: dg.DagsterInstance, partition: str, names: list[str]
) -> dg.ExecuteInProcessResult:
    """Only the named checks of the first active model's vector_table, for one shard."""
    keys = [dg.AssetCheckKey(asset_key(settings, "vector_table"), name) for name in names]
    checks_job = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks(*keys))
    defs = dg.Definitions.merge(build_definitions(settings), dg.Definitions(jobs=[checks_job]))
    job = defs.resolve_job_def("checks_only")
    return job.execute_in_process(instance=instance, tags={"dagster/partition": partition}, raise_on_error=False)


def documents(texts: dict[str, str]) -> list[Document]:
    """The oracle's documents: doc_id → text, normalised as every source normalises it."""
    return [Document(k, normalize_text(t), content_hash(normalize_text(t)), k) for k, t in texts.items() if t.strip()]


def table_texts(connection: Any) -> dict[str, str]:
    """id → body of the docs table (the ``docs_table`` fixture's): the PostgreSQL oracle's source."""
    with connection.cursor() as cur:
        cur.execute("SELECT id::text, body FROM docs")
        return dict(cur.fetchall())
