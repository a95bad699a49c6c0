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
from embedding_assets.core import progress as work_progress
from embedding_assets.core.change_index import SyncReport
from embedding_assets.core.index import Index
from embedding_assets.shard_runs import range_tags, run_ranges, source_observation

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
    stale: list[str]
    runs: list[str] = field(default_factory=list)
    per_shard: dict[str, dict[str, Any]] = field(default_factory=dict)

    def total(self, name: str) -> int:
        return sum(int(figures.get(name, 0)) for figures in self.per_shard.values())


def refresh(
    index: Index,
    instance: dg.DagsterInstance,
    *,
    shards: list[str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
    log_level: str | None = None,
) -> RefreshReport:
    """Scan, then materialize the stale shards (or exactly ``shards``, to repair them); raises if a run fails.
    ``log_level`` (``WARNING``) quiets the runs' console log, whose events the instance keeps anyway.
    The plan is reported to ``core.progress`` as step ``refresh_plan`` (figure ``stale_shards``)."""
    sync = index.sync()
    stale = shards if shards is not None else index.stale_shards()
    report = RefreshReport(sync, stale)
    progress(
        f"{index.source.name}: {sync.keys_read} key(s) read, {sync.keys_deleted} deleted in {sync.seconds:.2f} s; "
        f"{len(stale)} of {index.shard_count} shards stale"
    )
    work_progress.advance("refresh_plan", stale_shards=len(stale))
    job = build_definitions(index.settings).resolve_job_def(REFRESH_JOB)
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}} if log_level else None
    for first, last in run_ranges(stale, index.shard_count):
        progress(f"refreshing {first}...{last}")
        result = job.execute_in_process(
            instance=instance, tags=range_tags(first, last), raise_on_error=True, run_config=run_config
        )
        report.runs.append(result.run_id)
        for event in result.get_asset_materialization_events():
            materialization = event.materialization
            if materialization.partition is not None:
                figures = report.per_shard.setdefault(materialization.partition, {})
                figures.update({k: v.value for k, v in materialization.metadata.items() if k in REPORTED})
    summaries = index.changes.summaries()
    for shard in stale:  # the UI's source_documents now shows what these runs indexed
        instance.report_runless_asset_event(source_observation(summaries[shard]))
    return report
