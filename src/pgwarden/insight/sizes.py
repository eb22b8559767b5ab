"""Report where the space goes: databases, tables with their TOAST and indexes, indexes.

Each function is one query returning dataclasses, largest first::

    with engine.connect() as conn:
        for table in table_sizes(conn, limit=10):
            print(table.table, table.total_bytes, table.heap_bytes, table.index_bytes)

Sizes are a report, not a problem: the one check here, ``largest_tables``, lists the
largest tables as ``info`` findings. Bloat (:mod:`~pgwarden.insight.bloat`) says how
much of a size is waste. Any role may read the sizes of tables and indexes; a
database's size needs ``CONNECT`` on it or ``pg_read_all_stats`` (part of
``pg_monitor``), and databases the role may not size are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import qualified
from pgwarden._units import format_size
from pgwarden.insight.findings import Check, CheckResult, Finding

__all__ = [
    "DatabaseSize",
    "IndexSize",
    "TableSize",
    "check_sizes",
    "database_sizes",
    "index_sizes",
    "largest_table_findings",
    "table_sizes",
]

_USER_RELATIONS = """n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast'
  AND NOT pg_is_other_temp_schema(n.oid)"""


@dataclass(frozen=True)
class DatabaseSize:
    """The space a database takes on disk."""

    database: str
    size_bytes: int


@dataclass(frozen=True)
class TableSize:
    """The space a table or materialized view takes, split by where it goes.

    ``heap_bytes`` is the table's main data, ``toast_bytes`` its TOAST table (with the
    TOAST index), ``index_bytes`` its indexes. ``total_bytes`` adds the free space
    and visibility maps to those three. ``estimated_rows`` is the planner's count, as
    of the last VACUUM or ANALYZE, or ``None`` if it has never had one.
    """

    schema: str
    table: str
    total_bytes: int
    heap_bytes: int
    toast_bytes: int
    index_bytes: int
    estimated_rows: int | None


@dataclass(frozen=True)
class IndexSize:
    """The space an index takes."""

    schema: str
    table: str
    index: str
    size_bytes: int


DATABASE_SIZES = text(
    """
SELECT d.datname AS database,
       pg_database_size(d.oid) AS size_bytes
FROM pg_database AS d
WHERE d.datconnlimit <> -2  -- a database left invalid by an interrupted DROP DATABASE
  AND (has_database_privilege(d.oid, 'CONNECT') OR pg_has_role('pg_read_all_stats', 'USAGE'))
ORDER BY size_bytes DESC, database
LIMIT :limit
"""
)


def database_sizes(conn: Connection, *, limit: int | None = None) -> list[DatabaseSize]:
    """Return the databases of the server, largest first; ``limit=None`` returns all."""
    return [DatabaseSize(**row._mapping) for row in conn.execute(DATABASE_SIZES, {"limit": limit})]


# reltuples is -1 (0 before PostgreSQL 14) for a table never vacuumed or analyzed.
TABLE_SIZES = text(
    f"""
SELECT *
FROM (
  SELECT n.nspname AS schema,
         c.relname AS "table",
         pg_total_relation_size(c.oid) AS total_bytes,
         pg_relation_size(c.oid) AS heap_bytes,
         COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0) AS toast_bytes,
         pg_indexes_size(c.oid) AS index_bytes,
         CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint END AS estimated_rows
  FROM pg_class AS c
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'm')
    AND {_USER_RELATIONS}
) AS sizes
WHERE total_bytes >= :min_size_bytes
ORDER BY total_bytes DESC, schema, "table"
LIMIT :limit
"""
)


def table_sizes(
    conn: Connection, *, limit: int | None = 20, min_size_bytes: int = 0
) -> list[TableSize]:
    """Return the tables of ``min_size_bytes`` or more in all, largest first.

    Partitions are listed each on its own; a partitioned table itself holds no data.
    ``limit=None`` returns every table.
    """
    params = {"limit": limit, "min_size_bytes": min_size_bytes}
    return [TableSize(**row._mapping) for row in conn.execute(TABLE_SIZES, params)]


INDEX_SIZES = text(
    f"""
SELECT n.nspname AS schema,
       t.relname AS "table",
       c.relname AS index,
       pg_relation_size(c.oid) AS size_bytes
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_class AS t ON t.oid = i.indrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind = 'i'
  AND {_USER_RELATIONS}
ORDER BY size_bytes DESC, schema, index
LIMIT :limit
"""
)


def index_sizes(conn: Connection, *, limit: int | None = 20) -> list[IndexSize]:
    """Return the indexes, largest first; ``limit=None`` returns every one."""
    return [IndexSize(**row._mapping) for row in conn.execute(INDEX_SIZES, {"limit": limit})]


def largest_table_findings(tables: Iterable[TableSize]) -> list[Finding]:
    """Turn table sizes into ``info`` findings, one a table."""
    return [
        Finding(
            check="largest_tables",
            severity="info",
            what=f"table {name} takes {format_size(table.total_bytes)}: "
            f"{format_size(table.heap_bytes)} of rows, {format_size(table.toast_bytes)} "
            f"of TOAST, {format_size(table.index_bytes)} of indexes",
            why="One of the largest tables, for where the space goes; a size alone is "
            "no problem. Its growth over time, and its bloat, are worth watching.",
            fix=None,
            subject=name,
            details={
                "total_bytes": table.total_bytes,
                "heap_bytes": table.heap_bytes,
                "toast_bytes": table.toast_bytes,
                "index_bytes": table.index_bytes,
                "estimated_rows": table.estimated_rows,
            },
        )
        for table in tables
        for name in [qualified(table.schema, table.table, plain=True)]
    ]


def _largest_tables(
    conn: Connection, *, limit: int = 5, min_size_bytes: int = 10 * 1024**2
) -> list[Finding]:
    return largest_table_findings(table_sizes(conn, limit=limit, min_size_bytes=min_size_bytes))


CHECKS = (
    Check(
        "largest_tables",
        "sizes",
        "the largest tables, with their TOAST and indexes (a report)",
        _largest_tables,
    ),
)


def check_sizes(
    conn: Connection, *, limit: int = 5, min_size_bytes: int = 10 * 1024**2
) -> list[CheckResult]:
    """Report the ``limit`` largest tables of ``min_size_bytes`` or more, as one result."""
    [largest] = CHECKS
    return [largest(conn, limit=limit, min_size_bytes=min_size_bytes)]
