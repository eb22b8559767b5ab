"""Find the queries to advise on: the current database's ``pg_stat_statements``, or SQL
text (a file of statements separated by semicolons).

:mod:`pgwarden.advise.parsing` reads each one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pglast
from pglast.parser import ParseError, scan
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pgwarden._sql import quote_identifier
from pgwarden.errors import NotEnabled, UserError

__all__ = ["Query", "SkippedQuery", "read_queries", "split_queries", "top_queries"]

# Not a query anyone can run: pg_stat_statements hides other roles' texts like this.
_HIDDEN = "<insufficient privilege>"
_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})


@dataclass(frozen=True)
class Query:
    """One statement to advise on, with its workload figures when known."""

    sql: str
    calls: int | None = None
    total_time_ms: float | None = None


@dataclass(frozen=True)
class SkippedQuery:
    """A statement the advisor left out, and why."""

    sql: str
    reason: str


_EXTENSION_SCHEMA = text(
    """
SELECT n.nspname
FROM pg_extension AS e
JOIN pg_namespace AS n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_stat_statements'
"""
)

# Every role's statements in this database, merged by text; statements that cannot use
# an index (BEGIN, SET, INSERT, and the EXPLAIN, PREPARE and COPY a run of the advisor
# itself sends) are left out before the limit applies.
_TOP_QUERIES = """
SELECT s.query,
       sum(s.calls)::bigint AS calls,
       sum(s.total_exec_time)::float8 AS total_time_ms
FROM {view} AS s
JOIN pg_database AS d ON d.oid = s.dbid
WHERE d.datname = current_database()
  AND s.query ~* '\\m(select|update|delete)\\M'
  AND s.query !~* '^\\s*(explain|prepare|copy|insert|create|alter)\\M'
  AND s.query <> :hidden
GROUP BY s.query
HAVING sum(s.calls) >= :min_calls
ORDER BY total_time_ms DESC, s.query
LIMIT :limit
"""

_NOT_LOADED = "55000"  # object_not_in_prerequisite_state: not in shared_preload_libraries


def top_queries(conn: Connection, *, limit: int = 100, min_calls: int = 10) -> list[Query]:
    """Return this database's statements from ``pg_stat_statements``, most total time first.

    Only statements that mention SELECT, UPDATE or DELETE and ran at least ``min_calls``
    times count towards ``limit``. Texts are normalised: constants appear as ``$1``,
    ``$2``. Raises :class:`NotEnabled` if the extension is not installed here or not
    preloaded. Other roles' statements need ``pg_read_all_stats`` to be readable.
    """
    schema = conn.execute(_EXTENSION_SCHEMA).scalar()
    if schema is None:
        raise NotEnabled(
            "pg_stat_statements is not installed in this database.",
            hint="Add pg_stat_statements to shared_preload_libraries, restart, then run "
            "CREATE EXTENSION pg_stat_statements; or pass the queries with --queries FILE.",
        )
    sql = text(_TOP_QUERIES.format(view=f"{quote_identifier(schema)}.pg_stat_statements"))
    try:
        with conn.begin_nested():
            rows = conn.execute(
                sql, {"limit": limit, "min_calls": min_calls, "hidden": _HIDDEN}
            ).all()
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != _NOT_LOADED:
            raise
        raise NotEnabled(
            "pg_stat_statements is installed but not loaded by the server.",
            hint="Add pg_stat_statements to shared_preload_libraries and restart the server; "
            "or pass the queries with --queries FILE.",
        ) from error
    return [Query(row.query, int(row.calls), float(row.total_time_ms)) for row in rows]


def split_queries(sql: str) -> list[str]:
    """Split SQL text into statements at the semicolons between them.

    pglast's splitter does it when the whole text parses. When some statement does not,
    the text is split at the semicolons its scanner finds outside strings and comments,
    so that one bad statement does not hide the others; it is reported when parsed.
    """
    try:
        return [piece for piece in pglast.split(sql) if piece.strip()]
    except ParseError:
        pass
    try:
        tokens = scan(sql)
    except ParseError:
        return [sql.strip()] if sql.strip() else []
    pieces, start = [], 0
    for token in tokens:
        if token.name == "ASCII_59":  # ';'
            pieces.append(sql[start : token.start])
            start = token.end + 1
    pieces.append(sql[start:])
    return [piece.strip() for piece in pieces if _has_tokens(piece)]


def _has_tokens(piece: str) -> bool:
    try:
        return any(token.name not in _COMMENTS for token in scan(piece))
    except ParseError:
        return bool(piece.strip())


def read_queries(path: str | Path) -> list[Query]:
    """Return the statements in the SQL file at ``path``."""
    try:
        content = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(
            f"cannot read the queries file {path}: {error}",
            hint="Give a UTF-8 text file of SQL statements separated by semicolons.",
        ) from error
    return [Query(sql) for sql in split_queries(content)]
