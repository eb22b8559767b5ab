"""Rank this database's statements from ``pg_stat_statements``, and find slow ones.

Each function reads the extension's view once and returns :class:`QueryStats`, merged
over the roles that ran each statement (one row per ``queryid``)::

    with engine.connect() as conn:
        for stats in queries_by_total_time(conn, limit=5):
            print(f"{stats.share:.0%}", stats.calls, f"{stats.mean_ms:.1f} ms", stats.query)

The extension must be preloaded (``shared_preload_libraries``) and created in the
database; otherwise the functions raise :class:`CheckSkipped` saying which step is
missing. Other roles' statement texts need ``pg_read_all_stats`` (``pg_monitor``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pgwarden._sql import quote_identifier
from pgwarden.insight.findings import Check, CheckResult, CheckSkipped, Finding

__all__ = [
    "QueryStats",
    "check_statements",
    "queries_by_calls",
    "queries_by_mean_time",
    "queries_by_total_time",
    "slow_queries",
    "slow_query_findings",
]

# PgHero's defaults: a statement averaging 20 ms is slow once it has run 100 times.
MIN_MEAN_MS = 20.0
MIN_CALLS = 100

_NOT_LOADED = "55000"  # object_not_in_prerequisite_state: not in shared_preload_libraries


@dataclass(frozen=True)
class QueryStats:
    """One statement's totals in this database since statistics were last reset.

    ``query`` is normalised (constants appear as ``$1``); ``share`` is the fraction of
    all statement execution time in this database that it took. Blocks are 8 kB
    pages found in shared buffers (``hit``) or read from the OS (``read``).
    """

    queryid: int | None
    query: str
    calls: int
    total_ms: float
    mean_ms: float
    rows: int
    share: float
    shared_blks_hit: int
    shared_blks_read: int

    @property
    def hit_ratio(self) -> float | None:
        """Return the fraction of blocks found in shared buffers, or ``None`` with none."""
        blocks = self.shared_blks_hit + self.shared_blks_read
        return self.shared_blks_hit / blocks if blocks else None


# Where the extension lives, and whether its view has the PostgreSQL 13 column names:
# an extension older than 1.8 (not updated after pg_upgrade) still says total_time.
EXTENSION = text(
    """
SELECT n.nspname AS schema,
       EXISTS (
         SELECT 1
         FROM pg_attribute AS a
         JOIN pg_class AS c ON c.oid = a.attrelid
         WHERE c.relname = 'pg_stat_statements'
           AND c.relnamespace = e.extnamespace
           AND a.attname = 'total_exec_time'
       ) AS exec_time
FROM pg_extension AS e
JOIN pg_namespace AS n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_stat_statements'
"""
)

# {view}, {total} and {order} are filled from fixed choices and a quoted schema name.
_STATEMENTS = """
WITH merged AS (
  SELECT s.queryid,
         min(s.query) AS query,
         sum(s.calls)::bigint AS calls,
         sum(s.{total})::float8 AS total_ms,
         sum(s.rows)::bigint AS rows,
         sum(s.shared_blks_hit)::bigint AS shared_blks_hit,
         sum(s.shared_blks_read)::bigint AS shared_blks_read
  FROM {view} AS s
  WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  GROUP BY s.queryid
),
measured AS (
  SELECT *,
         COALESCE(total_ms / NULLIF(calls, 0), 0) AS mean_ms,
         COALESCE(total_ms / NULLIF(sum(total_ms) OVER (), 0), 0) AS share
  FROM merged
)
SELECT queryid, query, calls, total_ms, mean_ms, rows, share, shared_blks_hit, shared_blks_read
FROM measured
WHERE calls >= :min_calls
  AND mean_ms >= :min_mean_ms
