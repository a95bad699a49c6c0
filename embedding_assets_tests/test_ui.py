"""The real `dagster dev` (webserver + daemon, loaded through workspace.yaml) as a user's first screen: the
demo materialized by `embedding-assets materialize` (what `make demo` runs), then one `dagster dev` session
for the module, inspected over GraphQL as its pages read it."""

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from embedding_assets.checks import INDEX_MATCHES_SOURCE
from embedding_assets.core.profiles import instance_config
from embedding_assets.core.quality import RETRIEVAL_QUALITY
from embedding_assets.core.shards import shard_keys
from embedding_assets.core.store import VectorStore
from embedding_assets.core.table_checks import EMBEDDING_DRIFT, VECTOR_TABLE_INTEGRITY
from embedding_assets_tests.dagster_dev import PROJECT_ROOT, DagsterDev, dagster_dev, project_env

pytestmark = pytest.mark.slow

CLI = str(PROJECT_ROOT / ".venv" / "bin" / "embedding-assets")
SHARDS = list(shard_keys(8))  # the demo's
QUIET_MINUTE = 60.0
MODEL, PROFILE = "local_all_minilm_l6_v2", "wordpiece_all_minilm_l6_v2_onnx_int8"  # the demo's one model
CHAIN = ["source_documents", "raw_documents", f"{PROFILE}/chunks", f"{MODEL}/embeddings", f"{MODEL}/vector_table"]
EVAL, INDEX, TABLE, EMBEDDINGS = (
    f"{MODEL}/{name}" for name in ("retrieval_eval", "vector_index", "vector_table", "embeddings")
)
GRAPH = """{ assetNodes {
  assetKey { path } opVersion partitionKeys dependencyKeys { path } dependedByKeys { path }
  repository { location { name } }
  assetChecksOrError { __typename ... on AssetChecks { checks { name } } ... on Error { message } } } }"""
REPO = '{repositoryLocationName: "embedding_assets", repositoryName: "__repository__"}'
CHECKS = """assetChecksOrError { ... on AssetChecks { checks { name description
  executionForLatestMaterialization { status evaluation { description } }
  partitionStatuses { ... on AssetCheckDefaultPartitionStatuses { succeededPartitions failedPartitions
    skippedPartitions } } } } }"""
ENTRY = """label __typename ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
  ... on TextMetadataEntry { text } ... on TableMetadataEntry { table { records } }
  ... on TableSchemaMetadataEntry { schema { columns { name type } } }"""


@dataclass(frozen=True)
class Demo:
    env: dict[str, str]
    dev: DagsterDev
    started: float  # when dagster dev answered
    run_id: str  # the demo's run


