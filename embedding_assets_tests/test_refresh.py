"""``refresh``'s runs on a real Dagster instance. The toy embedder stands in for the model: what is tested
is which source state the runs stage."""

import dataclasses
from pathlib import Path

import dagster as dg

from embedding_assets.assets import SOURCE_SYNCED_TAG
from embedding_assets.core.index import Index
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_of
from embedding_assets.refresh import refresh


def test_a_refreshs_runs_stage_what_its_scan_recorded_without_listing_the_source_again(settings: Settings) -> None:
    toy = dataclasses.replace(settings, model="toy:hashing")
    source = Path(toy.source_dir)
    with dg.instance_for_test() as instance:
        refresh(Index(toy), instance)
        (source / "break.txt").write_text((source / "break.txt").read_text() + "\n\nA new paragraph on loops.")

        shard = shard_of("break.txt", toy.shards)
        late = next(f"late-{i}.txt" for i in range(100) if shard_of(f"late-{i}.txt", toy.shards) == shard)

        def write_during_the_runs(line: str) -> None:
            if line.startswith("refreshing"):  # after the scan, before the run starts
                (source / late).write_text("A document written in the same shard while the refresh was running.")

        report = refresh(Index(toy), instance, progress=write_during_the_runs)
        assert report.stale == [shard]
        run = instance.get_run_by_id(report.runs[0])
        assert run is not None and run.tags[SOURCE_SYNCED_TAG] == str(report.sync.generation)

        # The run staged the scan's state, not a second listing's: the late document waits for the next.
        after = Index(toy)
        after.sync()
        assert after.stale_shards(after.models[0].model_version) == [shard]
        assert refresh(Index(toy), instance).stale == [shard]
        assert refresh(Index(toy), instance).runs == []
