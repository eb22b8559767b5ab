"""Publish a query cache's counters as Prometheus metrics (the ``metrics`` extra)."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import accumulate
from typing import TYPE_CHECKING

from pgwarden._extras import importing_extra

with importing_extra(
    "metrics", "Prometheus metrics need {package}", {"prometheus_client": "prometheus-client"}
):
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
    from prometheus_client.registry import Collector

from pgwarden.cache.stats import LATENCY_BUCKETS

if TYPE_CHECKING:
    from pgwarden.cache.query_cache import QueryCache

__all__ = ["publish_metrics"]

_COUNTERS = {
    "hits": "Reads answered by a fresh entry.",
    "stale_hits": "Reads answered by an aged entry while another caller refreshed it.",
    "misses": "Reads that went to the database and may have stored an entry.",
    "bypasses": "Reads that skipped the cache (own writes, isolation, Redis away).",
    "invalidations": "Generations bumped: tables, tags and the epoch.",
    "errors": "Redis calls that failed.",
    "bytes_read": "Bytes of entries read from Redis.",
    "bytes_written": "Bytes of entries written to Redis.",
}


class _CacheCollector(Collector):
    def __init__(self, cache: QueryCache, name: str) -> None:
        self.cache = cache
        self.name = name

    def collect(self) -> Iterable[Metric]:
        stats = self.cache.stats()
        for field, doc in _COUNTERS.items():
            family = CounterMetricFamily(f"pgwarden_cache_{field}", doc, labels=["cache"])
            family.add_metric([self.name], getattr(stats, field))
            yield family
        latency = HistogramMetricFamily(
            "pgwarden_cache_lookup_seconds", "Time to look an entry up.", labels=["cache"]
        )
        bounds = [str(b) for b in LATENCY_BUCKETS] + ["+Inf"]
        cumulative = list(accumulate(stats.lookup_buckets))
        latency.add_metric(
            [self.name], list(zip(bounds, cumulative, strict=True)), stats.lookup_seconds
        )
        yield latency


def publish_metrics(
    cache: QueryCache, *, name: str = "default", registry: CollectorRegistry | None = None
) -> None:
    """Publish ``cache``'s counters to ``registry`` (default: prometheus_client's global one)."""
    (registry if registry is not None else REGISTRY).register(_CacheCollector(cache, name))