def cli(env: dict[str, str], *args: str, code: int = 0) -> str:
    done = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == code, f"{args}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def run_id_of(output: str) -> str:
    """The run a `materialize` names in its summary (or its failure)."""
    found = re.search(r"\brun ([0-9a-f-]{36})\b", output)
    assert found, output[-2000:]
    return found.group(1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("first_screen")
    env = project_env(tmp)
    (tmp / "home" / "dagster.yaml").write_text(instance_config("local").read_text())  # as `make instance` does
    cli(env, "export-demo-corpus")
    run_id = run_id_of(cli(env, "materialize"))  # what `make demo` runs
    with dagster_dev(env, tmp / "dagster-dev.log") as dev:
        yield Demo(env, dev, time.monotonic(), run_id)


def node(demo: Demo, asset: str, fields: str) -> dict[str, Any]:
    path = ", ".join(f'"{part}"' for part in asset.split("/"))
    return demo.dev.graphql(f"{{ assetNodes(assetKeys: [{{path: [{path}]}}]) {{ {fields} }} }}")["assetNodes"][0]


def entries(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["label"]: item for item in items}


def latest_metadata(demo: Demo, asset: str) -> dict[str, dict[str, Any]]:
    found = node(demo, asset, f"assetMaterializations(limit: 1) {{ metadataEntries {{ {ENTRY} }} }}")
    return entries(found["assetMaterializations"][0]["metadataEntries"])


def runs(demo: Demo) -> dict[str, str]:
    found = demo.dev.graphql("{ runsOrError { ... on Runs { results { runId status } } } }")
    return {run["runId"]: run["status"] for run in found["runsOrError"]["results"]}


@pytest.fixture(scope="module")
def nodes(demo: Demo) -> dict[str, dict[str, Any]]:
    return {"/".join(n["assetKey"]["path"]): n for n in demo.dev.graphql(GRAPH)["assetNodes"]}


def keys(entries: list[dict[str, Any]]) -> list[str]:
    return sorted("/".join(e["path"]) for e in entries)


def test_assets_form_the_partitioned_chain(nodes: dict[str, dict[str, Any]]) -> None:
    assert set(nodes) == {*CHAIN, EVAL, INDEX}
    assert keys(nodes[EVAL]["dependencyKeys"]) == keys(nodes[INDEX]["dependencyKeys"])
    assert keys(nodes[INDEX]["dependencyKeys"]) == [TABLE]
    for i, name in enumerate(CHAIN):
        assert keys(nodes[name]["dependencyKeys"]) == CHAIN[max(i - 1, 0) : i], name
        after = CHAIN[i + 1 : i + 2] or [EVAL, INDEX]
        assert keys(nodes[name]["dependedByKeys"]) == after, name
        assert nodes[name]["partitionKeys"] == SHARDS, name
        assert nodes[name]["repository"]["location"]["name"] == "embedding_assets"


def test_vector_table_has_its_checks(nodes: dict[str, dict[str, Any]]) -> None:
    result = nodes[TABLE]["assetChecksOrError"]
    assert result["__typename"] == "AssetChecks", result
    assert {c["name"] for c in result["checks"]} == {VECTOR_TABLE_INTEGRITY, INDEX_MATCHES_SOURCE, EMBEDDING_DRIFT}


def test_embeddings_op_version_names_the_model(nodes: dict[str, dict[str, Any]]) -> None:
    assert "all-MiniLM-L6-v2" in (nodes[EMBEDDINGS]["opVersion"] or "")


def test_every_check_sensor_and_schedule_explains_itself(demo: Demo) -> None:
    data = demo.dev.graphql(
        f"""{{ assetNodes {{ assetKey {{ path }} automationCondition {{ label }} {CHECKS} }}
        sensorsOrError(repositorySelector: {REPO}) {{ ... on Sensors {{ results {{ name description
          sensorState {{ status }} }} }} }}
        schedulesOrError(repositorySelector: {REPO}) {{ ... on Schedules {{ results {{ name description
          scheduleState {{ status }} }} }} }} }}"""
    )
    checks = {c["name"]: c for n in data["assetNodes"] for c in n["assetChecksOrError"]["checks"]}
    assert set(checks) >= {RETRIEVAL_QUALITY, "vector_table_integrity", "index_matches_source", "embedding_drift"}
    assert all(len(c["description"] or "") > 40 for c in checks.values()), checks
    conditions = [n["automationCondition"] for n in data["assetNodes"] if n["automationCondition"]]
    assert len(conditions) == 5 and all(c["label"] for c in conditions), conditions
    triggers = data["sensorsOrError"]["results"] + data["schedulesOrError"]["results"]
    assert all(len(t["description"] or "") > 40 for t in triggers), triggers
    status = {t["name"]: (t.get("sensorState") or t.get("scheduleState"))["status"] for t in triggers}
    described = {t["name"]: t["description"] for t in triggers}
    assert (
        status["ttl_expiry_sensor"] == "STOPPED" and "setting it turns this sensor on" in described["ttl_expiry_sensor"]
    )
    assert "refresh_schedule" not in status  # no EMBEDDING_ASSETS_REFRESH_CRON: no schedule to list as "Every hour"


def test_every_shard_passes_its_checks_and_no_step_logs_missing_outputs(demo: Demo) -> None:
    checks = {c["name"]: c for c in node(demo, TABLE, CHECKS)["assetChecksOrError"]["checks"]}
    for name in ("vector_table_integrity", "index_matches_source"):
        statuses = checks[name]["partitionStatuses"]
        assert (sorted(statuses["succeededPartitions"]), statuses["skippedPartitions"]) == (SHARDS, []), name
        assert checks[name]["executionForLatestMaterialization"]["status"] == "SUCCEEDED", name
    drift = checks[EMBEDDING_DRIFT]["executionForLatestMaterialization"]  # one result for the table per run
    assert drift["status"] == "SUCCEEDED" and "re-embedded 4 stored chunks" in drift["evaluation"]["description"]
    quality = node(demo, EVAL, CHECKS)["assetChecksOrError"]["checks"][0]
    assert quality["executionForLatestMaterialization"]["status"] == "SUCCEEDED"
    assert "recall@10 0.9" in quality["executionForLatestMaterialization"]["evaluation"]["description"]
    logs = demo.dev.graphql(
        f'{{ logsForRun(runId: "{demo.run_id}", limit: 20000) {{ ... on EventConnection {{ events {{ '
        "... on MessageEvent { message } } } } }"
    )["logsForRun"]["events"]
    assert logs and not [e for e in logs if "did not yield" in (e.get("message") or "")]


def test_the_index_totals_schema_uri_and_a_preview_are_in_the_metadata(demo: Demo) -> None:
    store = VectorStore(demo.env["EMBEDDING_ASSETS_LANCEDB_URI"])
    (model,) = store.model_versions()
    rows = store.table(model).count_rows()
    table = latest_metadata(demo, TABLE)
    assert table["dagster/row_count"]["intValue"] == table["index_rows"]["intValue"] == rows > 800
    assert table["index_documents"]["intValue"] == 79 and table["run_shards"]["intValue"] == 8
    tokens = sum(store.table(model).search().select(["token_count"]).limit(rows).to_arrow()["token_count"].to_pylist())
    assert table["index_tokens"]["intValue"] == tokens > 0
    preview = [json.loads(record) for record in table["preview"]["table"]["records"]]
    assert len(preview) == 3 and all(row["chunk_id"].startswith(row["doc_id"] + "#") for row in preview)
    definition = entries(node(demo, TABLE, f"metadataEntries {{ {ENTRY} }}")["metadataEntries"])
    columns = {c["name"]: c["type"] for c in definition["dagster/column_schema"]["schema"]["columns"]}
    assert columns["vector"] == "fixed_size_list<item: float>[384]" and "chunk_id" in columns
    assert definition["dagster/uri"]["text"] == f"{store.uri}/{store.table(model).name}.lance"
    embeddings = latest_metadata(demo, EMBEDDINGS)
    assert embeddings["run_chunks_embedded"]["intValue"] == rows  # the demo's run embedded every chunk
    assert "cost_usd" not in embeddings and "rate_limited" not in embeddings  # always 0 for a local model


def test_source_documents_reads_as_observed(demo: Demo) -> None:
    found = node(demo, "source_documents", "isObservable isMaterializable assetObservations(limit: 50) { partition }")
    assert found["isObservable"] and not found["isMaterializable"]
    assert sorted({o["partition"] for o in found["assetObservations"]}) == SHARDS


def test_the_demo_run_belongs_to_the_ui_code_location(demo: Demo) -> None:
    data = demo.dev.graphql(
        f"""{{ runOrError(runId: "{demo.run_id}") {{ ... on Run {{ parentPipelineSnapshotId
          repositoryOrigin {{ repositoryLocationName repositoryName }} }} }}
        pipelineOrError(params: {{repositoryLocationName: "embedding_assets", repositoryName: "__repository__",
          pipelineName: "__ASSET_JOB"}}) {{ ... on Pipeline {{ pipelineSnapshotId }} }} }}"""
    )
    run = data["runOrError"]
    assert run["repositoryOrigin"] == {"repositoryLocationName": "embedding_assets", "repositoryName": "__repository__"}
    assert run["parentPipelineSnapshotId"] == data["pipelineOrError"]["pipelineSnapshotId"]  # re-executes as is


def test_opening_the_ui_launches_no_run_in_the_first_minute(demo: Demo) -> None:
    time.sleep(max(0.0, demo.started + QUIET_MINUTE - time.monotonic()))
    assert runs(demo) == {demo.run_id: "SUCCESS"}
    assert "Sensor source_change_sensor skipped" in demo.dev.log.read_text()  # it did tick, and found nothing


def test_retrieval_quality_fails_its_run_on_a_broken_table(demo: Demo) -> None:
    store = VectorStore(demo.env["EMBEDDING_ASSETS_LANCEDB_URI"])
    (model,) = store.model_versions()
    table = store.table(model)
    constant = np.ones(384, dtype=np.float32) / np.sqrt(384)  # every chunk the same vector: ranks are noise
    table.update(values={"vector": constant.tolist()})
    failed = run_id_of(cli(demo.env, "materialize", "--select", EVAL, code=1))
    assert runs(demo)[failed] == "FAILURE"  # the Runs list
    quality = node(demo, EVAL, CHECKS)["assetChecksOrError"]["checks"][0]
    assert quality["executionForLatestMaterialization"]["status"] == "FAILED"  # the asset, the catalog
    description = quality["executionForLatestMaterialization"]["evaluation"]["description"]
    assert "is under the floor 0.5 (EMBEDDING_ASSETS_EVAL_FLOOR)" in description
