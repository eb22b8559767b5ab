"""See what the database does for the application: statements, slow queries, N+1s, pool.

    from pgwarden import observe

    observe.instrument(engine)            # sync or async engine
    with observe.watch(mode="raise"):     # a unit of work: a request, a test, a job
        ...

The ASGI middleware (:mod:`pgwarden.observe.middleware`) watches each request (and, if
asked, adds a ``Server-Timing`` header); the pytest plugin watches each test
(``--pgwarden-nplusone=raise``). Prometheus metrics (:class:`EngineMetrics`,
``instrument(engine, metrics=True)``) need the metrics extra: ``pip install 'pgwarden[metrics]'``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pgwarden.observe.callsite import CallSite, add_library_paths, find_call_site
from pgwarden.observe.errors import NPlusOneDetected
from pgwarden.observe.fingerprints import fingerprint, normalize
from pgwarden.observe.instrument import (
    Instrumentation,
    instrument,
    instrumentation,
    on_slow_query,
    remove_slow_query_hook,
    uninstrument,
)
from pgwarden.observe.middleware import ObserveMiddleware
from pgwarden.observe.nplusone import (
    NPlusOneFinding,
    NPlusOneWarning,
    Watch,
    current_watch,
    on_findings,
    remove_findings_hook,
    suggested_fix,
    watch,
)
from pgwarden.observe.pool import HeldConnection, PoolMonitor, PoolStatus, pool_status
from pgwarden.observe.reports import (
    NPlusOneReport,
    SlowStatementReport,
    collect_reports,
    nplusone_reports,
    slow_statement_reports,
)
from pgwarden.observe.sentry import install_sentry

if TYPE_CHECKING:
    from pgwarden.observe.metrics import EngineMetrics, metrics_text


def __getattr__(name: str) -> Any:
    # Imported on use, so observing works without the metrics extra (prometheus-client).
    if name in ("EngineMetrics", "metrics_text"):
        return getattr(importlib.import_module("pgwarden.observe.metrics"), name)
    raise AttributeError(f"module 'pgwarden.observe' has no attribute {name!r}")


__all__ = [
    "CallSite",
    "EngineMetrics",
    "HeldConnection",
    "Instrumentation",
    "NPlusOneDetected",
    "NPlusOneFinding",
    "NPlusOneReport",
    "NPlusOneWarning",
    "ObserveMiddleware",
    "PoolMonitor",
    "PoolStatus",
    "SlowStatementReport",
    "Watch",
    "add_library_paths",
    "collect_reports",
    "current_watch",
    "find_call_site",
    "fingerprint",
    "install_sentry",
    "instrument",
    "instrumentation",
    "metrics_text",
    "normalize",
    "nplusone_reports",
    "on_findings",
    "on_slow_query",
    "pool_status",
    "remove_findings_hook",
    "remove_slow_query_hook",
    "slow_statement_reports",
    "suggested_fix",
    "uninstrument",
    "watch",
]
