"""Secrets stay in the environment; servers bind to loopback."""

import re
from pathlib import Path

import dagster as dg
import pytest

from embedding_assets.core.settings import Settings
from embedding_assets_tests.openai_server import call
from embedding_assets_tests.pipeline_helpers import materialize

pytestmark = pytest.mark.slow
KEY = "sk-proj-DO-NOT-LEAK-8f3a1c9e77d24b6a"


def test_the_api_key_never_reaches_metadata_logs_tables_or_files(
    settings: Settings,
    server_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server_url)
    call(server_url, "/control", {"reset": True, "rate_limit_first": 1, "retry_after": 0.05})  # a retry logs too
    openai_settings = Settings(**{**settings.__dict__, "model": "openai:text-embedding-3-small", "dimensions": 64})
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = materialize(openai_settings, instance)
        for event in result.all_events:
            assert KEY not in str(event), event.event_type_value
        for run in instance.get_runs():
            assert KEY not in str(run.run_config) and KEY not in str(run.tags)
            for record in instance.all_logs(run.run_id):
                assert KEY not in str(record)
    written = [
        p
        for root in (home, Path(settings.lancedb_uri), Path(settings.staging_dir))
        for p in root.rglob("*")
        if p.is_file()
    ]
    assert len(written) > 20  # instance databases, Lance fragments and manifests, Parquet, scan state
    assert not [p for p in written if KEY.encode() in p.read_bytes()]
    out, err = capfd.readouterr()
    assert KEY not in out and KEY not in err


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses listening on ``port``, read from the kernel's socket table."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            addresses.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return addresses


def test_servers_bind_to_loopback(server_url: str) -> None:
    assert listening_addresses(int(server_url.rsplit(":", 1)[1].split("/")[0])) == {"127.0.0.1"}
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert re.search(r"^ui:.*\n\t.*dagster dev -h 127\.0\.0\.1 ", makefile, flags=re.M)
