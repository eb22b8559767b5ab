"""Keep snapshots of sizes and query statistics, and compare them over time.

Statistics views only hold totals since the last reset; a trend needs history. A
snapshot stores, in the ``pgwarden`` schema of the database itself, the size of every
table and index, the cumulative figures of each statement in ``pg_stat_statements`` and
a few key figures of the database::

    with engine.begin() as conn:
        snapshot(conn)
    ...
    with engine.connect() as conn:
        for table in growth(conn, days=7):
            print(table.name, table.delta_bytes, table.bytes_per_day)
        for query in regressions(conn):
            print(query.queryid, query.before_mean_ms, query.after_mean_ms)

Snapshots need a role that may create the schema (or write to it, once created); the
comparisons need only ``SELECT`` on it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pgwarden.errors import NotEnabled, UserError

__all__ = [
    "QueryRegression",
    "RelationGrowth",
    "Snapshot",
    "growth",
    "regressions",
    "snapshot",
    "snapshots",
]

_SCHEMA_DDL = (
    "CREATE SCHEMA IF NOT EXISTS pgwarden",
    """
CREATE TABLE IF NOT EXISTS pgwarden.insight_snapshot (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  taken_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  server_version text NOT NULL,
  statements_tracked boolean NOT NULL,
  figures jsonb NOT NULL
)
""",
    """
CREATE TABLE IF NOT EXISTS pgwarden.insight_relation (
  snapshot_id bigint NOT NULL REFERENCES pgwarden.insight_snapshot ON DELETE CASCADE,
  schema_name name NOT NULL,
  relation_name name NOT NULL,
  kind "char" NOT NULL,
  table_name name,
  total_bytes bigint NOT NULL,
  rows_estimate bigint,
  PRIMARY KEY (snapshot_id, schema_name, relation_name)
)
""",
    """
CREATE TABLE IF NOT EXISTS pgwarden.insight_statement (
  snapshot_id bigint NOT NULL REFERENCES pgwarden.insight_snapshot ON DELETE CASCADE,
  queryid bigint NOT NULL,
  userid oid NOT NULL,
  query text NOT NULL,
  calls bigint NOT NULL,
  total_ms float8 NOT NULL,
  rows bigint NOT NULL,
  PRIMARY KEY (snapshot_id, queryid, userid)
)
""",
)

# Key figures of the database, one row.
_FIGURES = text(
    """
SELECT pg_database_size(d.oid) AS database_bytes,
       age(d.datfrozenxid) AS xid_age,
       s.numbackends AS connections,
       s.xact_commit AS commits,
       s.xact_rollback AS rollbacks,
       s.blks_hit AS blocks_hit,
       s.blks_read AS blocks_read,
       s.temp_bytes AS temp_bytes,
       s.deadlocks AS deadlocks
FROM pg_database AS d
JOIN pg_stat_database AS s ON s.datid = d.oid
WHERE d.datname = current_database()
"""
)

_INSERT_SNAPSHOT = text(
    """
INSERT INTO pgwarden.insight_snapshot (server_version, statements_tracked, figures)
VALUES (current_setting('server_version'), :tracked, CAST(:figures AS jsonb))
RETURNING id, taken_at
"""
)

# Tables (with their TOAST and indexes), materialized views and indexes of user schemas.
_INSERT_RELATIONS = text(
    """
INSERT INTO pgwarden.insight_relation
  (snapshot_id, schema_name, relation_name, kind, table_name, total_bytes, rows_estimate)
SELECT :snapshot_id,
       n.nspname,
       c.relname,
       c.relkind,
       t.relname,
       CASE WHEN c.relkind = 'i' THEN pg_relation_size(c.oid)
            ELSE pg_total_relation_size(c.oid) END,
       CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint END
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_index AS i ON i.indexrelid = c.oid
LEFT JOIN pg_class AS t ON t.oid = i.indrelid
WHERE c.relkind IN ('r', 'm', 'i')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgwarden')
  AND n.nspname !~ '^pg_toast'
  AND NOT pg_is_other_temp_schema(n.oid)
  AND n.nspname !~ '^pg_temp_'
