"""Asset checks of the vector table, and the retrieval quality gate.

One multi-asset check evaluates the table's three, so one read of each shard's stored rows (only the
columns the selected checks compare) serves them all. Integrity and reconciliation give one result
per shard, reported on its own partition through an ``AssetCheckEvaluation`` event, which also works
for ranged single-run backfills, where a returned ``AssetCheckResult`` would carry no partition. Each
names the shard's latest materialization as its target, as Dagster's own results do, so the UI counts
the shard as checked against its current rows. The drift sentinel is a property of the model, not of
a shard: one result per run, for the whole table.
"""

import random
from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa
from dagster._core.definitions.asset_checks.asset_check_evaluation import (  # not exported by dagster
    AssetCheckEvaluationTargetMaterializationData,
)

from embedding_assets.core import quality
from embedding_assets.core.reconcile import CHUNK_COLUMNS, STORED_COLUMNS, diff_shard, expected_chunks
from embedding_assets.core.table_checks import (
    DRIFT_COLUMNS,
    EMBEDDING_DRIFT,
    INTEGRITY_COLUMNS,
    VECTOR_TABLE_INTEGRITY,
    CheckOutcome,
    check_shard,
    drift_outcome,
    sample_quota,
)
from embedding_assets.resources import PipelineResource

INDEX_MATCHES_SOURCE = "index_matches_source"
DESCRIPTIONS = {
    VECTOR_TABLE_INTEGRITY: "Dimensions, valid vectors, unique chunk ids, one model version, and one row per "
    "staged chunk.",
    INDEX_MATCHES_SOURCE: "Reconciliation: the shard's rows are exactly the chunks its source documents produce "
    "now (ids, text hashes, document hashes, model version), listing every difference, and the fingerprint "
    "recorded beside the table (what stale detection reads instead of the rows) is the rows' own. Documents "
    "are read from the source only where the staged copy's hash differs from the change index's, and are "
    "not re-cut where the staged chunks carry their hash (`embedding-assets verify` re-reads and re-cuts all).",
    EMBEDDING_DRIFT: "Drift sentinel, one result per run for the whole table: re-embeds a few random stored "
    "chunks of the run's shards with the table's own model and warns when a stored vector no longer matches "
    "(a silent provider-side change, broken preprocessing). The sample is per run, so neither its cost nor "
    "its events grow with the number of shards; `shards_sampled` names where it came from.",
}
COLUMNS = {VECTOR_TABLE_INTEGRITY: INTEGRITY_COLUMNS, INDEX_MATCHES_SOURCE: STORED_COLUMNS}


