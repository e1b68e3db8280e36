"""A latency histogram cheap enough for every request: one bisect and two additions, no lock
(each worker process has its own and one event loop writes it). The metrics layer sums the
processes' copies at scrape time (gateway/observability/metrics.py)."""

from __future__ import annotations

from bisect import bisect_left

# web latencies, 1 ms to 60 s (the last bucket, +Inf, takes the rest)
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                      1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# a wait for a PHP thread is mostly far below a millisecond: finer at the bottom
QUEUE_BUCKETS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, *LATENCY_BUCKETS)


class Histogram:
    """Counts per bucket, not cumulative (Prometheus' `le` buckets are made at exposition)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # `le` is inclusive: a value equal to a bound belongs to that bound's bucket
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
