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


def test_a_run_leaves_the_heap_before_it_out_of_its_collections_and_the_next_frees_its_garbage(
    settings: Settings,
) -> None:
    frozen: list[int] = []
    alive: list[bool] = []
    cycle = [_Cycle()]
    earlier = weakref.ref(cycle[0])

    @dg.op
    def probe(pipeline: PipelineResource) -> None:
        frozen.append(gc.get_freeze_count())
        alive.append(earlier() is not None)

    @dg.job(resource_defs={"pipeline": build_resources(settings)["pipeline"]})
    def job() -> None:
        probe()

    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance).success
        cycle.clear()  # garbage now, frozen with what the process held before the run
        gc.collect()
        assert earlier() is not None  # no collection reaches it
        assert job.execute_in_process(instance=instance).success
    assert all(n > 10_000 for n in frozen)  # the process's objects were frozen during each run
    assert alive == [True, False]  # the second run freed it instead of freezing it again for good
