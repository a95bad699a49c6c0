import math
from pathlib import Path

import pytest

from embedding_assets.core.evaluation import (
    EvalReport,
    GoldenQuery,
    comparison_table,
    evaluate,
    load_golden,
    ndcg_at,
    recall_at,
    reciprocal_rank,
)
from embedding_assets.core.migration import gate

QUERY = GoldenQuery("q", ("a", "b"), {"a": 2.0})


def test_metrics_match_hand_computed_values() -> None:
    ranked = ["x", "a", "y", "b"]
    assert recall_at(ranked, QUERY, 1) == 0.0
    assert recall_at(ranked, QUERY, 2) == 0.5
    assert recall_at(ranked, QUERY, 10) == 1.0
    assert reciprocal_rank(ranked, QUERY) == 0.5
    # DCG = (2^2-1)/log2(3) + (2^1-1)/log2(5); ideal = (2^2-1)/log2(2) + (2^1-1)/log2(3)
    dcg = 3 / math.log2(3) + 1 / math.log2(5)
    ideal = 3 / 1 + 1 / math.log2(3)
    assert ndcg_at(ranked, QUERY) == pytest.approx(dcg / ideal)
    assert ndcg_at(["a", "b"], QUERY) == pytest.approx(1.0)
    assert ndcg_at(["z"], QUERY) == 0.0


def test_evaluate_collapses_chunks_to_documents_and_averages() -> None:
    golden = [QUERY, GoldenQuery("r", ("c",))]
    hits = {"q": ["a", "a", "b"], "r": ["x", "x", "y", "c"]}  # chunk hits, documents repeated
    report = evaluate("m", golden, lambda queries: [hits[q] for q in queries])
    assert report["recall@1"] == pytest.approx((0.5 + 0.0) / 2)
    assert report["mrr"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert report["ndcg@10"] == pytest.approx((1.0 + 1 / math.log2(4)) / 2)


def test_golden_files_are_validated(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"query": "q", "relevant": ["a"], "grades": {"a": 2}}\n\n{"query": "r", "relevant": ["b"]}\n')
    assert [q.query for q in load_golden(good)] == ["q", "r"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "relevant": ["a"], "grades": {"z": 1}}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        load_golden(bad)
    bad.write_text('{"relevant": ["a"]}\n')
    with pytest.raises(ValueError, match="not a golden query"):
        load_golden(bad)


def test_the_shipped_demo_golden_set_loads() -> None:
    golden = load_golden(Path(__file__).parents[2] / "embedding_assets" / "demo" / "golden.jsonl")
    assert len(golden) >= 30 and all(d.endswith(".txt") for q in golden for d in q.relevant)


def test_gate_and_comparison_table() -> None:
    live = EvalReport("live:model/4d", 10, {"recall@10": 0.90, "ndcg@10": 0.80, "mrr": 0.7})
    close = EvalReport("cand:model/4d", 10, {"recall@10": 0.89, "ndcg@10": 0.79, "mrr": 0.1})
    worse = EvalReport("cand:model/4d", 10, {"recall@10": 0.80, "ndcg@10": 0.85, "mrr": 0.9})
    assert gate(close, live, margin=0.02) == []
    assert gate(worse, live, margin=0.02) == ["recall@10 0.800 is worse than live 0.900 by more than 0.020"]
    table = comparison_table([close, live], live="live:model/4d").splitlines()
    assert table[2].startswith("| live:model/4d | live | 0.900 |") and "| candidate |" in table[3]
