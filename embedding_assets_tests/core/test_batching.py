import pytest

from embedding_assets.core.batching import length_sorted_batches


def test_batches_are_sorted_by_length_and_cover_every_text_once() -> None:
    counts = [50, 3, 20, 3, 7, 100, 1]
    batches = length_sorted_batches(counts, max_items=3)
    assert batches == [[6, 1, 3], [4, 2, 0], [5]]
    assert sorted(i for b in batches for i in b) == list(range(len(counts)))


def test_token_budget_splits_batches() -> None:
    batches = length_sorted_batches([10, 10, 10, 10], max_items=100, max_tokens=25)
    assert batches == [[0, 1], [2, 3]]


def test_a_text_over_the_budget_gets_its_own_batch() -> None:
    assert length_sorted_batches([5, 500, 5], max_items=10, max_tokens=100) == [[0, 2], [1]]


def test_empty_input_and_bad_limits() -> None:
    assert length_sorted_batches([], max_items=4) == []
    with pytest.raises(ValueError, match="max_items must be at least 1"):
        length_sorted_batches([1], max_items=0)
