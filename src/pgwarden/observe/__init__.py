"""See what the database does for the application: statements, slow queries, N+1s, pool.

    from pgwarden import observe

    observe.instrument(engine)            # sync or async engine
    with observe.watch(mode="raise"):     # a unit of work: a request, a test, a job
        ...

The ASGI middleware (:mod:`pgwarden.observe.middleware`) watches each request (and, if
asked, adds a ``Server-Timing`` header); the pytest plugin watches each test
(``--pgwarden-nplusone=raise``).
"""

from __future__ import annotations

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
from pgwarden.observe.metrics import EngineMetrics, metrics_text
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
from pgwarden.observe.sentry import install_sentry

__all__ = [
    "CallSite",
    "EngineMetrics",
    "HeldConnection",
    "Instrumentation",
    "NPlusOneDetected",
    "NPlusOneFinding",
    "NPlusOneWarning",
    "ObserveMiddleware",
    "PoolMonitor",
    "PoolStatus",
    "Watch",
    "add_library_paths",
    "current_watch",
    "find_call_site",
    "fingerprint",
    "install_sentry",
    "instrument",
    "instrumentation",
    "metrics_text",
    "normalize",
    "on_findings",
    "on_slow_query",
    "pool_status",
    "remove_findings_hook",
    "remove_slow_query_hook",
    "suggested_fix",
    "uninstrument",
    "watch",
]
