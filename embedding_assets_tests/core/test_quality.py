"""The retrieval quality gate: a floor on recall@10, a warning on a drop since the previous evaluation."""

import pytest

from embedding_assets.core.evaluation import GoldenQuery
from embedding_assets.core.quality import Verdict, judge, uncovered_queries

GOOD = {"recall@10": 0.92, "ndcg@10": 0.76}


@pytest.mark.parametrize(
    ("current", "previous", "verdict"),
    [
        (GOOD, None, Verdict.PASSED),  # the first evaluation
        (GOOD, {"recall@10": 0.93, "ndcg@10": 0.77}, Verdict.PASSED),  # within the margin
        ({"recall@10": 0.0, "ndcg@10": 0.0}, None, Verdict.FAILED),  # a broken table
        ({"recall@10": 0.49, "ndcg@10": 0.4}, GOOD, Verdict.FAILED),  # under the floor beats a drop
        ({"recall@10": 0.80, "ndcg@10": 0.76}, GOOD, Verdict.WARN),  # above the floor, dropped 0.12
        ({"recall@10": 0.92, "ndcg@10": 0.70}, GOOD, Verdict.WARN),  # nDCG@10 is watched too
    ],
)
def test_verdicts(current: dict[str, float], previous: dict[str, float] | None, verdict: Verdict) -> None:
    assert judge(current, previous, floor=0.5, margin=0.02).verdict is verdict


def test_the_failure_names_the_value_the_floor_and_its_setting() -> None:
    quality = judge({"recall@10": 0.0, "ndcg@10": 0.0}, None, floor=0.5, margin=0.02)
    assert quality.description.startswith("recall@10 0.000 is under the floor 0.5 (EMBEDDING_ASSETS_EVAL_FLOOR)")
    assert quality.figures["recall_at_10"] == 0.0 and quality.figures["floor"] == 0.5


def test_a_drop_names_the_metric_and_how_far_it_fell() -> None:
    quality = judge({"recall@10": 0.80, "ndcg@10": 0.76}, GOOD, floor=0.5, margin=0.02)
    assert quality.description.startswith("recall@10 fell 0.120 to 0.800 since the previous evaluation")
    assert quality.figures["recall_at_10_drop"] == 0.12


def test_no_floor_at_zero_and_none_for_a_golden_set_of_another_corpus() -> None:
    broken = {"recall@10": 0.0, "ndcg@10": 0.0}
    assert judge(broken, None, floor=0.0, margin=0.02).verdict is Verdict.PASSED
    elsewhere = judge(broken, None, floor=0.5, margin=0.02, uncovered=3)
    assert elsewhere.verdict is Verdict.PASSED and "3 golden queries name no document" in elsewhere.description


def test_uncovered_queries_are_those_with_no_relevant_document_indexed() -> None:
    golden = [GoldenQuery("a", ("try.txt", "if.txt")), GoldenQuery("b", ("nope.txt",))]
    assert uncovered_queries(golden, {"if.txt"}) == ["b"]
