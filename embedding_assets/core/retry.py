"""Bounded retries with backoff, kept apart from the calls they wrap."""

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter for the ``attempt``-th retry (1-based)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


@dataclass
class RetryStats:
    """What retrying cost, reported in materialization metadata."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    waited_seconds: float = 0.0  # backing off after errors
    paced_seconds: float = 0.0  # holding back to stay under a tokens-per-minute limit

    def since(self, earlier: "RetryStats") -> "RetryStats":
        """What happened after ``earlier`` (a copy taken with ``dataclasses.replace``)."""
        return RetryStats(*(getattr(self, f) - getattr(earlier, f) for f in self.__dataclass_fields__))


class Retryable(Exception):
    """Raised by a classifier to mark an error worth retrying, with the server's advised delay if any."""

    def __init__(self, cause: Exception, *, delay: float | None = None, rate_limited: bool = False) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.delay = delay
        self.rate_limited = rate_limited


def call_with_retries(
    call: Callable[[], T], classify: Callable[[Exception], Retryable | None], policy: RetryPolicy, stats: RetryStats
) -> T:
    """Run ``call``; retry errors that ``classify`` marks retryable, honouring their advised delay.

    Raises the last error once ``policy.max_attempts`` calls have failed.
    """
    for attempt in range(1, policy.max_attempts + 1):
        stats.requests += 1
        try:
            return call()
        except Exception as err:
            retryable = classify(err)
            if retryable is None or attempt == policy.max_attempts:
                raise
            stats.retries += 1
            stats.rate_limited += retryable.rate_limited
            delay = retryable.delay if retryable.delay is not None else policy.backoff(attempt)
            delay = min(delay, policy.max_delay)
            stats.waited_seconds += delay
            policy.sleep(delay)
    raise AssertionError("unreachable")
