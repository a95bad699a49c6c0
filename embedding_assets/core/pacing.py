"""Tokens-per-minute pacing inside a run, so a backfill stays under a provider's rate limit."""

import time
from collections.abc import Callable


class TokenBucket:
    """Allows ``per_minute`` tokens a minute with a burst of one minute's worth.

    A request larger than the whole bucket waits for a full bucket and then goes into debt,
    which later requests pay back by waiting.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("tokens per minute must be positive")
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.available = float(per_minute)
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self.waited_seconds = 0.0

    def acquire(self, tokens: int) -> float:
        """Block until ``tokens`` may be sent; returns the seconds waited."""
        self._refill()
        needed = min(float(tokens), self.capacity)
        wait = max(0.0, (needed - self.available) / self.rate)
        if wait:
            self._sleep(wait)
            self.waited_seconds += wait
            self._refill()
        self.available -= tokens
        return wait

    def _refill(self) -> None:
        now = self._clock()
        self.available = min(self.capacity, self.available + (now - self._last) * self.rate)
        self._last = now
