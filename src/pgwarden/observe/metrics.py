"""Publish an engine's statements, slow queries, N+1s and pool as Prometheus metrics.

Metric names are stable (see ``docs/observe-metrics.md``). Labels hold the engine's
name and query fingerprints only: never a URL, a password or a statement's text.
Each registry gets one set of metric objects, shared by every engine published to it;
an engine's pool is read when the registry is scraped, so a checkout costs nothing here.
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from pgwarden._extras import importing_extra
from pgwarden.observe.nplusone import NPlusOneFinding, on_findings, remove_findings_hook
from pgwarden.observe.pool import pool_status
from pgwarden.urls import redact_text

with importing_extra(
    "metrics", "Prometheus metrics need {package}", {"prometheus_client": "prometheus-client"}
):
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector

__all__ = ["BUCKETS", "OTHER", "EngineMetrics", "metrics_text"]

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds, in seconds, of the statement duration histogram."""

OTHER = "other"
"""The fingerprint label of statements beyond an engine's ``max_fingerprints`` shapes."""

_FINDING_KINDS = ("lazy_load", "repeated_statement")
_lock = threading.RLock()  # re-entrant: a finalizer may run while it is held
_families: dict[CollectorRegistry, _Family] = {}


class EngineMetrics:
    """Publish one engine's metrics to ``registry`` (default: prometheus_client's global one).

    ``name`` is the ``engine`` label; when another engine of the registry has it
    already, ``-2``, ``-3``... is appended, so two engines never share a series.
    Each statement shape gets its own ``fingerprint`` label for the first
    ``max_fingerprints`` shapes seen; later ones share the label ``other``, which keeps
    the number of series bounded whatever the application sends.
    """

    def __init__(
        self,
        engine: Engine | AsyncEngine,
        *,
        name: str,
        registry: CollectorRegistry | None = None,
        max_fingerprints: int = 200,
    ) -> None:
        target = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        # Held weakly, and the series dropped when the engine goes: the registry is
        # global and must not keep an application's discarded engines alive.
        self._engine = weakref.ref(target)
        self.registry = registry if registry is not None else REGISTRY
        self.max_fingerprints = max_fingerprints
        self.closed = False
        self._family, self.name = _Family.join(self.registry, self, _label(name))
        self._slow = self._family.slow.labels(engine=self.name)
        # Durations are counted without a lock: each thread adds to its own slots (a list
        # of bucket counts, then the +Inf count, then the sum), merged when scraped. A
        # prometheus_client Histogram takes two locks per observation, which on the
        # per-statement path costs more than the rest of pgwarden's work together.
        self._local = threading.local()
        # each live thread's slots by label; an ended thread's are folded into _retired
        self._threads: list[tuple[weakref.ref[threading.Thread], dict[str, list[float]]]] = []
        self._retired: dict[str, list[float]] = {}
        self._labels: dict[str, str] = {}  # fingerprint -> label (itself, or OTHER)
        weakref.finalize(target, self.close)

    @property
    def engine(self) -> Engine | None:
        """Return the engine published, or None once it has been garbage-collected."""
        return self._engine()

    def statement(self, fingerprint: str, seconds: float, slow: bool = False) -> None:
        """Count one statement of shape ``fingerprint`` that took ``seconds``."""
        try:
            slots = self._local.slots
        except AttributeError:
            slots = self._thread_slots()
        slot = slots.get(fingerprint)
        if slot is None:
            slot = self._slot(slots, fingerprint)
        slot[bisect_left(BUCKETS, seconds)] += 1
        slot[-1] += seconds
        if slow:
            self._slow.inc()

    def _thread_slots(self) -> dict[str, list[float]]:
        slots: dict[str, list[float]] = {}
        by_label: dict[str, list[float]] = {}
        self._local.slots = slots
        self._local.by_label = by_label
        with _lock:
            self._threads.append((weakref.ref(threading.current_thread()), by_label))
        return slots

    def _slot(self, slots: dict[str, list[float]], fingerprint: str) -> list[float]:
        with _lock:
            label = self._labels.get(fingerprint)
            if label is None:
                known = len(self._labels) - list(self._labels.values()).count(OTHER)
                label = fingerprint if known < self.max_fingerprints else OTHER
                if label != OTHER or len(self._labels) < 4 * self.max_fingerprints:
                    self._labels[fingerprint] = label
        by_label: dict[str, list[float]] = self._local.by_label
        slot = by_label.get(label)
        if slot is None:
            slot = by_label[label] = [0.0] * (len(BUCKETS) + 2)
        if label != OTHER or len(slots) < 4 * self.max_fingerprints:
            slots[fingerprint] = slot  # bounded: shapes past the cap share OTHER's slot
        return slot

    def durations(self) -> dict[str, list[float]]:
        """Return every label's bucket counts, +Inf count and sum, summed over threads."""
        with _lock:
            alive = []
            for thread, by_label in self._threads:
                found = thread()
                if found is not None and found.is_alive():
                    alive.append((thread, by_label))
                else:  # a pool's retired worker: keep its counts, not its slots
                    _add(self._retired, by_label)
            self._threads = alive
            merged: dict[str, list[float]] = {}
            _add(merged, self._retired)
            for _, by_label in alive:
                _add(merged, by_label)
        return merged

    def fingerprints(self) -> list[str]:
        """Return the fingerprint label values this engine has published."""
        return list(self.durations())

    def close(self) -> None:
        """Remove this engine's series; the last engine of a registry unregisters it all.

        Idempotent.
        """
        if self.closed:
            return
        self.closed = True
        self._family.slow.remove(self.name)
        self._family.leave(self)


