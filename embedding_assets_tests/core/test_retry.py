import pytest

from embedding_assets.core.retry import Retryable, RetryPolicy, RetryStats, call_with_retries


class Flaky:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def classify(err: Exception) -> Retryable | None:
    if isinstance(err, TimeoutError):
        return Retryable(err, delay=2.5, rate_limited=True)
    if isinstance(err, ConnectionError):
        return Retryable(err)
    return None


def policy(slept: list[float], attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, base_delay=1.0, max_delay=30.0, sleep=slept.append)


def test_retries_until_success_honouring_the_advised_delay() -> None:
    slept: list[float] = []
    stats = RetryStats()
    call = Flaky([TimeoutError(), ConnectionError()])
    assert call_with_retries(call, classify, policy(slept), stats) == "ok"
    assert call.calls == 3
    assert slept[0] == 2.5 and 0 <= slept[1] <= 2.0
    assert (stats.requests, stats.retries, stats.rate_limited) == (3, 2, 1)


def test_gives_up_after_max_attempts() -> None:
    slept: list[float] = []
    call = Flaky([ConnectionError()] * 10)
    with pytest.raises(ConnectionError):
        call_with_retries(call, classify, policy(slept, attempts=3), RetryStats())
    assert call.calls == 3 and len(slept) == 2


def test_does_not_retry_what_is_not_retryable() -> None:
    call = Flaky([ValueError("bad request")])
    with pytest.raises(ValueError, match="bad request"):
        call_with_retries(call, classify, policy([]), RetryStats())
    assert call.calls == 1