"""
)

_HAS_STATEMENTS = text(
    "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_stat_statements')"
)

# Top-level and nested rows of one statement are summed: a trend is about the query.
_INSERT_STATEMENTS = text(
    """
INSERT INTO pgwarden.insight_statement
  (snapshot_id, queryid, userid, query, calls, total_ms, rows)
SELECT :snapshot_id, queryid, userid, min(query), sum(calls), sum(total_exec_time), sum(rows)
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND queryid IS NOT NULL
GROUP BY queryid, userid
"""
)

_PRUNE = text(
    """
DELETE FROM pgwarden.insight_snapshot
WHERE taken_at < clock_timestamp() - make_interval(days => :days)
"""
)

_SNAPSHOTS = text(
    """
SELECT s.id, s.taken_at, s.server_version, s.statements_tracked, s.figures,
       (SELECT count(*) FROM pgwarden.insight_relation AS r WHERE r.snapshot_id = s.id)
         AS relations,
       (SELECT count(*) FROM pgwarden.insight_statement AS q WHERE q.snapshot_id = s.id)
         AS statements
FROM pgwarden.insight_snapshot AS s
WHERE CAST(:id AS bigint) IS NULL OR s.id = :id
ORDER BY s.id DESC
LIMIT :limit
"""
)

_GROWTH = text(
    """
SELECT coalesce(a.schema_name, b.schema_name) AS schema,
       coalesce(a.relation_name, b.relation_name) AS name,
       CASE coalesce(a.kind, b.kind) WHEN 'i' THEN 'index'
            WHEN 'm' THEN 'materialized view' ELSE 'table' END AS kind,
       coalesce(a.table_name, b.table_name) AS table_name,
       coalesce(b.total_bytes, 0) AS before_bytes,
       coalesce(a.total_bytes, 0) AS after_bytes,
       b.rows_estimate AS before_rows,
       a.rows_estimate AS after_rows
FROM (SELECT * FROM pgwarden.insight_relation WHERE snapshot_id = :after) AS a
FULL JOIN (SELECT * FROM pgwarden.insight_relation WHERE snapshot_id = :before) AS b
  ON b.schema_name = a.schema_name AND b.relation_name = a.relation_name
WHERE coalesce(a.total_bytes, 0) - coalesce(b.total_bytes, 0) >= :min_delta_bytes
ORDER BY coalesce(a.total_bytes, 0) - coalesce(b.total_bytes, 0) DESC,
         schema, name
LIMIT :limit
"""
)

# Mean time per call up to the earlier snapshot against the mean of the calls made
# between the two. A statement whose counts went down was reset in between: its calls
# since the reset are all in the later snapshot, and the earlier figures are no baseline.
_REGRESSIONS = text(
    """
SELECT a.queryid, a.userid::regrole::text AS role, a.query,
       b.calls AS before_calls,
       b.total_ms / b.calls AS before_mean_ms,
       a.calls - b.calls AS after_calls,
       (a.total_ms - b.total_ms) / (a.calls - b.calls) AS after_mean_ms
FROM pgwarden.insight_statement AS a
JOIN pgwarden.insight_statement AS b
  ON b.queryid = a.queryid AND b.userid = a.userid AND b.snapshot_id = :before
WHERE a.snapshot_id = :after
  AND b.calls >= :min_calls
  AND a.calls - b.calls >= :min_calls
  AND a.total_ms >= b.total_ms
  AND (a.total_ms - b.total_ms) / (a.calls - b.calls)
        >= :factor * (b.total_ms / b.calls)
  AND (a.total_ms - b.total_ms) / (a.calls - b.calls) - b.total_ms / b.calls
        >= :min_delta_ms
ORDER BY (a.total_ms - b.total_ms) / (a.calls - b.calls) * (a.calls - b.calls)
         - b.total_ms / b.calls * (a.calls - b.calls) DESC
