"""The real `dagster dev` (webserver + daemon, loaded through workspace.yaml), inspected over GraphQL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHAIN = ["raw_documents", "chunks", "embeddings", "vector_table"]
SHARDS = ["s000", "s001", "s002", "s003"]
CHECKS = {"vector_dimension_matches_model", "vectors_are_valid", "chunk_ids_unique",
          "single_model_version", "row_count_matches_chunks"}
QUERY = """{ assetNodes {
  assetKey { path } opVersion partitionKeys dependencyKeys { path } dependedByKeys { path }
  repository { location { name } }
  assetChecksOrError { __typename ... on AssetChecks { checks { name } } ... on Error { message } } } }"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(base: str, query: str) -> dict[str, Any]:
    req = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = json.load(resp)
    assert "errors" not in body, body["errors"]
    return body["data"]


def wait_for(predicate: Any, what: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if predicate():
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"no {what} after {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("ui")
    (tmp / "source").mkdir()
    (tmp / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDDING_ASSETS_")}
    env |= {"DAGSTER_HOME": str(tmp / "home"), "EMBEDDING_ASSETS_SOURCE_DIR": str(tmp / "source"),
            "EMBEDDING_ASSETS_LANCEDB_URI": str(tmp / "lancedb"), "EMBEDDING_ASSETS_STAGING_DIR": str(tmp / "staging"),
            "EMBEDDING_ASSETS_SHARDS": "4", "EMBEDDING_ASSETS_MODEL": "local:all-MiniLM-L6-v2"}
    port, log = free_port(), tmp / "dagster-dev.log"
    with log.open("wb") as out:
        # A new session (so the whole group can be signalled) with SIGINT restored: otherwise the
        # inherited SIG_IGN makes `dagster dev` ignore SIGTERM and leave its children running.
        proc = subprocess.Popen(
            [str(PROJECT_ROOT / ".venv/bin/dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    base, pgid = f"http://127.0.0.1:{port}", proc.pid
    try:
        wait_for(lambda: urllib.request.urlopen(f"{base}/server_info", timeout=5).status == 200,
                 "/server_info", proc, log)
        wait_for(lambda: graphql(base, "{ assetNodes { id } }")["assetNodes"], "assetNodes", proc, log)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited already
            os.killpg(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            os.killpg(pgid, signal.SIGKILL)  # the group is gone by now unless something hung
        proc.wait()


@pytest.fixture(scope="module")
def nodes(base_url: str) -> dict[str, dict[str, Any]]:
    return {"/".join(n["assetKey"]["path"]): n for n in graphql(base_url, QUERY)["assetNodes"]}


def keys(entries: list[dict[str, Any]]) -> list[str]:
    return sorted("/".join(e["path"]) for e in entries)


def test_assets_form_the_partitioned_chain(nodes: dict[str, dict[str, Any]]) -> None:
    assert set(nodes) == set(CHAIN)
    for i, name in enumerate(CHAIN):
        assert keys(nodes[name]["dependencyKeys"]) == CHAIN[max(i - 1, 0):i], name
        assert keys(nodes[name]["dependedByKeys"]) == CHAIN[i + 1:i + 2], name
        assert nodes[name]["partitionKeys"] == SHARDS, name
        assert nodes[name]["repository"]["location"]["name"] == "embedding_assets"


def test_vector_table_has_the_five_checks(nodes: dict[str, dict[str, Any]]) -> None:
    result = nodes["vector_table"]["assetChecksOrError"]
    assert result["__typename"] == "AssetChecks", result
    assert {c["name"] for c in result["checks"]} == CHECKS


def test_embeddings_op_version_names_the_model(nodes: dict[str, dict[str, Any]]) -> None:
    assert "all-MiniLM-L6-v2" in (nodes["embeddings"]["opVersion"] or "")
