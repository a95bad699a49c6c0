"""The ``embedding-assets`` command as cron, CI and a person meet it: ``--json`` with the README's fields,
exit codes, and progress that shows on a terminal and nowhere else. Run in subprocesses on a small corpus."""

import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from embedding_assets.cli.index import _on_refresh
from embedding_assets.cli.progress import Display
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.profiles import instance_config
from embedding_assets.core.shards import shard_of
from embedding_assets.core.store import VectorStore, sql_string
from embedding_assets_tests.conftest import TEST_TOPICS, write_topics
from embedding_assets_tests.dagster_dev import PROJECT_ROOT, project_env
from embedding_assets_tests.generated_files import PAGES, pdf

CLI = str(PROJECT_ROOT / ".venv" / "bin" / "embedding-assets")
README = (PROJECT_ROOT / "README.md").read_text()
RUN_ID = "[0-9a-f-]{36}"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def documented_fields() -> dict[str, tuple[set[str], dict[str, set[str]]]]:
    """command → (its top-level fields, field → the fields of its items) from the README's ``--json`` table."""
    section = README.split("**`--json`**", 1)[1].split("\n\n", 2)[1]
    fields = {}
    for command, cell in re.findall(r"^\| `([\w-]+)` \| (.+) \|$", section, flags=re.M):
        nested = {
            name: set(re.findall(r"`([\w@]+)`", inner)) for name, inner in re.findall(r"`(\w+)` \(([^)]*)\)", cell)
        }
        top = set(re.findall(r"`([\w@]+)`", re.sub(r"\([^)]*\)", "", cell)))
        fields[command] = (top, nested)
    return fields


