"""Count what the cache does: hits, misses, latency, invalidations, bytes, errors."""

from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass, field

__all__ = ["LATENCY_BUCKETS", "CacheStats", "Counters"]

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)
"""Upper bounds, in seconds, of the lookup latency histogram."""

_NAMES = (
    "hits",
    "stale_hits",
    "misses",
    "fills",
    "bypasses",
    "invalidations",
    "errors",
    "redis_skipped",
    "lock_waits",
    "bytes_read",
    "bytes_written",
)


@dataclass(frozen=True)
class CacheStats:
    """A snapshot of a cache's counters since it was made.

    ``hits`` are fresh entries served, ``stale_hits`` entries past their TTL served while
    another process refreshes them, ``misses`` lookups that went to the database,
    ``bypasses`` reads that skipped the cache (their transaction wrote a table they read,
    an isolation level above READ COMMITTED, or Redis away), ``errors`` failed Redis
    calls, ``redis_skipped`` calls not tried during an outage's back-off.
    """

    hits: int = 0
    stale_hits: int = 0
    misses: int = 0
    fills: int = 0
    bypasses: int = 0
    invalidations: int = 0
    errors: int = 0
    redis_skipped: int = 0
    lock_waits: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    lookup_seconds: float = 0.0
    lookup_buckets: tuple[int, ...] = field(default=(0,) * (len(LATENCY_BUCKETS) + 1))

    @property
    def hit_rate(self) -> float:
        """Return the share of cacheable reads answered from Redis (0 when none yet)."""
        served = self.hits + self.stale_hits
        total = served + self.misses
        return served / total if total else 0.0


class Counters:
    """Keep the live counters behind a :class:`CacheStats` snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(_NAMES, 0)
        self._seconds = 0.0
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)

    def add(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name``."""
        with self._lock:
            self._values[name] += amount

    def observe(self, seconds: float) -> None:
        """Record one lookup's duration."""
        with self._lock:
            self._seconds += seconds
            self._buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def snapshot(self) -> CacheStats:
        """Return the counters as they are now."""
        with self._lock:
            return CacheStats(
                **self._values,
                lookup_seconds=self._seconds,
                lookup_buckets=tuple(self._buckets),
            )
