"""``embedding-assets refresh``: scan the source, then materialize only the stale shards, now.

For cron users and CI: no daemon needed. Stale means the table does not hold exactly the scanned
documents (or holds expired vectors); each range of consecutive stale shards is one in-process run
of ``refresh_job`` on the instance in ``DAGSTER_HOME``, so the UI shows these runs too.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from embedding_assets.core.reconcile import stale_shards
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import RUN_THROUGH_CLEAN_SHARDS, shard_ranges
from embedding_assets.core.store import VectorStore, expire_before
from embedding_assets.definitions import REFRESH_JOB, build_definitions
from embedding_assets.sensors import range_tags, source_observation

REPORTED = (
    "chunks_embedded",
    "chunks_reused",
    "tokens_embedded",
    "chunks_inserted",
    "chunks_updated",
    "chunks_deleted",
)


@dataclass
class RefreshReport:
    files: int
    files_read: int
    stale: list[str]
    runs: list[str] = field(default_factory=list)
    per_shard: dict[str, dict[str, Any]] = field(default_factory=dict)

    def total(self, name: str) -> int:
        return sum(int(figures.get(name, 0)) for figures in self.per_shard.values())


def refresh(
    settings: Settings,
    instance: dg.DagsterInstance,
    *,
    shards: list[str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> RefreshReport:
    """Scan, then materialize the stale shards (or exactly ``shards``, to repair them); raises if a run fails."""
    scan = settings.scan()
    stale = (
        shards
        if shards is not None
        else stale_shards(
            scan, VectorStore(settings.lancedb_uri), settings.embedder().model_version, expire_before(settings.ttl_days)
        )
    )
    report = RefreshReport(scan.files, scan.files_read, stale)
    progress(
        f"scanned {scan.files} files ({scan.files_read} read) in {scan.seconds:.2f} s; "
        f"{len(stale)} of {settings.shards} shards stale"
    )
    job = build_definitions(settings).resolve_job_def(REFRESH_JOB)
    for first, last in shard_ranges(stale, settings.shards, max_gap=RUN_THROUGH_CLEAN_SHARDS):
        progress(f"refreshing {first}...{last}")
        result = job.execute_in_process(instance=instance, tags=range_tags(first, last), raise_on_error=True)
        report.runs.append(result.run_id)
        for event in result.all_events:
            if event.event_type_value == "ASSET_MATERIALIZATION":
                materialization = event.event_specific_data.materialization
                figures = report.per_shard.setdefault(materialization.partition, {})
                figures.update({k: v.value for k, v in materialization.metadata.items() if k in REPORTED})
    for shard in stale:  # the UI's source_documents now shows what these runs indexed
        instance.report_runless_asset_event(source_observation(shard, scan.shards[shard]))
    return report
