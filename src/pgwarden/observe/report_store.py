"""Store an application's N+1 and slow-statement reports in its database, off the request path.

``instrument(engine, store_reports=True)`` (or :func:`store_reports`) starts one
background thread per database URL. Every ``interval_s`` it takes the records collected
since its last pass and adds them, in one transaction, to two catalogue tables of that
database: ``pgwarden.observed_nplusone`` and ``pgwarden.observed_statement``. Counts add
up, so several processes of one application (workers, replicas of a service) share one
report; a slow statement keeps its ``SAMPLES`` most recent durations. A request never
waits for a write; a write that fails (the database down, no right to create the
schema) is logged and its records kept for the next pass, bounded in memory.

The thread writes through an engine of its own (one connection, not instrumented), so
its statements are never reported themselves. ``pgwarden serve`` on the same database
reads the tables (:func:`~pgwarden.observe.reports.nplusone_reports` with a connection).
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION
from sqlalchemy.engine import URL, Connection, Engine

from pgwarden.observe.reports import (
    SAMPLES,
    NPlusOneReport,
    SlowStatementReport,
    _pending,
    collect_reports,
    percentile,
)
from pgwarden.urls import redact_url

__all__ = ["ReportStore", "store_reports", "stored_nplusone", "stored_statements", "write_reports"]

log = logging.getLogger("pgwarden.observe.reports")

# Serialized by a transaction lock: two processes creating the tables at once would
# otherwise collide on the catalog, IF NOT EXISTS notwithstanding.
_DDL = (
    "SELECT pg_advisory_xact_lock(hashtext('pgwarden.observe'))",
    "CREATE SCHEMA IF NOT EXISTS pgwarden",
    """
CREATE TABLE IF NOT EXISTS pgwarden.observed_nplusone (
  kind text NOT NULL,
  file text NOT NULL,
  line integer NOT NULL,
  subject text NOT NULL,
  function text,
  relationship text,
  fix text,
  parent_query text,
  statement text,
  count bigint NOT NULL,
  queries bigint NOT NULL,
  first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL,
  PRIMARY KEY (kind, file, line, subject)
)
""",
    """
CREATE TABLE IF NOT EXISTS pgwarden.observed_statement (
  fingerprint text PRIMARY KEY,
  statement text NOT NULL,
  location text,
  count bigint NOT NULL,
  max_ms double precision NOT NULL,
  samples_ms double precision[] NOT NULL,
  first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL
)
""",
)

_HAS_TABLES = text(
    "SELECT to_regclass('pgwarden.observed_nplusone') IS NOT NULL"
    " AND to_regclass('pgwarden.observed_statement') IS NOT NULL"
)

_UPSERT_NPLUSONE = text(
    """
INSERT INTO pgwarden.observed_nplusone AS o
  (kind, file, line, subject, function, relationship, fix, parent_query, statement,
   count, queries, first_seen, last_seen)
VALUES (:kind, :file, :line, :subject, :function, :relationship, :fix, :parent_query,
        :statement, :count, :queries, :first_seen, :last_seen)