def build_table_checks(
    vector_table: dg.AssetsDefinition, partitions: dg.PartitionsDefinition, slug: str
) -> list[dg.AssetChecksDefinition]:
    """The checks of the active model ``slug``'s ``vector_table``."""
    specs = [
        dg.AssetCheckSpec(
            name,
            asset=vector_table.key,
            partitions_def=None if name == EMBEDDING_DRIFT else partitions,
            description=description,
        )
        for name, description in DESCRIPTIONS.items()
    ]

    def report(
        context: dg.AssetCheckExecutionContext,
        shard: str | None,
        target: Target | None,
        outcome: CheckOutcome,
        severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    ) -> None:
        # log_event is typed for materializations and observations only; check evaluations work (and
        # are the one way to give each shard of a ranged run its own result).
        context.op_execution_context.log_event(
            dg.AssetCheckEvaluation(  # type: ignore[arg-type]
                asset_key=vector_table.key,
                check_name=outcome.name,
                passed=outcome.passed,
                severity=severity,
                description=outcome.description,
                metadata=outcome.metadata,
                partition=shard,
                target_materialization_data=target,
            )
        )

    @dg.multi_asset_check(specs=specs, can_subset=True, name=f"{slug}_vector_table_checks")
    def vector_table_checks(
        context: dg.AssetCheckExecutionContext, pipeline: PipelineResource
    ) -> Iterator[dg.Output[None]]:
        """The selected checks of every shard of the run, from one read of each shard's stored rows."""
        index = pipeline.get()
        active = index.model(slug)
        model, store, keys = active.embedder, index.store, checked_shards(context)
        selected = {key.name for key in context.selected_asset_check_keys}
        info = store.info(model.model_version)
        seed = ":".join([*keys[:1], *keys[-1:], str(date.today())])  # the run's first and last shard, today
        rng = random.Random(seed)
        quota = sample_quota(keys, index.settings.drift_sample, rng) if EMBEDDING_DRIFT in selected and keys else {}
        samples: list[pa.Table] = []
        if EMBEDDING_DRIFT in selected and not keys:  # the drift check run alone: a sample of the whole table
            whole = store.sample_rows(model.model_version, index.settings.drift_sample, DRIFT_COLUMNS, seed)
            samples = [whole] if whole is not None else []
        targets = latest_materializations(context.instance, vector_table.key, keys)
        recorded = store.recorded_states(model.model_version) if INDEX_MATCHES_SOURCE in selected else {}
        for shard in keys:
            work = index.shard_work(shard, active)
            columns = {c for name in selected for c in COLUMNS.get(name, ())}
            if quota.get(shard):
                columns |= set(DRIFT_COLUMNS)
            rows = store.shard_rows(model.model_version, shard, sorted(columns))
            if VECTOR_TABLE_INTEGRITY in selected:
                staged = index.staging.read(work.chunks_path, ["chunk_id"]).column("chunk_id").to_pylist()
                outcome = check_shard(
                    shard,
                    rows,
                    info,
                    model_version=model.model_version,
                    dimensions=model.dimensions,
                    expected_chunk_ids=staged,
                )
                report(context, shard, targets[shard], outcome)
            if INDEX_MATCHES_SOURCE in selected:
                # Documents whose hash the change index holds come from the staged copy with that hash, the
                # rest from the source: O(change) source reads (`verify` re-reads everything).
                cached = work.staged_chunks(CHUNK_COLUMNS)
                documents = index.listing(shard, work.staged_keys())
                expected = expected_chunks(documents, index.chunking, model, cached, work.staged_document)
                diff = diff_shard(shard, expected, rows, model.model_version, recorded.get(shard))
                outcome = CheckOutcome(INDEX_MATCHES_SOURCE, diff.matches, diff.describe(), diff.figures())
                report(context, shard, targets[shard], outcome)
            if quota.get(shard) and rows is not None:
                picked = rng.sample(range(rows.num_rows), min(quota[shard], rows.num_rows))
                samples.append(rows.take(pa.array(picked, type=pa.int64())))  # typed: it may be empty
        if EMBEDDING_DRIFT in selected:
            texts = [text for picked in samples for text in picked.column("text").to_pylist()]
            vectors = [v for picked in samples for v in picked.column("vector").to_pylist()]
            stored = np.array(vectors, dtype=np.float32)
            again = np.asarray(model.embed(texts), dtype=np.float32) if texts else stored  # none: the outcome says so
            outcome = drift_outcome(stored, again, index.settings.drift_threshold)
            outcome.metadata["shards_sampled"] = ", ".join(
                sorted({s for p in samples for s in p.column("shard").to_pylist()})
            )
            newest = max((t for t in targets.values() if t), key=lambda t: t.storage_id, default=None)
            report(context, None, newest, outcome, dg.AssetCheckSeverity.WARN)  # the table's newest rows
        # The results went out as events above; the check outputs themselves carry nothing (yielding
        # them keeps Dagster from logging that the step "did not yield expected outputs").
        for name in context.op_execution_context.selected_output_names:
            yield dg.Output(None, output_name=name)

    return [vector_table_checks]


def checked_shards(context: dg.AssetCheckExecutionContext) -> list[str]:
    """The shards of the run; none when it runs only the table-level drift check (an unpartitioned run)."""
    try:
        return list(context.partition_keys)
    except dg.DagsterInvariantViolationError:
        return []


