"""The token bucket that paces embedding requests to a tokens-per-minute limit."""

import pytest

from embedding_assets.core.pacing import TokenBucket


def test_token_bucket_paces_to_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(600, clock=lambda: now[0], sleep=sleep)  # 10 tokens a second, burst 600
    assert bucket.acquire(600) == 0.0
    assert bucket.acquire(100) == pytest.approx(10.0)
    now[0] += 30  # 300 tokens come back
    assert bucket.acquire(300) == 0.0
    assert bucket.acquire(1200) == pytest.approx(60.0)  # bigger than the bucket: wait for a full one
    assert sum(slept) == pytest.approx(70.0)
