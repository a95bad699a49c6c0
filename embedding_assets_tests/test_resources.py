"""The pipeline resource carries every setting, so the UI shows the whole configuration, and rebuilds it
exactly (its credentials: test_defs.py)."""

import dataclasses

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
