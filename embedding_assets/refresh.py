"""``embedding-assets refresh``: scan the source, then materialize only the stale shards, now.

For cron users and CI: no daemon needed. Stale means the table does not hold exactly the scanned
documents (or holds expired vectors); each range of consecutive stale shards is one in-process run
of ``refresh_job`` on the instance in ``DAGSTER_HOME``, so the UI shows these runs too.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from embedding_assets.assembly import REFRESH_JOB, build_definitions
from embedding_assets.assets import SOURCE_SYNCED_TAG, chain_keys
from embedding_assets.core import progress as work_progress
from embedding_assets.core.change_index import SyncReport
from embedding_assets.core.index import Index
from embedding_assets.shard_runs import documents_per_shard, range_tags, run_ranges, source_observation

REPORTED = (
    "chunks_embedded",
    "chunks_reused",
    "tokens_embedded",
    "chunks_inserted",
    "chunks_updated",
    "chunks_deleted",
    "source_to_table_seconds",
)


@dataclass
class RefreshReport:
    sync: SyncReport
    stale_by_model: dict[str, list[str]]  # each active model's shards refreshed, live model first
    runs: list[str] = field(default_factory=list)
    per_model: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # slug → shard → figures

    @property
    def stale(self) -> list[str]:
        """The shards refreshed for any model."""
        return sorted({shard for shards in self.stale_by_model.values() for shard in shards})

    @property
    def per_shard(self) -> dict[str, dict[str, Any]]:
        """The first (live) model's figures per shard."""
        return next(iter(self.per_model.values()), {})

    def total(self, name: str) -> int:
        """A figure summed over every model and shard."""
        return sum(int(f.get(name, 0)) for shards in self.per_model.values() for f in shards.values())


def refresh(
    index: Index,
    instance: dg.DagsterInstance,
    *,
    shards: list[str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
    log_level: str | None = None,
) -> RefreshReport:
    """Scan, then materialize each active model's stale shards (or exactly ``shards``, to repair them),
    live model first, one run per model and range; raises if a run fails. The runs stage what this scan
    recorded: the source is listed once per refresh, not once per run. ``log_level`` (``WARNING``)
    quiets the runs' console log, whose events the instance keeps anyway. The plan is reported to
    ``core.progress`` as step ``refresh_plan`` (figure ``stale_shards``: shards times models to run)."""
    sync = index.sync()
    live = index.live_model()
    models = [live, *(m for m in index.models if m != live)]
    report = RefreshReport(
        sync, {m.slug: shards if shards is not None else index.stale_shards(m.model_version) for m in models}
    )
    planned = sum(len(s) for s in report.stale_by_model.values())
    progress(
        f"{index.source.name}: {sync.keys_read} key(s) read, {sync.keys_deleted} deleted in {sync.seconds:.2f} s; "
        + "; ".join(f"{len(s)} of {index.shard_count} shards stale for {m}" for m, s in report.stale_by_model.items())
    )
    work_progress.advance("refresh_plan", stale_shards=planned)
    job = build_definitions(index.settings).resolve_job_def(REFRESH_JOB)
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}} if log_level else None
    per_shard = documents_per_shard(index.changes.summaries())  # large shards are not run through clean
    for model in models:
        figures_of = report.per_model.setdefault(model.slug, {})
        for first, last in run_ranges(report.stale_by_model[model.slug], index.shard_count, per_shard):
            progress(f"refreshing {first}...{last} ({model.slug})")
            result = job.execute_in_process(
                instance=instance,
                tags=range_tags(first, last) | {SOURCE_SYNCED_TAG: str(sync.generation)},
                raise_on_error=True,
                run_config=run_config,
                asset_selection=chain_keys(model),
            )
            report.runs.append(result.run_id)
            for event in result.get_asset_materialization_events():
                materialization = event.materialization
                if materialization.partition is not None:
                    figures = figures_of.setdefault(materialization.partition, {})
                    figures.update({k: v.value for k, v in materialization.metadata.items() if k in REPORTED})
    summaries = index.changes.summaries()
    for shard in report.stale:  # the UI's source_documents now shows what these runs indexed
        instance.report_runless_asset_event(source_observation(summaries[shard]))
    return report