def run(env: dict[str, str], *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == code, f"{args}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def run_json(env: dict[str, str], *args: str, code: int = 0) -> dict[str, Any]:
    """The command's one JSON object, checked against the README: envelope, and every documented field."""
    done = run(env, *args, "--json", code=code)
    payload: dict[str, Any] = json.loads(done.stdout)
    assert (payload["schema"], payload["command"], payload["exit_code"]) == (1, args[0], code)
    if "error" not in payload:
        top, nested = documented_fields()[args[0]]
        assert top <= set(payload), f"{args[0]} lacks {top - set(payload)}"
        for name, inner in nested.items():
            items = payload[name] if isinstance(payload[name], list) else [payload[name]]
            for item in items:
                if isinstance(item, dict):  # its fields, and those of the objects it holds (`shards`: each ...)
                    held = [d for v in item.values() for d in (v if isinstance(v, list) else [v])]
                    keys = set(item) | {k for d in held if isinstance(d, dict) for k in d}
                    assert inner <= keys, f"{args[0]}.{name} lacks {inner - keys}"
    return payload


def on_terminal(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Exit code and screen output of the command run on a pseudo-terminal (120 columns)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    terminal = {"TERM": "xterm", "COLUMNS": "120", "LINES": "40"}  # rich reads COLUMNS before the tty's size
    proc = subprocess.Popen([CLI, *args], env=env | terminal, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    out, deadline = b"", time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the follower side closed: the command ended
                break
            if not data:
                break
            out += data
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=60), ANSI.sub("", out.decode(errors="replace"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A small real corpus (six topics and a three-page PDF) in four shards, nothing materialized yet."""
    write_topics(tmp_path / "source", TEST_TOPICS[:6])
    (tmp_path / "source" / "report.pdf").write_bytes(pdf(PAGES))
    return project_env(tmp_path, shards="4")


def test_the_readme_documents_json_for_the_six_commands() -> None:
    assert set(documented_fields()) == {"status", "refresh", "verify", "eval", "estimate", "search"}


@pytest.mark.slow
def test_json_of_every_command_parses_and_carries_the_documented_fields(env: dict[str, str], minilm: Embedder) -> None:
    refresh = run_json(env, "refresh")
    holding = sorted({shard_of(name, 4) for name in [f"{t}.txt" for t in TEST_TOPICS[:6]] + ["report.pdf"]})
    assert refresh["stale_shards"] == holding and refresh["shards_total"] == 4 and len(refresh["runs"]) >= 1
    assert refresh["totals"]["chunks_embedded"] > 0 and refresh["keys_read"] == 7
    assert run_json(env, "refresh")["stale_shards"] == [], "a second refresh has nothing to do"

    status = run_json(env, "status")
    assert [(t["model_version"], t["role"]) for t in status["tables"]] == [(minilm.model_version, "live")]
    assert sum(s["live_rows"] for s in status["shards"]) == status["tables"][0]["rows"] > 0

    verify = run_json(env, "verify")
    assert (verify["shards_total"], verify["mismatched"]) == (4, [])
    (model,) = verify["models"]
    assert (model["model_version"], model["shards_matching"], model["mismatched"]) == (minilm.model_version, 4, [])

    search = run_json(env, "search", "bananas ripen in a warm room", "-k", "3")
    top = search["hits"][0]
    assert (top["rank"], top["doc_id"], top["page"], top["text"]) == (1, "report.pdf", 2, PAGES[1])
    assert all(h["page"] is None for h in search["hits"] if h["doc_id"] != "report.pdf")

    estimate = run_json(env, "estimate")
    assert (estimate["scope"], estimate["shards"], estimate["documents"]) == ("full", 4, 7)
    assert run_json(env, "estimate", "--stale-only")["tokens"] == 0

    evaluation = run_json(env, "eval")
    assert evaluation["tables"][0]["role"] == "live" and 0 <= evaluation["tables"][0]["metrics"]["ndcg@10"] <= 1

    VectorStore(env["EMBEDDING_ASSETS_LANCEDB_URI"]).table(minilm.model_version).delete(
        f"chunk_id = {sql_string('break.txt#0')}"
    )
    shard = shard_of("break.txt", 4)
    drift = run_json(env, "verify", code=1)
    assert drift["mismatched"] == drift["models"][0]["mismatched"] == [shard]
    assert next(s for s in drift["models"][0]["shards"] if s["shard"] == shard)["missing"] == 1
    repaired = run_json(env, "verify", "--repair")
    assert (repaired["mismatched_before"], repaired["mismatched"]) == ([shard], [])
    assert repaired["repair"]["stale_shards"] == [shard]


@pytest.mark.slow
def test_materialize_shows_progress_on_a_terminal_and_one_line_without(env: dict[str, str], minilm: Embedder) -> None:
    shutil.copy(instance_config("local"), Path(env["DAGSTER_HOME"]) / "dagster.yaml")  # as `make instance` does
    code, screen = on_terminal(env, "materialize")
    assert code == 0, screen[-3000:]
    bar = r"materialize vector_table s00\d .*16/16 steps .*4 shards done, [1-9][\d,]* chunks embedded .*elapsed"
    assert re.search(bar, screen), screen[-3000:]
    rows = VectorStore(env["EMBEDDING_ASSETS_LANCEDB_URI"]).info(minilm.model_version).rows
    summary = rf"materialized '\*' for s000...s003 in run {RUN_ID} \(\d+ s\): [1-9]\d* chunks embedded; "
    assert re.search(summary + rf"the live table holds {rows} rows\s*$", screen), screen[-1000:]

    selection = "local_all_minilm_l6_v2/embeddings,local_all_minilm_l6_v2/vector_table"
    quiet = run(env, "materialize", "--select", selection, "--partition-range", "s001...s002")
    again = rf"materialized '{selection}' for s001...s002 in run {RUN_ID} \(\d+ s\): 0 chunks embedded; "
    assert re.fullmatch(again + r".*\n", quiet.stdout) and quiet.stderr == ""
    assert "--partition-range must be" in run(env, "materialize", "--partition-range", "s003...s001", code=2).stderr


def test_misconfiguration_exits_2_with_the_error_as_json(env: dict[str, str]) -> None:
    bad = run_json(env | {"EMBEDDING_ASSETS_MODEL": "nosuch:model"}, "estimate", code=2)
    assert "nosuch:model" in bad["error"]
    missing = run_json(env | {"EMBEDDING_ASSETS_SOURCE_DIR": "/nonexistent/folder"}, "estimate", code=2)
    assert "/nonexistent/folder" in missing["error"]
    no_home = {k: v for k, v in env.items() if k != "DAGSTER_HOME"}
    assert "DAGSTER_HOME" in run_json(no_home, "refresh", code=2)["error"]
    assert run(env, "verify", "--no-such-flag", code=2).stdout == ""
    assert "--churn-days: must be a positive number of days" in run(env, "estimate", "--churn-days", "0", code=2).stderr


@pytest.mark.slow
def test_estimate_prices_the_live_models_churn_at_the_candidates_price(env: dict[str, str]) -> None:
    """A migration's full cost, and the daily cost of a second table: the live model's measured churn (its
    refreshes' tokens in the instance) at the candidate's price. The toy model stands in for the live one."""
    toy, candidate = env | {"EMBEDDING_ASSETS_MODEL": "toy:hashing"}, "openai:text-embedding-3-small"
    run_json(toy, "refresh")
    source = Path(env["EMBEDDING_ASSETS_SOURCE_DIR"])
    (source / "break.txt").write_text((source / "break.txt").read_text() + "\n\nA new paragraph on loops.")
    edit = run_json(toy, "refresh")
    estimate = run_json(toy, "estimate", "--model", candidate, "--churn-days", "3")
    assert (estimate["scope"], estimate["price_per_mtok"]) == ("full", 0.02) and estimate["cost_usd"] > 0
    upkeep = estimate["upkeep"]
    expected = ("toy:hashing@1/32d", "toy_hashing/embeddings", 3.0)
    assert (upkeep["live_model"], upkeep["asset"], upkeep["window_days"]) == expected
    assert (upkeep["refreshes"], upkeep["tokens"]) == (1, edit["totals"]["tokens_embedded"]) and upkeep["tokens"] > 0
    assert 0 < upkeep["days"] < 0.01  # the history is minutes old: the rate is over those minutes, not 3 days
    assert upkeep["tokens_per_day"] == pytest.approx(upkeep["tokens"] / upkeep["days"], rel=1e-3)
    assert upkeep["cost_usd_per_day"] == pytest.approx(upkeep["tokens_per_day"] * 0.02 / 1e6, abs=2e-6)
    assert re.match(r"[\d,]+ tokens/day, \$[\d.]+/day at \$0.02/1M tokens: the churn toy:hashing", upkeep["note"])
    assert "(all the history there is; the window is 3 days)" in upkeep["note"]


def test_status_without_a_table_exits_1(env: dict[str, str]) -> None:
    """The active model is listed before its table exists: no rows, and every shard holding documents stale."""
    status = run_json(env, "status", code=1)
    (table,) = status["tables"]
    assert status["live_model"] == table["model_version"] and status["active_models"] == ["local:all-MiniLM-L6-v2"]
    assert (table["slug"], table["role"], table["active"]) == ("local_all_minilm_l6_v2", "live", True)
    assert (table["rows"], table["table_version"]) == (0, None)
    holding = sorted({shard_of(name, 4) for name in [f"{t}.txt" for t in TEST_TOPICS[:6]] + ["report.pdf"]})
    assert table["stale_shards"] == holding and table["shards_fresh"] == 4 - len(holding)


def test_progress_shows_on_a_terminal_and_stays_quiet_without_one(env: dict[str, str], tmp_path: Path) -> None:
    code, screen = on_terminal(env, "export-demo-corpus", str(tmp_path / "demo"))
    assert code == 0
    assert re.search(r"export \S+\.txt .*79/79 files .*elapsed, .*left", screen), screen[-2000:]
    assert screen.rstrip().endswith(f"exported 79 pydoc topics to {tmp_path / 'demo'}")
    code, screen = on_terminal(env, "estimate")
    assert code == 0 and re.search(r"estimate s003 .*4/4 shards .*chunks, .*tokens .*elapsed", screen), screen[-2000:]

    quiet = run(env, "export-demo-corpus", str(tmp_path / "again"))
    assert quiet.stdout == f"exported 79 pydoc topics to {tmp_path / 'again'}\n" and quiet.stderr == ""
    (Path(env["DAGSTER_HOME"]) / "dagster.yaml").write_text("")  # as `make instance` leaves it: no warning
    quiet = run(env, "estimate")
    assert len(quiet.stdout.splitlines()) == 2 and quiet.stderr == ""
    assert quiet.stdout.splitlines()[1].startswith(
        "upkeep beside the live table: unknown: local:all-MiniLM-L6-v2-onnx-int8@1.0.0/384d has no history yet"
    )


def test_the_refresh_bar_counts_every_model_s_steps() -> None:
    """Steps report their asset keys (``<model slug>/vector_table``); a shard is done at its vector_table."""
    display = Display("refresh", None, "steps", {"shards": "shards done"})
    _on_refresh(display, "refresh_plan", "", {"stale_shards": 2})  # one shard, two models
    for model in ("local_all_minilm_l6_v2", "toy_hashing"):
        for step in ("raw_documents", "words/chunks", f"{model}/embeddings", f"{model}/vector_table"):
            _on_refresh(display, step, "s001", {"chunks_embedded": 3} if step.endswith("embeddings") else {})
    assert display.total == 8 and (display.counts["shards"], display.counts["chunks_embedded"]) == (2, 6)
