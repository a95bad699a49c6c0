"""Run the real ``dagster dev`` (webserver + daemon, loaded through workspace.yaml) for a test."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DagsterDev:
    base_url: str
    proc: subprocess.Popen
    log: Path

    def graphql(self, query: str) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.base_url}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = json.load(resp)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 90) -> None:
        """Poll ``predicate`` until it is truthy; fail with the server's log if it exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(urllib.error.URLError, OSError):
                if predicate():
                    return
            time.sleep(0.5)
        raise TimeoutError(f"no {what} after {timeout} s:\n{self.log.read_text()[-3000:]}")


def dagster_cli(env: dict[str, str], *args: str) -> None:
    """The project's ``dagster`` command, run from the project root; it must succeed."""
    command = [str(PROJECT_ROOT / ".venv/bin/dagster"), *args]
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


# `dagster sensor stop NAME`'s own steps, for several sensors with the workspace loaded once: each `dagster`
# command starts a code server of its own (about 7 s apiece on 2 busy cores).
STOP_SENSORS = """
import sys
from dagster import __version__
from dagster._cli.utils import get_instance_for_cli
from dagster._cli.workspace.cli_target import RepositoryOpts, WorkspaceOpts, get_repository_from_cli_opts
workspace = WorkspaceOpts(workspace=["workspace.yaml"])
with get_instance_for_cli() as instance, get_repository_from_cli_opts(
    instance=instance, version=__version__, workspace_opts=workspace, repository_opts=RepositoryOpts()
) as repo:
    for name in sys.argv[1:]:
        sensor = repo.get_sensor(name)
        instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)
        state = instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
        assert state is not None and state.status.value == "STOPPED", (name, state)
"""


def stop_sensors(env: dict[str, str], *names: str) -> None:
    """Stop the named sensors of workspace.yaml's code location, as `dagster sensor stop` does one by one."""
    done = subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/python"), "-c", STOP_SENSORS, *names],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def backfill(env: dict[str, str], partitions: str) -> None:
    """A queued backfill of ``refresh_job`` for ``partitions`` (``s000,s001``), as the README shows it."""
    dagster_cli(
        env, "job", "backfill", "-w", "workspace.yaml", "-j", "refresh_job", "--partitions", partitions, "--noprompt"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def project_env(tmp: Path, **settings: str) -> dict[str, str]:
    """The caller's environment with DAGSTER_HOME and every EMBEDDING_ASSETS_ setting under ``tmp``."""
    for folder in ("source", "home"):
        (tmp / folder).mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDDING_ASSETS_", "OPENAI_"))}
    env |= {
        "DAGSTER_HOME": str(tmp / "home"),
        "EMBEDDING_ASSETS_SOURCE_DIR": str(tmp / "source"),
        "EMBEDDING_ASSETS_LANCEDB_URI": str(tmp / "lancedb"),
        "EMBEDDING_ASSETS_STAGING_DIR": str(tmp / "staging"),
    }
    return env | {f"EMBEDDING_ASSETS_{k.upper()}": v for k, v in settings.items()}


@contextlib.contextmanager
def process_group(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """``command`` run from the project root, logging to ``log``, stopped by its process group afterwards."""
    with log.open("wb") as out:
        # A new session (so the whole group can be signalled) with SIGINT restored: otherwise the
        # inherited SIG_IGN makes Dagster's servers ignore SIGTERM and leave their children running.
        proc = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited already
            os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            os.killpg(proc.pid, signal.SIGKILL)  # the group is gone by now unless something hung
        proc.wait()


@contextlib.contextmanager
def dagster_dev(env: dict[str, str], log: Path) -> Iterator[DagsterDev]:
    """``dagster dev`` on a free loopback port, stopped by its process group afterwards."""
    port = free_port()
    command = [str(PROJECT_ROOT / ".venv/bin/dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)]
    with process_group(command, env, log) as proc:
        dev = DagsterDev(f"http://127.0.0.1:{port}", proc, log)
        dev.wait_for(
            lambda: urllib.request.urlopen(f"{dev.base_url}/server_info", timeout=5).status == 200, "/server_info"
        )
        dev.wait_for(lambda: dev.graphql("{ assetNodes { id } }")["assetNodes"], "assetNodes")
        yield dev
