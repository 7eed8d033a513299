"""A client-side request rate limit: a token bucket, as client-go's ``--kube-api-qps/-burst``.

Why on the client when the API server has priority and fairness: APF protects the
server by rejecting (429) what it cannot take, and every rejection is a wasted round trip
and a retry. A bucket on our side keeps a cold start of thousands of keysets, or a
rotation burst, at a rate the cluster's owner chose, before anything is rejected.

``qps`` tokens arrive per second up to ``burst`` held; each request takes one, and a
request that finds none waits for its turn. Turns are handed out in call order
(a reservation, like Go's ``rate.Limiter.Reserve``), so no request starves. ``qps <= 0``
turns the limit off.
"""

import asyncio
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self, qps: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if qps > 0 and burst < 1:
            raise ValueError("the burst must be at least 1")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self.waited = 0.0
        """Seconds requests spent waiting for a token, in total (a metric and a test hook)."""

    def reserve(self) -> float:
        """Take a token now; return how long to wait before using it (0: go ahead)."""
        if self.qps <= 0:
            return 0.0
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.qps

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            self.waited += delay
            await asyncio.sleep(delay)
