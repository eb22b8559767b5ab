"""Attach pgwarden's observation to an engine: query log, slow queries, metrics, pool.

``instrument(engine)`` is the one call; it works on sync and async engines (for an
``AsyncEngine`` it attaches to ``engine.sync_engine``), is idempotent, and
``uninstrument(engine)`` removes everything it attached.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from pgwarden.observe.callsite import CallSite, find_call_site
from pgwarden.observe.fingerprints import fingerprint, is_read
from pgwarden.observe.nplusone import RELATIONSHIP_LOAD, current_watch, install_orm_listeners
from pgwarden.observe.nplusone import _current as _watch_var
from pgwarden.urls import redact_text

__all__ = [
    "Instrumentation",
    "instrument",
    "instrumentation",
    "on_slow_query",
    "remove_slow_query_hook",
    "uninstrument",
]

query_log = logging.getLogger("pgwarden.observe.query")
log = logging.getLogger("pgwarden.observe")
_STATEMENTS_LIMIT = 4096


@dataclass
class Instrumentation:
    """What is attached to one engine, and its options."""

    engine: Engine
    name: str = "default"
    slow_ms: float = 100.0
    explain_slow: bool = False
    log_parameters: bool = False
    metrics: Any = None  # pgwarden.observe.metrics.EngineMetrics, when enabled
    reports: bool = True  # slow statements go to pgwarden.observe.reports
    pool: Any = None  # pgwarden.observe.pool.PoolMonitor
    _originals: dict[str, Any] = field(default_factory=dict)
    _statements: dict[str, tuple[str, bool]] = field(default_factory=dict)
    _wrappers: dict[str, Any] = field(default_factory=dict)
    _detached: bool = False

    # SQLAlchemy's cursor events would do, but dispatching them costs about 10 µs per
    # statement here, more than all of pgwarden's own work; wrapping the dialect's three
    # execute methods on this engine's own dialect instance costs one call. They are
    # documented Dialect methods, and detach() puts the originals back.
    _METHODS = ("do_execute", "do_execute_no_params", "do_executemany")

    def attach(self) -> None:
        dialect = self.engine.dialect
        for name in self._METHODS:
            original = getattr(dialect, name)
            self._originals[name] = (original, name in vars(dialect))
            self._wrappers[name] = self._wrap(original, name)
            setattr(dialect, name, self._wrappers[name])

    def detach(self) -> None:
        dialect = self.engine.dialect
        self._detached = True  # a wrapper left in place (see below) now only passes through
        for name, (original, own) in self._originals.items():
            if vars(dialect).get(name) is not self._wrappers.get(name):
                continue  # another library wrapped ours since: leave its wrapper working
            if own:
                setattr(dialect, name, original)
            else:
                vars(dialect).pop(name, None)
        self._originals.clear()
        for part in (self.metrics, self.pool):
            if part is not None:
                part.close()

    def _wrap(self, original: Any, name: str) -> Any:
        # The common case (a statement that succeeded, not slow, DEBUG off) is handled
        # inline here: each extra Python call on this path shows in the benchmark.
        record = self._record
        statements = self._statements
        learn = self._learn
        watch_var = _watch_var
        watch_of = current_watch
        debug = query_log.isEnabledFor
        many = name == "do_executemany"
        no_params = name == "do_execute_no_params"
        # Options are read once, here: instrument() sets them all before attach().
        count = self.metrics.statement if self.metrics is not None else None
        slow_seconds = self.slow_ms / 1000.0

        def execute(cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
            if no_params:  # called as (cursor, statement, context)
                context, parameters = parameters, None
            started = perf_counter()
            try:
                if no_params:
                    original(cursor, statement, context)
                else:
                    original(cursor, statement, parameters, context)
            except BaseException as exc:
                if not self._detached:
                    try:
                        record(cursor, statement, parameters, context, many, started, exc)
                    except Exception:  # observing must never replace the real error
                        log.exception("pgwarden could not record a failed statement")
                raise
            if self._detached:
                return
            elapsed = perf_counter() - started
            known = statements.get(statement)
            if known is None:
                known = learn(statement)
            slow = elapsed >= slow_seconds
            if count is not None:
                count(known[0], elapsed, slow)
            watch = watch_var.get()
            if watch is None or watch.closed:  # the common case above costs one lookup
                watch = watch_of()
            if watch is not None:
                watch.statements += 1
                watch.db_seconds += elapsed
                if (
                    known[1]
                    and not many
                    and not (
                        context is not None and context.execution_options.get(RELATIONSHIP_LOAD)
                    )
                ):
                    watch.statement(known[0], statement)
            if slow or debug(logging.DEBUG):
                try:
                    self._log(cursor, statement, parameters, context, many, elapsed, known[0], None)
                except Exception:  # a failing log handler or hook must not fail the query
                    log.exception("pgwarden could not report a statement")

        execute.__name__ = name
        return execute

    # -- the hot path: keep it lean ------------------------------------------------

    def _learn(self, statement: str) -> tuple[str, bool]:
        if len(self._statements) >= _STATEMENTS_LIMIT:
            self._statements.clear()
        known = self._statements[statement] = (fingerprint(statement), is_read(statement))
        return known

    def _record(
        self,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        many: bool,
        started: float,
        error: BaseException | None,
    ) -> None:
        """Account for a statement that failed (the slow path: an error is rare)."""
        elapsed = perf_counter() - started
        known = self._statements.get(statement) or self._learn(statement)
        if self.metrics is not None:
            self.metrics.statement(known[0], elapsed, slow=elapsed * 1000.0 >= self.slow_ms)
        watch = current_watch()
        if watch is not None:
            watch.statements += 1
            watch.db_seconds += elapsed
        self._log(cursor, statement, parameters, context, many, elapsed, known[0], error)

    def _log(
        self,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        many: bool,
        elapsed: float,
        shape: str,
        error: BaseException | None,
    ) -> None:
        """Report a slow statement at WARNING, or any statement at DEBUG when enabled."""
        slow = elapsed * 1000.0 >= self.slow_ms
        if not slow and not query_log.isEnabledFor(logging.DEBUG):
            return
        site = find_call_site()
        where = site.location if site else "?"
        fields = self._fields(statement, parameters, cursor, elapsed, shape, site)
        if error is not None:
            fields["error"] = type(error).__name__
        if not slow:
            query_log.debug("query %.1f ms at %s", elapsed * 1000.0, where, extra=fields)
            return
        explain = self.explain_slow and error is None and not many and context is not None
        if explain and _is_plain_select(statement):
            fields["plan"] = _explain(context.root_connection, statement, parameters)
        outcome = f", failed with {type(error).__name__}" if error is not None else ""
        query_log.warning(
            "slow query %.1f ms (threshold %.0f ms%s) at %s: %s",
            elapsed * 1000.0,
            self.slow_ms,
            outcome,
            where,
            redact_text(" ".join(statement.split())[:300]),
            extra=fields,
        )
        for hook in list(_slow_hooks):
            try:
                hook(self, statement, elapsed, site)
            except Exception:
                log.exception("slow query hook %r failed", hook)

    # -- the rest ------------------------------------------------------------------

    def _fields(
        self,
        statement: str,
        parameters: Any,
        cursor: Any,
        elapsed: float,
        shape: str,
        site: CallSite | None,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "statement": redact_text(statement),
            "fingerprint": shape,
            "duration_ms": round(elapsed * 1000.0, 3),
            "rows": getattr(cursor, "rowcount", -1),
            "call_site": site.location if site else None,
            "engine": self.name,
        }
        if self.log_parameters:
            fields["parameters"] = redact_text(repr(_scrub(parameters)))
        return fields


_slow_hooks: list[Any] = []


def on_slow_query(hook: Any) -> None:
    """Call ``hook(instrumentation, statement, seconds, call_site)`` for each slow query."""
    if hook not in _slow_hooks:
        _slow_hooks.append(hook)


_SECRET_NAME = re.compile(r"pass|secret|token|key|credential|auth", re.IGNORECASE)


def _scrub(parameters: Any) -> Any:
    """Return ``parameters`` with the values of secret-looking names replaced."""
    if isinstance(parameters, dict):
        return {
            key: "***" if isinstance(key, str) and _SECRET_NAME.search(key) else value
            for key, value in parameters.items()
        }
    if isinstance(parameters, list | tuple) and parameters and isinstance(parameters[0], dict):
        return [_scrub(item) for item in parameters]
    return parameters


def remove_slow_query_hook(hook: Any) -> None:
    """Stop calling ``hook``; nothing happens if it was not registered."""
    if hook in _slow_hooks:
        _slow_hooks.remove(hook)


def _is_plain_select(statement: str) -> bool:
    # Only a bare SELECT: a WITH may hide a data-modifying CTE, and a write is never
    # explained (EXPLAIN ANALYZE would run it; plain EXPLAIN is pointless noise).
    text = statement.lstrip().upper()
    return text.startswith("SELECT") and " FOR UPDATE" not in text and " INTO " not in text


def _explain(conn: Any, statement: str, parameters: Any) -> str:
    raw = conn.connection.dbapi_connection
    savepoint = not getattr(raw, "autocommit", False)
    try:
        cursor = raw.cursor()
        try:
            if savepoint:
                cursor.execute("SAVEPOINT pgwarden_explain")
            cursor.execute("EXPLAIN " + statement, parameters)
            plan = "\n".join(str(row[0]) for row in cursor.fetchall())
            if savepoint:
                cursor.execute("RELEASE SAVEPOINT pgwarden_explain")
            return plan
        except Exception as exc:
            if savepoint:
                cursor.execute("ROLLBACK TO SAVEPOINT pgwarden_explain")
            return f"(EXPLAIN failed: {redact_text(str(exc)).splitlines()[0]})"
        finally:
            cursor.close()
    except Exception as exc:
        return f"(EXPLAIN failed: {type(exc).__name__})"


def _sync(engine: Engine | AsyncEngine) -> Engine:
    return engine.sync_engine if isinstance(engine, AsyncEngine) else engine


def instrumentation(engine: Engine | AsyncEngine) -> Instrumentation | None:
    """Return what :func:`instrument` attached to ``engine``, if anything."""
    found: Instrumentation | None = getattr(
        _sync(engine).dialect, "_pgwarden_instrumentation", None
    )
    return found


def instrument(
    engine: Engine | AsyncEngine,
    *,
    name: str | None = None,
    slow_ms: float = 100.0,
    explain_slow: bool = False,
    log_parameters: bool = False,
    metrics: bool | None = None,
    registry: Any = None,
    leak_seconds: float | None = 30.0,
    sentry: bool = True,
    reports: bool = True,
    store_reports: bool = False,
) -> Instrumentation:
    """Observe ``engine``: log its statements, warn on slow ones, feed metrics, watch the pool.

    - every statement is logged at DEBUG on ``pgwarden.observe.query`` with its
      fingerprint, duration, rows and application call site; parameters only when
      ``log_parameters`` (and then with secrets scrubbed);
    - a statement taking ``slow_ms`` or more is a WARNING with its call site, and with
      ``explain_slow`` a plain SELECT gets its plan (plain EXPLAIN, never ANALYZE);
    - Prometheus metrics go to ``registry`` (default: the global one) when
      prometheus-client is installed (the metrics extra); ``metrics=True`` insists,
      with :class:`~pgwarden.errors.NotEnabled` if it is not, ``metrics=False`` never;
    - a connection held ``leak_seconds`` or more is logged with the stack that took it;
    - with ``sentry`` and sentry-sdk installed, slow queries and N+1s become Sentry
      breadcrumbs and spans;
    - N+1s and slow statements are folded into reports, one per pattern, that the admin
      API serves (:mod:`pgwarden.observe.reports`), unless ``reports`` is False (the
      API's own engine: its slow statements are not the application's); with
      ``store_reports`` a background thread also stores them in the engine's database
      every few seconds, for a ``pgwarden serve`` running apart from the application.

    Calling it again on the same engine returns the existing instrumentation unchanged;
    :func:`uninstrument` first to change its options.
    """
    target = _sync(engine)
    existing = instrumentation(target)
    if existing is not None:
        return existing
    install_orm_listeners()
    from pgwarden.observe.reports import collect_reports

    collect_reports()
    if store_reports:
        from pgwarden.observe.report_store import store_reports as start_store

        start_store(target)
    if sentry:
        from pgwarden.observe.sentry import install_sentry

        install_sentry()  # does nothing unless sentry-sdk is installed
    label = name or target.url.database or "default"
    result = Instrumentation(
        engine=target,
        name=label,
        slow_ms=slow_ms,
        explain_slow=explain_slow,
        log_parameters=log_parameters,
        reports=reports,
    )
    if metrics is None:
        metrics = importlib.util.find_spec("prometheus_client") is not None
    if metrics:
        from pgwarden.observe.metrics import EngineMetrics

        result.metrics = EngineMetrics(target, name=label, registry=registry)
        result.name = result.metrics.name  # the same label in logs and metrics
    from pgwarden.observe.pool import PoolMonitor

    # A thread checks for leaks now and then, so an idle app still reports a leak.
    interval = min(leak_seconds, 10.0) if leak_seconds else None
    result.pool = PoolMonitor(target, leak_seconds=leak_seconds, check_interval=interval)
    result.attach()
    # Kept on the dialect, which the engine and its execution_options() copies share:
    # instrumenting a copy finds this one, and no module-level table keeps an engine
    # alive after the application drops it.
    target.dialect._pgwarden_instrumentation = result  # type: ignore[attr-defined]
    return result


def uninstrument(engine: Engine | AsyncEngine) -> bool:
    """Remove what :func:`instrument` attached to ``engine``; return whether there was any."""
    dialect = _sync(engine).dialect
    found: Instrumentation | None = vars(dialect).pop("_pgwarden_instrumentation", None)
    if found is None:
        return False
    found.detach()
    return True
