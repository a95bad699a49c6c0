"""The pipeline resource carries every setting, so the UI shows the whole configuration, and rebuilds it
exactly (its credentials: test_defs.py)."""

import dataclasses
import gc
import weakref

import dagster as dg

from embedding_assets.assembly import build_resources
from embedding_assets.core.settings import Settings
from embedding_assets.resources import PipelineResource


def test_the_resource_has_one_field_per_setting_and_the_credentials() -> None:
    fields = set(PipelineResource.model_fields)
    assert fields == {f.name for f in dataclasses.fields(Settings)} | {"openai_api_key", "openai_base_url"}


def test_the_resource_rebuilds_the_same_settings(settings: Settings) -> None:
    configured = dataclasses.replace(settings, ttl_days=2.5, run_budget_usd=1.0, dimensions=None)
    index = build_resources(configured)["pipeline"].get()
    assert index.settings == configured
    assert index.credentials.api_key is None


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_the_first_run_freezes_the_heap_before_it_and_later_runs_neither_collect_nor_freeze_theirs(
    settings: Settings,
) -> None:
    frozen: list[int] = []

    @dg.op
    def probe(pipeline: PipelineResource) -> None:
        frozen.append(gc.get_freeze_count())

    @dg.job(resource_defs={"pipeline": build_resources(settings)["pipeline"]})
    def job() -> None:
        probe()

    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance).success
        cycle = [_Cycle()]  # made after the first run: never frozen, so an ordinary collection frees it
        between = weakref.ref(cycle[0])
        assert job.execute_in_process(instance=instance).success
        cycle.clear()
        gc.collect()
        assert between() is None
    assert frozen[0] > 10_000  # the process's objects were frozen during the run
    assert frozen[1] <= frozen[0]  # and not again (some died since): the second run froze nothing of the first's
