"""Weigh findings against the live database: rows, size, writes per second, held locks.

A rule whose cost grows with the table (a rewrite, an index build, a validating scan)
costs nothing on an empty table and is dangerous on a large or busy one; any lock is
dangerous when a session holds a conflicting one now, since the statement would queue
behind it and every query on the table behind the statement. The figures come from
``pg_class``, ``pg_stat_user_tables`` (two samples ``sample_seconds`` apart; with 0, the
average since the statistics were reset) and ``pg_locks`` joined with
``pg_stat_activity``. Nothing is written; every read runs with a short lock_timeout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pgwarden._sql import quote_identifier
from pgwarden._units import format_size
from pgwarden.schema.lint._locks import CONFLICTS
from pgwarden.schema.lint._model import TableRef
from pgwarden.schema.lint._types import ColumnType, canonical
from pgwarden.schema.lint.config import LintConfig
from pgwarden.schema.lint.findings import ConflictingSession, LintFinding, TableFigures
from pgwarden.schema.lint.rules import rule
from pgwarden.urls import redact_text

__all__ = ["LiveCatalog", "table_figures", "weigh"]

_TABLE = """
SELECT c.oid, n.nspname, c.relname, c.reltuples::bigint AS reltuples,
       pg_total_relation_size(c.oid) AS size_bytes,
       coalesce(s.n_live_tup, 0) AS live_rows
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid
WHERE c.oid = to_regclass(:name)
"""
_WRITES = """
SELECT coalesce(n_tup_ins + n_tup_upd + n_tup_del, 0) AS writes,
       extract(epoch FROM clock_timestamp()
               - coalesce((SELECT stats_reset FROM pg_stat_database
                           WHERE datname = current_database()), pg_postmaster_start_time()))
           AS age
FROM pg_stat_user_tables
WHERE relid = :oid
"""
_BLOCKERS = """
SELECT l.pid, l.mode, l.granted, coalesce(a.application_name, '') AS application_name,
       a.usename, a.state, left(coalesce(a.query, ''), 200) AS query,
       extract(epoch FROM clock_timestamp() - coalesce(a.xact_start, a.query_start)) AS seconds
FROM pg_locks AS l
JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'relation'
  AND l.relation = :oid
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.pid <> pg_backend_pid()
ORDER BY seconds DESC NULLS LAST, l.pid
"""


def _regclass_name(table: TableRef, *, plain: bool = True) -> str:
    """Return the table's name for ``to_regclass`` (plain) or for a statement's text."""
    schema, name = table
    quoted = quote_identifier(name, plain=plain)
    return quoted if schema is None else f"{quote_identifier(schema, plain=plain)}.{quoted}"


def _rows(conn: Connection, sql: str, **params: Any) -> list[Any]:
    """Run a read under a short lock_timeout; a lock it would wait for makes it empty."""
    try:
        with conn.begin_nested():
            conn.execute(text("SET LOCAL lock_timeout = '500ms'"))
            return list(conn.execute(text(sql), params))
    except DBAPIError:
        return []


class LiveCatalog:
    """What the checks ask the database: column types, volatility, validated CHECKs."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._utc: bool | None = None

    def column_type(self, table: TableRef, column: str) -> ColumnType | None:
        """Return the current type of a column, or None if the database has no such column."""
        found = _rows(
            self.conn,
            """
            SELECT t.typname, a.atttypmod, a.attndims, et.typname AS element
            FROM pg_attribute AS a
            JOIN pg_type AS t ON t.oid = a.atttypid
            LEFT JOIN pg_type AS et ON et.oid = t.typelem AND t.typcategory = 'A'
            WHERE a.attrelid = to_regclass(:name) AND a.attname = :column AND NOT a.attisdropped
        """,
            name=_regclass_name(table),
            column=column,
        )
        if not found:
            return None
        typname, typmod, dims, element = found[0]
        name = canonical(element if element else typname)
        return ColumnType(name, _modifiers(name, typmod), bool(dims or element))

    def volatile(self, function: str) -> bool | None:
        """Return whether any function of that name is volatile; None if there is none."""
        found = _rows(
            self.conn,
            "SELECT bool_or(provolatile = 'v') FROM pg_proc WHERE proname = :name",
            name=function,
        )
        return None if not found or found[0][0] is None else bool(found[0][0])

    def validated_not_null(self, table: TableRef, column: str) -> bool:
        """Return whether the table has a validated ``CHECK (column IS NOT NULL)``."""
        found = _rows(
            self.conn,
            """
            SELECT count(*) FROM pg_constraint
            WHERE conrelid = to_regclass(:name) AND contype = 'c' AND convalidated
              AND pg_get_constraintdef(oid) = :definition
        """,
            name=_regclass_name(table),
            definition=f"CHECK (({quote_identifier(column, plain=True)} IS NOT NULL))",
        )
        return bool(found and found[0][0])

    def index_table(self, index: TableRef) -> TableRef | None:
        """Return the table an index is on."""
        found = _rows(
            self.conn,
            """
            SELECT n.nspname, c.relname FROM pg_index AS i
            JOIN pg_class AS c ON c.oid = i.indrelid
            JOIN pg_namespace AS n ON n.oid = c.relnamespace
            WHERE i.indexrelid = to_regclass(:name)
        """,
            name=_regclass_name(index),
        )
        return (found[0][0], found[0][1]) if found else None

    def timezone_is_utc(self) -> bool | None:
        """Return whether this session's TimeZone is UTC (a migration's may differ)."""
        if self._utc is None:
            zone = self.conn.execute(text("SELECT current_setting('TimeZone')")).scalar_one()
            self._utc = str(zone).upper() in ("UTC", "ETC/UTC", "GMT", "ZULU", "UCT")
        return self._utc


