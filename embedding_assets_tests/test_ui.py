"""The real `dagster dev` (webserver + daemon, loaded through workspace.yaml), inspected over GraphQL."""

from collections.abc import Iterator
from typing import Any

import pytest

from embedding_assets.checks import INDEX_MATCHES_SOURCE
from embedding_assets.core.table_checks import EMBEDDING_DRIFT, VECTOR_TABLE_INTEGRITY
from embedding_assets_tests.dagster_dev import dagster_dev, project_env

pytestmark = pytest.mark.slow

MODEL = "local_all_minilm_l6_v2"  # the default model's key prefix
CHAIN = ["source_documents", "raw_documents", "wordpiece_all_minilm_l6_v2_onnx_int8/chunks"]
CHAIN += [f"{MODEL}/embeddings", f"{MODEL}/vector_table"]
AFTER_TABLE = [f"{MODEL}/retrieval_eval", f"{MODEL}/vector_index"]
SHARDS = ["s000", "s001", "s002", "s003"]
QUERY = """{ assetNodes {
  assetKey { path } opVersion partitionKeys dependencyKeys { path } dependedByKeys { path }
  repository { location { name } }
  assetChecksOrError { __typename ... on AssetChecks { checks { name } } ... on Error { message } } } }"""


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("ui")
    with dagster_dev(project_env(tmp, shards="4"), tmp / "dagster-dev.log") as dev:
        yield {"/".join(n["assetKey"]["path"]): n for n in dev.graphql(QUERY)["assetNodes"]}


def keys(entries: list[dict[str, Any]]) -> list[str]:
    return sorted("/".join(e["path"]) for e in entries)


def test_assets_form_the_partitioned_chain(nodes: dict[str, dict[str, Any]]) -> None:
    assert set(nodes) == {*CHAIN, *AFTER_TABLE}
    assert keys(nodes[AFTER_TABLE[0]]["dependencyKeys"]) == keys(nodes[AFTER_TABLE[1]]["dependencyKeys"])
    assert keys(nodes[AFTER_TABLE[1]]["dependencyKeys"]) == [f"{MODEL}/vector_table"]
    for i, name in enumerate(CHAIN):
        assert keys(nodes[name]["dependencyKeys"]) == CHAIN[max(i - 1, 0) : i], name
        after = CHAIN[i + 1 : i + 2] or AFTER_TABLE
        assert keys(nodes[name]["dependedByKeys"]) == after, name
        assert nodes[name]["partitionKeys"] == SHARDS, name
        assert nodes[name]["repository"]["location"]["name"] == "embedding_assets"


def test_vector_table_has_its_checks(nodes: dict[str, dict[str, Any]]) -> None:
    result = nodes[f"{MODEL}/vector_table"]["assetChecksOrError"]
    assert result["__typename"] == "AssetChecks", result
    assert {c["name"] for c in result["checks"]} == {VECTOR_TABLE_INTEGRITY, INDEX_MATCHES_SOURCE, EMBEDDING_DRIFT}


def test_embeddings_op_version_names_the_model(nodes: dict[str, dict[str, Any]]) -> None:
    assert "all-MiniLM-L6-v2" in (nodes[f"{MODEL}/embeddings"]["opVersion"] or "")