"""
)

_AT_OR_BEFORE = text(
    """
SELECT id
FROM pgwarden.insight_snapshot
WHERE taken_at <= :moment
ORDER BY taken_at DESC, id DESC
LIMIT 1
"""
)

_FIRST_LAST = text("SELECT min(id), max(id) FROM pgwarden.insight_snapshot")

_HAS_HISTORY = text("SELECT to_regclass('pgwarden.insight_snapshot') IS NOT NULL")


@dataclass(frozen=True)
class Snapshot:
    """One stored snapshot: when, and how much it holds."""

    id: int
    taken_at: dt.datetime
    server_version: str
    statements_tracked: bool
    figures: dict[str, Any]
    relations: int
    statements: int


@dataclass(frozen=True)
class RelationGrowth:
    """How much one table or index grew between two snapshots."""

    schema: str
    name: str
    kind: str
    table_name: str | None
    before_bytes: int
    after_bytes: int
    before_rows: int | None
    after_rows: int | None
    days: float

    @property
    def delta_bytes(self) -> int:
        """Return the growth in bytes (negative when it shrank)."""
        return self.after_bytes - self.before_bytes

    @property
    def bytes_per_day(self) -> float | None:
        """Return the growth per day, or ``None`` when the snapshots are moments apart."""
        return self.delta_bytes / self.days if self.days > 0 else None


@dataclass(frozen=True)
class QueryRegression:
    """A statement whose calls got slower between two snapshots."""

    queryid: int
    role: str
    query: str
    before_calls: int
    before_mean_ms: float
    after_calls: int
    after_mean_ms: float

    @property
    def factor(self) -> float:
        """Return how many times slower a call got."""
        return self.after_mean_ms / self.before_mean_ms if self.before_mean_ms else float("inf")

    @property
    def extra_ms(self) -> float:
        """Return the time the slowdown cost over the later calls, in milliseconds."""
        return (self.after_mean_ms - self.before_mean_ms) * self.after_calls


def snapshot(conn: Connection, *, keep_days: int | None = None) -> Snapshot:
    """Store a snapshot of sizes, statement statistics and key figures; return it.

    Creates the ``pgwarden`` schema and its tables the first time. Statements are stored
    only where ``pg_stat_statements`` is installed and loaded; ``statements_tracked`` says
    which. ``keep_days`` deletes snapshots older than that many days. Runs in the
    caller's transaction, so it commits with it.
    """
    _create_schema(conn)
    figures = dict(conn.execute(_FIGURES).one()._mapping)
    with conn.begin_nested() as savepoint:
        tracked = bool(conn.execute(_HAS_STATEMENTS).scalar_one())
        row = conn.execute(_INSERT_SNAPSHOT, {"tracked": tracked, "figures": _json(figures)}).one()
        conn.execute(_INSERT_RELATIONS, {"snapshot_id": row.id})
        if tracked:
            try:
                with conn.begin_nested():
                    conn.execute(_INSERT_STATEMENTS, {"snapshot_id": row.id})
            except DBAPIError:
                # Installed but not in shared_preload_libraries: the view cannot be read.
                tracked = False
                conn.execute(
                    text(
                        "UPDATE pgwarden.insight_snapshot SET statements_tracked = false "
                        "WHERE id = :id"
                    ),
                    {"id": row.id},
                )
        savepoint.commit()
    if keep_days is not None:
        conn.execute(_PRUNE, {"days": keep_days})
    [taken] = conn.execute(_SNAPSHOTS, {"id": row.id, "limit": 1})
    return Snapshot(**taken._mapping)


def snapshots(conn: Connection, *, limit: int = 50) -> list[Snapshot]:
    """Return the stored snapshots, newest first."""
    if not conn.execute(_HAS_HISTORY).scalar_one():
        return []
    rows = conn.execute(_SNAPSHOTS, {"id": None, "limit": limit})
    return [Snapshot(**row._mapping) for row in rows]


def growth(
    conn: Connection,
    *,
    days: float | None = None,
    before: int | None = None,
    after: int | None = None,
    min_delta_bytes: int = 1,
    limit: int = 50,
) -> list[RelationGrowth]:
    """Return the tables and indexes that grew most between two snapshots.

    By default the first snapshot is compared with the latest; ``days`` picks the
    latest snapshot taken at least that many days before the latest one instead, and
    ``before``/``after`` name snapshots by id.
    """
    before_id, after_id, span = _pair(conn, days=days, before=before, after=after)
    rows = conn.execute(
        _GROWTH,
        {
            "before": before_id,
            "after": after_id,
            "min_delta_bytes": min_delta_bytes,
            "limit": limit,
        },
    )
    return [RelationGrowth(**row._mapping, days=span) for row in rows]


def regressions(
    conn: Connection,
    *,
    days: float | None = None,
    before: int | None = None,
    after: int | None = None,
    factor: float = 1.5,
    min_calls: int = 100,
    min_delta_ms: float = 1.0,
) -> list[QueryRegression]:
    """Return statements whose mean time per call rose by ``factor`` between snapshots.

    The baseline is the mean of all calls up to the earlier snapshot; the comparison is
    the mean of the calls made between the two. Both need ``min_calls`` calls, and the
    mean must have risen by ``min_delta_ms`` at least, so a query going from 0.01 to
    0.03 ms is not news. Largest total extra time first.
    """
    before_id, after_id, _ = _pair(conn, days=days, before=before, after=after)
    rows = conn.execute(
        _REGRESSIONS,
        {
            "before": before_id,
            "after": after_id,
            "factor": factor,
            "min_calls": min_calls,
            "min_delta_ms": min_delta_ms,
        },
    )
    return [QueryRegression(**row._mapping) for row in rows]


def _pair(
    conn: Connection, *, days: float | None, before: int | None, after: int | None
) -> tuple[int, int, float]:
    known = {s.id: s for s in snapshots(conn, limit=1_000_000)}
    if len(known) < 2:
        raise NotEnabled(
            f"comparing needs two snapshots, and this database has {len(known)}.",
            hint="Run `pgwarden insight snapshot` now and again later (on a schedule).",
        )
    for name, value in (("before", before), ("after", after)):
        if value is not None and value not in known:
            raise UserError(
                f"there is no snapshot {value} (--{name}).",
                hint="`pgwarden insight snapshots` lists them.",
            )
    after_id = after if after is not None else max(known)
    if before is None and days is not None:
        moment = known[after_id].taken_at - dt.timedelta(days=days)
        before = conn.execute(_AT_OR_BEFORE, {"moment": moment}).scalar()
        if before is None:
            raise UserError(
                f"no snapshot is {days:g} days older than snapshot {after_id}.",
                hint="Ask for a shorter span, or compare with --before ID.",
            )
    before_id = before if before is not None else min(known)
    if known[before_id].taken_at >= known[after_id].taken_at and before_id != after_id:
        before_id, after_id = after_id, before_id
    if before_id == after_id:
        raise UserError(
            f"snapshot {before_id} cannot be compared with itself.",
            hint="Name two different snapshots, or take another one first.",
        )
    span = (known[after_id].taken_at - known[before_id].taken_at).total_seconds() / 86400
    return before_id, after_id, span


def _create_schema(conn: Connection) -> None:
    try:
        with conn.begin_nested():
            for statement in _SCHEMA_DDL:
                conn.execute(text(statement))
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != "42501":
            raise
        role = conn.execute(text("SELECT current_user")).scalar_one()
        raise NotEnabled(
            f"role {role} may not create or write the pgwarden schema for snapshots.",
            hint=f"As the database owner: CREATE SCHEMA pgwarden AUTHORIZATION {role};",
        ) from None


def _json(figures: dict[str, Any]) -> str:
    return json.dumps({key: int(value) for key, value in figures.items() if value is not None})
