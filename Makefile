# Every command a user or CI needs. The venv is rebuilt when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
# One Dagster instance for the CLI, the sensors and the UI.
export DAGSTER_HOME := $(CURDIR)/.dagster_home
DEMO_QUERY ?= how do I catch an exception and clean up afterwards

.PHONY: install instance demo materialize refresh verify search test test-fast check typecheck reliability bench lint \
	format ui screenshot clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The `bench` extra (LangChain, LlamaIndex, matplotlib) only for `make bench`, never for install or test.
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# The Dagster instance of the profile EMBEDDING_ASSETS_PROFILE (local unless set):
# embedding_assets/deploy/<profile>/dagster.yaml, located by `embedding-assets instance-config`.
instance: install
	mkdir -p $(DAGSTER_HOME)
	config="$$($(BIN)/embedding-assets instance-config)" && cp "$$config" $(DAGSTER_HOME)/dagster.yaml

demo: instance
	$(BIN)/embedding-assets export-demo-corpus
	$(MAKE) --no-print-directory materialize
	$(BIN)/embedding-assets search "$(DEMO_QUERY)" -k 5

# One run of every asset and check over all shards, under workspace.yaml's code location (the UI's), with
# progress on a terminal.
materialize: instance
	$(BIN)/embedding-assets materialize

refresh: instance
	$(BIN)/embedding-assets refresh

verify: install
	$(BIN)/embedding-assets verify

search: install
	$(BIN)/embedding-assets search "$(DEMO_QUERY)" -k 5

# Everything CI runs: the static checks, then the whole test suite.
test: check
	$(BIN)/pytest -n 2

# The contributor's loop: the static checks and the tests that neither run the real model end to end
# nor start servers (a few minutes).
test-fast: check
	$(BIN)/pytest -n 2 -m "not slow"

check: lint typecheck

typecheck: install
	$(BIN)/mypy

# The fault-injection, concurrency and bad-input suites, with their figures; the SIGKILL matrices in full
# (make test kills a refresh at the 1st call of 8 of its 18 points and 1 random time, and once per feed point).
reliability: install
	rm -f .reliability.jsonl
	FAULT_TRIALS=all RELIABILITY_LOG=$(CURDIR)/.reliability.jsonl $(BIN)/pytest -m reliability
	$(BIN)/python -m embedding_assets_tests.reliability_report .reliability.jsonl

# Throughput, incremental cost, memory, query latency and the same work by LangChain and LlamaIndex, on the
# kernel docs (fetched with apt-get download) -> benchmarks/results.md and results.png; then the change
# index's cost at 10^4 and 10^6 documents -> benchmarks/change_detection.md; then edit -> searchable
# under dagster dev for the folder and PostgreSQL -> benchmarks/freshness.md; the local model's thread
# settings -> benchmarks/model_threads.md; the vector table at 2x10^5 and 2x10^6 rows and the pipeline at
# 10^5 and 10^6 documents with the toy model -> benchmarks/store_scale.md, pipeline_scale.md (and 10^6 over
# 640 shards, the 10^5 run's shard size -> pipeline_scale_fixed_shard.md); the vector
# index's fold-in and compaction at 10^5 and 4x10^5 rows -> benchmarks/ann_upkeep.md; a Dagster event's
# cost on SQLite and PostgreSQL instance storage -> benchmarks/event_cost.md (~1 h 40 min).
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/change_detection.py
	$(BIN)/python benchmarks/freshness.py
	$(BIN)/python benchmarks/model_threads.py
	$(BIN)/python benchmarks/store_scale.py
	$(BIN)/python benchmarks/pipeline_scale.py
	$(BIN)/python benchmarks/pipeline_scale.py --fixed-shard 1000000 640
	$(BIN)/python benchmarks/ann_upkeep.py
	$(BIN)/python benchmarks/embed_reuse.py
	$(BIN)/python benchmarks/event_cost.py

LINTED := embedding_assets embedding_assets_tests benchmarks scripts

lint: install
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/ruff check $(LINTED)

format: install
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)

ui: instance
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

screenshot: instance
	$(BIN)/python scripts/screenshot.py docs/

clean:
	rm -rf data .dagster_home .pytest_cache .reliability.jsonl
