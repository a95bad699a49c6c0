"""The live model's churn, read from a real Dagster instance's materializations of ``embeddings`` after real
refreshes. The toy embedder stands in for the model: what is tested is the event reading and the sums."""

import dataclasses
import time
from pathlib import Path

import dagster as dg
import pytest

from embedding_assets.cli.churn import churn
from embedding_assets.cli.models import _upkeep
from embedding_assets.core.cost import DAY_SECONDS
from embedding_assets.core.index import Index
from embedding_assets.core.settings import Settings
from embedding_assets.refresh import refresh

EMBEDDINGS = dg.AssetKey(["toy_hashing", "embeddings"])
S002 = ("assert", "return")  # the test topics in shard s002 of 4


def test_refreshes_count_and_first_embeddings_do_not(settings: Settings) -> None:
    toy = dataclasses.replace(settings, model="toy:hashing")
    source, model = Path(toy.source_dir), Index(toy).models[0].model_version
    with dg.instance_for_test() as instance:
        backfill = refresh(Index(toy), instance)
        assert backfill.total("tokens_embedded") > 0
        fresh = churn(instance, EMBEDDINGS, model, window_days=7)
        assert (fresh.refreshes, fresh.tokens, fresh.tokens_per_day) == (0, 0, 0.0) and 0 < fresh.days < 0.01

        (source / "break.txt").write_text((source / "break.txt").read_text() + "\n\nA new paragraph on loops.")
        for topic in S002:  # every chunk of s002 changes: it reuses nothing, yet it is no first embedding
            (source / f"{topic}.txt").write_text(f"The {topic} statement, rewritten from scratch.")
        changes = refresh(Index(toy), instance)  # one ranged run, an event per shard
        assert changes.stale == ["s002", "s003"] and len(changes.runs) == 1
        assert changes.per_shard["s002"]["chunks_reused"] == 0  # what costs a look at the shard's earlier event
        assert changes.per_shard["s003"]["chunks_reused"] > 0  # the edit reuses the other documents' chunks

        week = churn(instance, EMBEDDINGS, model, window_days=7)
        assert (week.refreshes, week.tokens) == (2, changes.total("tokens_embedded"))
        assert 0 < week.tokens < backfill.total("tokens_embedded")

        # A second model's first embeddings are neither its churn nor the first model's.
        other = dataclasses.replace(toy, dimensions=16)
        assert refresh(Index(other), instance, shards=["s002"]).per_shard["s002"]["chunks_reused"] == 0
        other_key = dg.AssetKey([Index(other).models[0].slug, "embeddings"])
        assert churn(instance, other_key, Index(other).models[0].model_version, window_days=7).refreshes == 0
        again = churn(instance, EMBEDDINGS, model, window_days=7)
        assert (again.refreshes, again.tokens) == (week.refreshes, week.tokens)

        # Eight days on, the week holds none of it; the history is older than the window.
        later = churn(instance, EMBEDDINGS, model, window_days=7, now=time.time() + 8 * DAY_SECONDS)
        assert (later.refreshes, later.tokens, later.days, later.tokens_per_day) == (0, 0, 7.0, 0.0)


def test_an_asset_never_materialized_has_no_churn_to_measure() -> None:
    with dg.instance_for_test() as instance:
        none = churn(instance, EMBEDDINGS, "toy:hashing@1/32d", window_days=7)
    assert (none.days, none.refreshes, none.tokens_per_day) == (0.0, 0, None)


def test_without_an_instance_the_upkeep_is_unknown(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    upkeep = _upkeep(Index(dataclasses.replace(settings, model="toy:hashing")).models[0], 7.0, 0.02)
    expected = (None, None, "toy_hashing/embeddings")
    assert (upkeep["tokens_per_day"], upkeep["cost_usd_per_day"], upkeep["asset"]) == expected
    assert upkeep["note"] == "unknown: DAGSTER_HOME is not set, so there is no Dagster instance to measure the churn in"
