"""Screenshot the Dagster UI's pages a first-time user opens: the lineage of the demo model's chain (the
``documents`` group and the model's ``model_<slug>`` group), the live model's vector_table overview (the index's
totals) and checks, its embeddings' overview (the run's sums), retrieval_eval's quality check,
source_documents, the automation page and the runs list.

Usage, from the repo root (``make screenshot``): ``.venv/bin/python scripts/screenshot.py docs/`` writes
``docs/asset-graph.png`` and one ``docs/ui-<page>.png`` per page.
Starts ``dagster dev`` on a free loopback port with the caller's environment (DAGSTER_HOME; EMBEDDING_ASSETS_*,
else the repo's data/ folders), waits for the assets, captures the page with headless Chromium, then stops
``dagster dev`` by its process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
MODEL = "local_all_minilm_l6_v2"  # the demo's one model: its assets' key prefix
# The model's chain upstream of its last asset, both groups expanded (the global lineage collapses a
# multi-group graph to one box per group).
LINEAGE = f"/assets/{MODEL}/vector_index?view=lineage&lineageScope=upstream&lineageDepth=6"
# file name → (path, window, smallest plausible PNG). Narrower than 1900 px, and the UI zooms the graph out
# to bare asset names. An app shell with nothing rendered yet is ~41 kB at 1600x1100.
PAGES = {
    "asset-graph.png": (LINEAGE, "1900,800", 90_000),
    "ui-vector-table.png": (f"/assets/{MODEL}/vector_table", "1600,2200", 150_000),
    "ui-vector-table-checks.png": (f"/assets/{MODEL}/vector_table?view=checks", "1600,900", 90_000),
    "ui-embeddings.png": (f"/assets/{MODEL}/embeddings", "1600,1500", 100_000),
    "ui-retrieval-quality.png": (f"/assets/{MODEL}/retrieval_eval?view=checks", "1600,900", 80_000),
    "ui-source-documents.png": ("/assets/source_documents", "1600,1000", 80_000),
    "ui-catalog.png": ("/assets", "1600,900", 50_000),
    "ui-automation.png": ("/automation", "1600,800", 50_000),
    "ui-runs.png": ("/runs", "1600,700", 50_000),
}
LOAD_QUERY = """{ assetNodes { id } workspaceOrError { ... on Workspace { locationEntries {
  name locationOrLoadError { ... on PythonError { message errorChain { error { message } } } } } } } }"""


def graphql(base: str, query: str) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{base}/graphql", json.dumps({"query": query}).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp).get("data") or {}


def fail(message: str, log: IO[bytes]) -> NoReturn:
    log.seek(0)
    sys.exit(f"{message}\n--- dagster dev output (tail) ---\n{log.read().decode(errors='replace')[-3000:]}")


def wait_until_ready(base: str, proc: subprocess.Popen[bytes], log: IO[bytes], timeout: float = 90) -> None:
    """Until /server_info answers and GraphQL lists the asset nodes; fails fast if the location cannot load."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"dagster dev exited with code {proc.returncode}", log)
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"{base}/server_info", timeout=5).close()
            data = graphql(base, LOAD_QUERY)
            if data.get("assetNodes"):
                return
            for entry in (data.get("workspaceOrError") or {}).get("locationEntries", []):
                if (error := entry["locationOrLoadError"] or {}).get("message"):  # report the root cause
                    root = ([error] + [link["error"] for link in error["errorChain"]])[-1]["message"]
                    fail(f"code location {entry['name']} failed to load: {root}", log)
        time.sleep(0.5)
    fail(f"dagster dev served no assets within {timeout:.0f} s", log)


def capture(url: str, out: Path, window: str, budget_ms: int) -> None:
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        done = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={window}",
                f"--virtual-time-budget={budget_ms}",
                f"--screenshot={out}",
                url,
            ],
            timeout=180,
            capture_output=True,
            text=True,
        )
    if done.returncode != 0 or not out.exists():
        sys.exit(f"chromium failed (exit code {done.returncode}):\n{done.stderr[-2000:]}")


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit(f"usage: {argv[0]} OUT_DIR")
    if not os.access(CHROMIUM, os.X_OK):
        sys.exit(f"{CHROMIUM} not found. Install headless Chromium first: apt-get install -y chromium")
    if "DAGSTER_HOME" not in os.environ:
        print("note: DAGSTER_HOME is unset, so the pages show no materializations", file=sys.stderr)
    folder = Path(argv[1]).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base, dagster = f"http://127.0.0.1:{port}", str(Path(sys.executable).parent / "dagster")
    # A new session, so the whole group can be signalled, with SIGINT restored: under an inherited SIG_IGN
    # `dagster dev` ignores SIGTERM and leaves its webserver, daemon and code servers running.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [dagster, "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            wait_until_ready(base, proc, log)
            # Dismiss the "Join the Dagster community" dialog, which would cover the page, as its "Skip" does
            # (the instance remembers it in $DAGSTER_HOME/.nux/nux.yaml).
            graphql(base, "mutation { setNuxSeen }")
            for name, (page, window, min_bytes) in PAGES.items():
                shoot(base + page, folder / name, window, min_bytes, log)
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have exited already
                os.killpg(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
                os.killpg(proc.pid, signal.SIGKILL)  # only stragglers are left by now, if anything
            proc.wait()


def shoot(url: str, out: Path, window: str, min_bytes: int, log: IO[bytes]) -> None:
    """One page, with more virtual time while it looks empty (a JS app renders after its queries)."""
    for budget_ms in (15_000, 30_000, 60_000):
        capture(url, out, window, budget_ms)
        if out.stat().st_size >= min_bytes:
            print(f"wrote {out} ({url})")
            return
    fail(f"{out} looks blank ({out.stat().st_size} bytes): the UI did not render {url}", log)


if __name__ == "__main__":
    main(sys.argv)