Target = AssetCheckEvaluationTargetMaterializationData  # the materialization a check result is of


def latest_materializations(
    instance: dg.DagsterInstance, asset: dg.AssetKey, partitions: list[str]
) -> dict[str, Target | None]:
    """Each partition's latest materialization, as the target a check result names: one indexed read
    when the run has just materialized them all, one more per partition that read did not find."""
    found = _newest(instance, asset, partitions, limit=len(partitions)) if partitions else {}
    for partition in partitions:
        if partition not in found:
            found |= _newest(instance, asset, [partition], limit=1)
    return {p: found.get(p) for p in partitions}


def _newest(instance: dg.DagsterInstance, asset: dg.AssetKey, partitions: list[str], limit: int) -> dict[str, Target]:
    """The newest of the latest ``limit`` materializations of ``partitions``, per partition."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=partitions), limit=limit
    ).records
    newest: dict[str, Target] = {}
    for record in records:  # newest first
        if record.partition_key is not None:
            newest.setdefault(
                record.partition_key,
                Target(storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp),
            )
    return newest


def build_quality_check(retrieval_eval: dg.AssetKey, slug: str) -> dg.AssetChecksDefinition:
    """``retrieval_quality`` on the active model ``slug``'s ``retrieval_eval``: fails its run under the
    floor, warns on a drop."""
    description = (
        f"Retrieval quality gate: fails (and fails the run) when {quality.FLOOR_METRIC} on the golden set is "
        "under EMBEDDING_ASSETS_EVAL_FLOOR, and warns when recall@10 or nDCG@10 fell by more than "
        "EMBEDDING_ASSETS_EVAL_MARGIN since the previous evaluation of the same model. The floor is not "
        "applied when golden queries name no document of the table (a golden set of another corpus)."
    )

    @dg.asset_check(asset=retrieval_eval, name=quality.RETRIEVAL_QUALITY, blocking=True, description=description)
    def retrieval_quality(context: dg.AssetCheckExecutionContext, pipeline: PipelineResource) -> dg.AssetCheckResult:
        index = pipeline.get()
        current, previous = _evaluations(context.instance, retrieval_eval)
        golden = index.golden()
        model = str(current.get("model_version", index.model(slug).model_version))
        indexed = index.store.documents_present(model, {doc for q in golden for doc in q.relevant})
        verdict = quality.judge(
            _metrics(current),
            _metrics(previous) if previous else None,
            floor=index.settings.eval_floor,
            margin=index.settings.eval_margin,
            uncovered=len(quality.uncovered_queries(golden, indexed)),
        )
        return dg.AssetCheckResult(
            passed=verdict.verdict is quality.Verdict.PASSED,
            severity=dg.AssetCheckSeverity.ERROR
            if verdict.verdict is quality.Verdict.FAILED
            else dg.AssetCheckSeverity.WARN,
            description=verdict.description,
            metadata={"model_version": model, **verdict.figures},
        )

    return retrieval_quality


EVALUATIONS_LOOKED_BACK = 20  # for the previous evaluation of the same model


def _evaluations(instance: dg.DagsterInstance, asset: dg.AssetKey) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The latest evaluation's metadata, and the one before it of the same model (None: none)."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset), limit=EVALUATIONS_LOOKED_BACK)
    found: list[dict[str, Any]] = [
        {k: v.value for k, v in r.asset_materialization.metadata.items()}
        for r in records.records
        if r.asset_materialization is not None
    ]
    if not found:
        raise dg.Failure(f"{asset.to_user_string()} was never materialized: nothing to judge", allow_retries=False)
    current = found[0]
    same = (m for m in found[1:] if m.get("model_version") == current.get("model_version"))
    return current, next(same, None)


def _metrics(metadata: dict[str, Any]) -> dict[str, float]:
    names = (quality.FLOOR_METRIC, *quality.WATCHED_METRICS)
    return {m: float(v) for m in names if isinstance(v := metadata.get(quality.metadata_name(m)), int | float)}
