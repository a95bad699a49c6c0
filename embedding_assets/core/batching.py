"""Grouping texts into embedding requests: sorted by length to cut padding, within request limits."""

from collections.abc import Sequence


def length_sorted_batches(
    token_counts: Sequence[int], *, max_items: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Indices of the texts grouped into batches, shortest texts first.

    Texts of similar length share a batch so padded models waste little work. A batch holds at most
    ``max_items`` texts and, when ``max_tokens`` is given, at most that many tokens in total (a
    single text over the limit still gets a batch of its own; the provider will say why it is refused).
    """
    if max_items < 1:
        raise ValueError("max_items must be at least 1")
    order = sorted(range(len(token_counts)), key=lambda i: (token_counts[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i in order:
        too_many = len(current) >= max_items
        too_long = max_tokens is not None and tokens + token_counts[i] > max_tokens
        if current and (too_many or too_long):
            batches.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += token_counts[i]
    if current:
        batches.append(current)
    return batches
