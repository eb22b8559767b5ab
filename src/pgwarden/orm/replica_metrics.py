"""Publish a :class:`~pgwarden.orm.replicas.ReplicaSet`'s routing as Prometheus metrics.

    publish_replica_metrics(replicas, name="app")

Counters of routed statements and skipped replicas, and per replica whether it is
usable and its lag as last measured (scraping never asks a replica anything). Labels
are the set's ``name`` and each replica's host and port: never a URL or a password.
"""

from __future__ import annotations

from collections.abc import Iterable

from pgwarden._extras import importing_extra
from pgwarden.orm.replicas import ReplicaSet

with importing_extra(
    "metrics", "Prometheus metrics need {package}", {"prometheus_client": "prometheus-client"}
):
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector

__all__ = ["ReplicaMetrics", "publish_replica_metrics"]

_COUNTERS = {
    "to_primary": ("pgwarden_replica_routed_primary", "Statements routed to the primary."),
    "to_replica": ("pgwarden_replica_routed_replica", "Statements routed to a replica."),
    "writes": ("pgwarden_replica_writes", "Writes seen (each sent to the primary)."),
    "fallbacks": (
        "pgwarden_replica_fallbacks",
        "Transactions whose reads went to the primary because no replica was usable.",
    ),
    "skipped_lag": ("pgwarden_replica_skipped_lag", "Replicas skipped for lag."),
    "skipped_down": ("pgwarden_replica_skipped_down", "Replicas skipped as unreachable."),
    "skipped_behind": (
        "pgwarden_replica_skipped_behind",
        "Replicas skipped as not yet past the unit's last write.",
    ),
    "replica_failures": ("pgwarden_replica_failures", "Failures to reach a replica."),
}


class ReplicaMetrics(Collector):
    """Read ``replicas``' counts and last known states when the registry is scraped."""

    def __init__(self, replicas: ReplicaSet, *, name: str) -> None:
        self.replicas = replicas
        self.name = name

    def collect(self) -> Iterable[Metric]:
        """Yield the counters and the per-replica gauges."""
        stats = self.replicas.stats()
        for field, (metric, text) in _COUNTERS.items():
            family = CounterMetricFamily(metric, text, labels=["set"])
            family.add_metric([self.name], getattr(stats, field))
            yield family
        usable = GaugeMetricFamily(
            "pgwarden_replica_usable",
            "1 if the replica may serve reads.",
            labels=["set", "replica"],
        )
        lag = GaugeMetricFamily(
            "pgwarden_replica_lag_seconds",
            "The replica's lag as last measured.",
            labels=["set", "replica"],
        )
        statuses = self.replicas.status(refresh=False)
        for engine, status in zip(self.replicas.replicas, statuses, strict=True):
            label = [self.name, f"{engine.url.host}:{engine.url.port or 5432}"]
            usable.add_metric(label, 1.0 if status.usable else 0.0)
            if status.lag_seconds is not None:
                lag.add_metric(label, status.lag_seconds)
        yield usable
        yield lag


def publish_replica_metrics(
    replicas: ReplicaSet, *, name: str = "default", registry: CollectorRegistry | None = None
) -> ReplicaMetrics:
    """Register ``replicas``' metrics in ``registry`` (prometheus_client's global one).

    Unregister with ``registry.unregister(collector)`` when the set is disposed of.
    """
    collector = ReplicaMetrics(replicas, name=name)
    (registry if registry is not None else REGISTRY).register(collector)
    return collector