def _add(into: dict[str, list[float]], slots: dict[str, list[float]]) -> None:
    for label, slot in list(slots.items()):
        total = into.setdefault(label, [0.0] * len(slot))
        for index, value in enumerate(slot):
            total[index] += value


def _label(name: str) -> str:
    # A name is meant to be a short word ("primary", the database name); a URL passed
    # by mistake is cut down to its database name rather than published.
    if "://" in name:
        try:
            return make_url(name).database or "default"
        except Exception:
            return "default"
    return redact_text(name)  # a libpq key=value string has no :// and no @


class _Family:
    """The metric objects of one registry and the engines published to it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.engines: dict[str, EngineMetrics] = {}
        self.slow = Counter(
            "pgwarden_db_slow_statements",
            "Statements that took the engine's slow_ms or more.",
            ["engine"],
            registry=registry,
        )
        self.nplusone = Counter(
            "pgwarden_db_nplusone",
            "N+1 patterns reported by units of work, by kind.",
            ["kind"],
            registry=registry,
        )
        for kind in _FINDING_KINDS:
            self.nplusone.labels(kind=kind)
        self.collector = _EngineCollector(self)
        registry.register(self.collector)
        on_findings(self.findings)

    @classmethod
    def join(
        cls, registry: CollectorRegistry, metrics: EngineMetrics, name: str
    ) -> tuple[_Family, str]:
        """Return the registry's family, made on first use, and a label free in it."""
        with _lock:
            family = _families.get(registry)
            if family is None:
                family = _families[registry] = cls(registry)
            label, number = name, 1
            while label in family.engines:
                number += 1
                label = f"{name}-{number}"
            family.engines[label] = metrics
            return family, label

    def leave(self, metrics: EngineMetrics) -> None:
        with _lock:
            self.engines.pop(metrics.name, None)
            if self.engines:
                return
            del _families[self.registry]
            remove_findings_hook(self.findings)
            for collector in (self.slow, self.nplusone, self.collector):
                self.registry.unregister(collector)

    def findings(self, findings: list[NPlusOneFinding]) -> None:
        for finding in findings:
            self.nplusone.labels(kind=finding.kind).inc()


class _EngineCollector(Collector):
    """Read, at scrape time, each engine's statement total and pool figures."""

    def __init__(self, family: _Family) -> None:
        self.family = family

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        durations, total, size, checked_out, overflow, waits, waited, held = families
        with _lock:
            engines = list(self.family.engines.items())
        bounds = [repr(float(bound)) for bound in BUCKETS] + ["+Inf"]  # as Prometheus writes them
        for name, metrics in engines:
            count = 0.0
            for label, slot in metrics.durations().items():
                cumulative, buckets = 0.0, []
                for bound, value in zip(bounds, slot[:-1], strict=True):
                    cumulative += value
                    buckets.append((bound, cumulative))
                durations.add_metric([name, label], buckets=buckets, sum_value=slot[-1])
                count += cumulative
            total.add_metric([name], count)
            engine = metrics.engine
            if engine is None:
                continue
            status = pool_status(engine)
            size.add_metric([name], status.size)
            checked_out.add_metric([name], status.checked_out)
            overflow.add_metric([name], status.overflow)
            waits.add_metric([name], status.waits)
            waited.add_metric([name], status.wait_seconds_total)
            held.add_metric([name], status.longest_held_seconds)
        return families

    @staticmethod
    def _families() -> tuple[Any, ...]:
        labels = ["engine"]
        return (
            HistogramMetricFamily(
                "pgwarden_db_statement_duration_seconds",
                "Time a statement took, by engine and query fingerprint.",
                labels=["engine", "fingerprint"],
            ),
            CounterMetricFamily(
                "pgwarden_db_statements", "Statements run, by engine.", labels=labels
            ),
            GaugeMetricFamily(
                "pgwarden_db_pool_size", "Connections the pool keeps open.", labels=labels
            ),
            GaugeMetricFamily(
                "pgwarden_db_pool_checked_out",
                "Connections checked out of the pool now.",
                labels=labels,
            ),
            GaugeMetricFamily(
                "pgwarden_db_pool_overflow",
                "Connections open beyond the pool size now.",
                labels=labels,
            ),
            CounterMetricFamily(
                "pgwarden_db_pool_waits",
                "Checkouts that found the pool at its limit and waited.",
                labels=labels,
            ),
            CounterMetricFamily(
                "pgwarden_db_pool_wait_seconds",
                "Time checkouts spent waiting for a connection.",
                labels=labels,
            ),
            GaugeMetricFamily(
                "pgwarden_db_pool_longest_held_seconds",
                "How long the longest-held checked-out connection has been held.",
                labels=labels,
            ),
        )


def metrics_text(registry: CollectorRegistry | None = None) -> bytes:
    """Return the Prometheus text exposition of ``registry`` (default: the global one)."""
    return generate_latest(registry if registry is not None else REGISTRY)
