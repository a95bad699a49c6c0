"""The live pointer, read as an application reads it: a plain LanceDB client, without this package."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from embedding_assets import cli
from embedding_assets.core.index import Index
from embedding_assets.core.settings import Settings
from embedding_assets.refresh import refresh
from embedding_assets_tests.pipeline_helpers import settings_env

# The README's three lines, run in a fresh interpreter that never imports embedding_assets.
APPLICATION = """
import json, sys, lancedb
assert "embedding_assets" not in sys.modules
db = lancedb.connect(sys.argv[1])
live = db.open_table("index_registry").to_arrow().sort_by([("at", "descending")])["live_table"][0].as_py()
model = db.open_table(live).schema.metadata[b"model_spec"].decode()
print(json.dumps({"table": live, "model": model, "imported": "embedding_assets" in sys.modules}))
"""


def read_pointer(uri: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", APPLICATION, uri], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_a_plain_lancedb_client_follows_promote_and_rollback(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = dataclasses.replace(settings, models="toy:hashing?dimensions=16,toy:hashing?dimensions=32", shards=2)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    index = Index(settings)
    first, second = index.models
    with dg.instance_for_test() as instance:
        refresh(index, instance)
    assert read_pointer(settings.lancedb_uri) == {"table": first.table, "model": "toy:hashing", "imported": False}

    assert cli.main(["promote", second.slug, "--force"]) == 0  # the toy models tie or lose on the golden set
    assert read_pointer(settings.lancedb_uri)["table"] == second.table
    assert cli.main(["rollback"]) == 0
    assert read_pointer(settings.lancedb_uri)["table"] == first.table
    assert cli.main(["promote", second.model_version, "--force"]) == 0
    assert read_pointer(settings.lancedb_uri)["table"] == second.table
    assert "is live" in capsys.readouterr().out