ORDER BY {order} DESC, queryid
LIMIT :limit
"""

_ORDERS = {"total": "total_ms", "mean": "mean_ms", "calls": "calls"}


def _statements(
    conn: Connection, order: str, *, limit: int | None, min_calls: int, min_mean_ms: float
) -> list[QueryStats]:
    extension = conn.execute(EXTENSION).one_or_none()
    if extension is None:
        raise CheckSkipped(
            "pg_stat_statements is not installed in this database: CREATE EXTENSION "
            "pg_stat_statements (and add it to shared_preload_libraries)"
        )
    sql = _STATEMENTS.format(
        view=f"{quote_identifier(extension.schema)}.pg_stat_statements",
        total="total_exec_time" if extension.exec_time else "total_time",
        order=_ORDERS[order],
    )
    parameters = {"limit": limit, "min_calls": min_calls, "min_mean_ms": min_mean_ms}
    try:
        # A savepoint, so that the error of an extension not loaded leaves the
        # caller's transaction usable.
        with conn.begin_nested():
            rows = conn.execute(text(sql), parameters).all()
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != _NOT_LOADED:
            raise
        raise CheckSkipped(
            "pg_stat_statements is installed but the server does not load it: add it to "
            "shared_preload_libraries and restart the server"
        ) from error
    return [QueryStats(**row._mapping) for row in rows]


def queries_by_total_time(conn: Connection, *, limit: int | None = 10) -> list[QueryStats]:
    """Return the statements that took the most time in all, most first.

    These are where time goes: a fast statement called very often ranks high.
    """
    return _statements(conn, "total", limit=limit, min_calls=0, min_mean_ms=0)


def queries_by_mean_time(
    conn: Connection, *, limit: int | None = 10, min_calls: int = 1
) -> list[QueryStats]:
    """Return the statements slowest on average, run at least ``min_calls`` times."""
    return _statements(conn, "mean", limit=limit, min_calls=min_calls, min_mean_ms=0)


def queries_by_calls(conn: Connection, *, limit: int | None = 10) -> list[QueryStats]:
    """Return the statements run most often, most first."""
    return _statements(conn, "calls", limit=limit, min_calls=0, min_mean_ms=0)


def slow_queries(
    conn: Connection,
    *,
    min_mean_ms: float = MIN_MEAN_MS,
    min_calls: int = MIN_CALLS,
    limit: int | None = None,
) -> list[QueryStats]:
    """Return the statements averaging ``min_mean_ms`` or more over ``min_calls`` runs.

    Slowest on average first. ``min_calls`` leaves out one-off statements (a
    migration, a report run by hand) that no index or rewrite would pay back.
    """
    return _statements(conn, "mean", limit=limit, min_calls=min_calls, min_mean_ms=min_mean_ms)


def slow_query_findings(queries: Iterable[QueryStats]) -> list[Finding]:
    """Turn slow statements into findings, with the figures that rank them."""
    findings = []
    for stats in queries:
        ratio = stats.hit_ratio
        cache = (
            f" {1 - ratio:.0%} of the blocks it touched came from outside shared buffers."
            if ratio is not None and ratio < 0.99
            else ""
        )
        findings.append(
            Finding(
                check="slow_queries",
                severity="warning",
                what=f"query {stats.queryid} averages {stats.mean_ms:,.1f} ms over "
                f"{stats.calls:,} calls ({stats.share:.0%} of statement time): "
                f"{_snippet(stats.query)}",
                why="Each call holds a connection and its locks that long. Run it under "
                "EXPLAIN (ANALYZE, BUFFERS) with real values for its parameters to see "
                f"where the time goes: often a missing index or a scan of too many rows.{cache}",
                fix=None,
                subject=None if stats.queryid is None else str(stats.queryid),
                details={
                    "queryid": stats.queryid,
                    "query": stats.query,
                    "calls": stats.calls,
                    "total_ms": stats.total_ms,
                    "mean_ms": stats.mean_ms,
                    "rows": stats.rows,
                    "share": stats.share,
                    "shared_blks_hit": stats.shared_blks_hit,
                    "shared_blks_read": stats.shared_blks_read,
                },
            )
        )
    return findings


def _slow(
    conn: Connection, *, min_mean_ms: float = MIN_MEAN_MS, min_calls: int = MIN_CALLS
) -> list[Finding]:
    return slow_query_findings(slow_queries(conn, min_mean_ms=min_mean_ms, min_calls=min_calls))


CHECKS = (
    Check(
        "slow_queries",
        "statements",
        "statements slow on average and run often, from pg_stat_statements",
        _slow,
    ),
)


def check_statements(
    conn: Connection, *, min_mean_ms: float = MIN_MEAN_MS, min_calls: int = MIN_CALLS
) -> CheckResult:
    """Check for slow statements; skipped, saying why, without pg_stat_statements."""
    [check] = CHECKS
    return check(conn, min_mean_ms=min_mean_ms, min_calls=min_calls)


def _snippet(query: str, width: int = 80) -> str:
    line = " ".join(query.split())
    return line if len(line) <= width else line[: width - 1] + "…"