def _modifiers(name: str, typmod: int) -> tuple[int, ...]:
    if typmod < 0:
        return ()
    if name in ("varchar", "bpchar"):
        return (typmod - 4,)
    if name == "numeric":
        return ((typmod - 4) >> 16 & 0xFFFF, (typmod - 4) & 0xFFFF)
    if name == "interval":
        return (typmod & 0xFFFF,)
    return (typmod,)


@dataclass(frozen=True)
class _Table:
    oid: int
    figures: TableFigures
    modes: frozenset[str]


def table_figures(
    conn: Connection, tables: dict[TableRef, set[str]], *, sample_seconds: float = 1.0
) -> dict[TableRef, TableFigures]:
    """Return the live figures of each table, with the sessions its locks would wait behind.

    ``tables`` maps each table to the lock modes the migration takes on it; a table the
    database does not have (yet) is left out.
    """
    found: dict[TableRef, tuple[int, str, int, int, int]] = {}
    for table in tables:
        rows = _rows(conn, _TABLE, name=_regclass_name(table))
        if rows:
            oid, schema, name, reltuples, size, live = rows[0]
            estimate = int(reltuples) if reltuples >= 0 else int(live)
            if estimate == 0:  # "0" may be stale: look
                estimate = (
                    0
                    if not _rows(
                        conn, f"SELECT 1 FROM {_regclass_name(table, plain=False)} LIMIT 1"
                    )
                    else max(int(live), 1)
                )
            found[table] = (int(oid), f"{schema}.{name}", estimate, int(size), 0)
    first = {t: _writes(conn, v[0]) for t, v in found.items()}
    if sample_seconds > 0 and found:
        time.sleep(sample_seconds)
    result = {}
    for table, (oid, key, estimate, size, _) in found.items():
        before, age = first[table]
        after, _ = _writes(conn, oid)
        # Counted now when sampling: an average since the statistics began makes a
        # table loaded once in bulk look busy for ever.
        average = after / age if age > 0 else 0.0
        now = (after - before) / sample_seconds if sample_seconds > 0 else average
        result[table] = TableFigures(
            key, estimate, size, round(now, 1), _blockers(conn, oid, tables[table])
        )
    return result


def _writes(conn: Connection, oid: int) -> tuple[int, float]:
    conn.execute(text("SELECT pg_stat_clear_snapshot()"))
    rows = _rows(conn, _WRITES, oid=oid)
    return (int(rows[0][0]), float(rows[0][1] or 0)) if rows else (0, 0.0)


def _blockers(conn: Connection, oid: int, modes: set[str]) -> tuple[ConflictingSession, ...]:
    waits_for = set().union(*(CONFLICTS.get(m, frozenset()) for m in modes)) if modes else set()
    return tuple(
        ConflictingSession(
            int(pid),
            str(mode),
            bool(granted),
            None if seconds is None else round(float(seconds), 1),
            str(app),
            user,
            state,
            redact_text(str(query)),
        )
        for pid, mode, granted, app, user, state, query, seconds in _rows(conn, _BLOCKERS, oid=oid)
        if mode in waits_for
    )


def weigh(finding: LintFinding, figures: TableFigures | None, config: LintConfig) -> LintFinding:
    """Return ``finding`` with its severity and notes set by the live figures of its table."""
    if figures is None or finding.severity == "info":
        return finding if figures is None else replace(finding, table=figures)
    cost = rule(finding.rule).cost
    severity = finding.severity
    notes = list(finding.notes)
    size = f"about {figures.rows:,} rows, {format_size(figures.size_bytes)}"
    large = figures.rows >= config.large_rows or figures.size_bytes >= config.large_bytes
    busy = figures.writes_per_second >= config.busy_writes_per_second
    if cost == "scan" and figures.rows == 0:
        severity = "low"
        notes.append(f"{figures.table} is empty now: this costs nothing yet (downgraded).")
    elif cost == "fails" and finding.rule == "adding-required-field":
        severity = "high" if figures.rows else "low"
        notes.append(
            f"{figures.table} has {size}: "
            + (
                "the statement fails."
                if figures.rows
                else "it is empty, so the statement succeeds now."
            )
        )
    elif cost in ("scan", "lock") and (large or busy):
        severity = "high"
        why = [size] if large else []
        if busy:
            why.append(f"{figures.writes_per_second:,.0f} writes per second")
        notes.append(
            f"{figures.table} has {', '.join(why)}: every query on it waits while the lock "
            "is held (raised)."
        )
    else:
        notes.append(
            f"{figures.table} has {size}, {figures.writes_per_second:,.0f} writes per second."
        )
    if figures.blockers:
        severity = "high"
        for blocker in figures.blockers[:3]:
            held = "holds" if blocker.granted else "waits for"
            since = f" for {blocker.seconds:,.0f} s" if blocker.seconds is not None else ""
            app = blocker.application_name or "no application_name"
            notes.append(
                f"it would wait behind pid {blocker.pid} ({app}, {blocker.state or 'unknown'}),"
                f" which {held} {blocker.mode}{since}: {blocker.query!r}."
            )
    return replace(finding, severity=severity, notes=tuple(notes), table=figures)