ON CONFLICT (kind, file, line, subject) DO UPDATE
SET function = EXCLUDED.function,
    fix = EXCLUDED.fix,
    parent_query = EXCLUDED.parent_query,
    count = o.count + EXCLUDED.count,
    queries = o.queries + EXCLUDED.queries,
    first_seen = LEAST(o.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(o.last_seen, EXCLUDED.last_seen)
"""
)

_UPSERT_STATEMENT = text(
    """
INSERT INTO pgwarden.observed_statement AS o
  (fingerprint, statement, location, count, max_ms, samples_ms, first_seen, last_seen)
VALUES (:fingerprint, :statement, :location, :count, :max_ms, :samples_ms, :first_seen,
        :last_seen)
ON CONFLICT (fingerprint) DO UPDATE
SET location = COALESCE(EXCLUDED.location, o.location),
    count = o.count + EXCLUDED.count,
    max_ms = GREATEST(o.max_ms, EXCLUDED.max_ms),
    samples_ms = (o.samples_ms || EXCLUDED.samples_ms)[
      GREATEST(1, cardinality(o.samples_ms || EXCLUDED.samples_ms) - :keep + 1):],
    first_seen = LEAST(o.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(o.last_seen, EXCLUDED.last_seen)
"""
).bindparams(bindparam("samples_ms", type_=ARRAY(DOUBLE_PRECISION)))

_NPLUSONE = text(
    """
SELECT kind, file, line, function, relationship, fix, parent_query, statement,
       count, queries, first_seen, last_seen
FROM pgwarden.observed_nplusone
ORDER BY last_seen DESC
LIMIT :limit
"""
)

_STATEMENTS = text(
    """
SELECT fingerprint, statement, location, count, max_ms, samples_ms, first_seen, last_seen
FROM pgwarden.observed_statement
ORDER BY last_seen DESC
LIMIT :limit
"""
)

_READ_LIMIT = 10_000


def write_reports(
    conn: Connection,
    nplusone: list[NPlusOneReport],
    slow: list[SlowStatementReport],
) -> None:
    """Add ``nplusone`` and ``slow`` to the catalogue tables (created the first time).

    Runs in the caller's transaction.
    """
    if not (nplusone or slow):
        return
    if not conn.execute(_HAS_TABLES).scalar_one():
        for statement in _DDL:
            conn.execute(text(statement))
    if nplusone:
        conn.execute(
            _UPSERT_NPLUSONE,
            [
                {
                    "kind": r.kind, "file": r.file, "line": r.line, "subject": r.subject,
                    "function": r.function, "relationship": r.relationship, "fix": r.fix,
                    "parent_query": r.parent_query, "statement": r.statement,
                    "count": r.count, "queries": r.queries,
                    "first_seen": r.first_seen, "last_seen": r.last_seen,
                }
                for r in nplusone
            ],
        )  # fmt: skip
    if slow:
        conn.execute(
            _UPSERT_STATEMENT,
            [
                {
                    "fingerprint": r.fingerprint, "statement": r.statement,
                    "location": r.location, "count": r.count, "max_ms": r.max_ms,
                    "samples_ms": list(r.samples_ms), "first_seen": r.first_seen,
                    "last_seen": r.last_seen, "keep": SAMPLES,
                }
                for r in slow
            ],
        )  # fmt: skip


def stored_nplusone(conn: Connection) -> list[NPlusOneReport]:
    """Return the N+1 records stored in the database, most recently seen first."""
    if not conn.execute(_HAS_TABLES).scalar_one():
        return []
    return [
        NPlusOneReport(**row._mapping) for row in conn.execute(_NPLUSONE, {"limit": _READ_LIMIT})
    ]


def stored_statements(conn: Connection) -> list[SlowStatementReport]:
    """Return the slow-statement records stored in the database, most recently seen first."""
    if not conn.execute(_HAS_TABLES).scalar_one():
        return []
    found = []
    for row in conn.execute(_STATEMENTS, {"limit": _READ_LIMIT}):
        values = dict(row._mapping)
        samples = tuple(values.pop("samples_ms") or ())
        found.append(
            SlowStatementReport(
                **values,
                p50_ms=percentile(samples, 0.5),
                p95_ms=percentile(samples, 0.95),
                samples_ms=samples,
            )
        )
    return found


class ReportStore:
    """A thread that stores this process's reports in one database every ``interval_s``."""

    def __init__(self, url: str | URL, *, interval_s: float = 10.0) -> None:
        from sqlalchemy.pool import QueuePool

        from pgwarden.db.engines import create_engine

        self.interval_s = interval_s
        self.engine: Engine = create_engine(
            url,
            application_name="pgwarden-reports",
            poolclass=QueuePool,
            pool_size=1,
            max_overflow=0,
            pool_pre_ping=True,
        )
        self._stop = threading.Event()
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="pgwarden-reports", daemon=True)
        self._thread.start()

    def flush(self) -> bool:
        """Store what is pending now; return whether it was written (kept for later if not)."""
        nplusone, slow = _pending.drain()
        if not (nplusone or slow):
            return True
        try:
            with self.engine.begin() as conn:
                write_reports(conn, nplusone, slow)
        except Exception as error:
            _pending.give_back(nplusone, slow)
            if not self._failed:  # said once per outage, not every pass
                log.warning(
                    "pgwarden could not store its reports in %s: %s",
                    redact_url(self.engine.url),
                    type(error).__name__,
                )
            self._failed = True
            return False
        if self._failed:
            log.info("pgwarden stores its reports in %s again", redact_url(self.engine.url))
        self._failed = False
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def close(self) -> None:
        """Stop the thread after a last flush, and close the engine."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=max(self.interval_s, 5.0))
        self.flush()
        self.engine.dispose()


_stores: dict[str, ReportStore] = {}
_stores_lock = threading.Lock()


def store_reports(target: Engine | Any, *, interval_s: float = 10.0) -> ReportStore:
    """Store this process's N+1 and slow-statement reports in ``target``'s database.

    ``target`` is an engine (sync or async) or a database URL. One store runs per
    database; asking again returns it. It flushes once more when the process exits.
    """
    collect_reports()
    engine = getattr(target, "sync_engine", target)
    url: str | URL = engine.url if isinstance(engine, Engine) else str(target)
    key = url.render_as_string(hide_password=False) if isinstance(url, URL) else str(url)
    with _stores_lock:
        store = _stores.get(key)
        if store is None or store._stop.is_set():
            store = _stores[key] = ReportStore(url, interval_s=interval_s)
            atexit.register(store.close)
        return store
