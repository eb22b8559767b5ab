"""Estimate the space tables and btree indexes waste, or measure it with pgstattuple.

Bloat is the space a table or index takes beyond what its live rows need: dead rows
not yet vacuumed, and free space a vacuum left that nothing has filled. By default it
is estimated from the planner's statistics, cheaply, for every table analyzed::

    with engine.connect() as conn:
        for table in table_bloat(conn, min_bloat_fraction=0.3):
            print(table.table, table.wasted_bytes, f"{table.percent:.0f}%")
        for index in index_bloat(conn, exact=True):  # needs pgstattuple
            print(index.index, index.wasted_bytes)

The estimate models each page: a row's size comes from the average column widths and
null fractions in ``pg_stats``, so a table not yet analyzed cannot be estimated, nor
can one whose statistics the role may not read (``pg_stats`` shows a column only to a
role that may ``SELECT`` it; :func:`unreadable_statistics` lists them). With
``exact=True`` the figures are measured by the ``pgstattuple`` extension, which reads
every page of each table and index large enough to matter; ``pg_monitor`` may call
it (through ``pg_stat_scan_tables``) without reading any data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection

from pgwarden._sql import qualified, quote_identifier
from pgwarden._units import format_size
from pgwarden.insight.findings import Check, CheckResult, CheckSkipped, Finding

__all__ = [
    "IndexBloat",
    "TableBloat",
    "check_bloat",
    "has_pgstattuple",
    "index_bloat",
    "index_bloat_findings",
    "table_bloat",
    "table_bloat_findings",
    "unreadable_statistics",
]

_MIN_WASTED_BYTES = 10 * 1024**2

_USER_RELATIONS = """n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname !~ '^pg_toast'
    AND NOT pg_is_other_temp_schema(n.oid)"""


def _fillfactor(default: int) -> str:
    return f"""COALESCE((
      SELECT o.option_value::int
      FROM pg_options_to_table(c.reloptions) AS o
      WHERE o.option_name = 'fillfactor'
    ), {default})"""


class _Wasted:
    """The shares of a relation's size that bloat wastes (fields of the dataclasses below)."""

    size_bytes: int
    wasted_bytes: int

    @property
    def bloat_fraction(self) -> float:
        """Return the wasted share of the relation (0 to 1)."""
        return self.wasted_bytes / self.size_bytes if self.size_bytes else 0.0

    @property
    def percent(self) -> float:
        """Return the wasted share of the relation, in percent."""
        return self.bloat_fraction * 100


@dataclass(frozen=True)
class TableBloat(_Wasted):
    """A table's size and the part of it a rewrite would give back.

    ``exact`` is true when pgstattuple measured it; otherwise both figures are
    estimates as of the table's last VACUUM or ANALYZE. TOAST is not counted.
    """

    schema: str
    table: str
    size_bytes: int
    wasted_bytes: int
    exact: bool


@dataclass(frozen=True)
class IndexBloat(_Wasted):
    """A btree index's size and the part of it a rebuild would give back."""

    schema: str
    table: str
    index: str
    size_bytes: int
    wasted_bytes: int
    exact: bool


# Sizes below assume 8-byte alignment (every 64-bit build) and count, per row, its
# header and data each padded to 8 bytes and its 4-byte line pointer. A relation
# qualifies only if every column it stores has statistics the role can read.
_STATISTICS = """
  SELECT r.oid,
         count(*) AS columns,
         count(s.avg_width) AS columns_with_stats,
         COALESCE(bool_or(s.null_frac > 0), false) AS has_nulls,
         sum((1 - s.null_frac) * s.avg_width) AS data_width
  FROM {relations} AS r
  CROSS JOIN LATERAL unnest(r.columns) AS k(attnum)
  JOIN pg_attribute AS a ON a.attrelid = r.table_oid AND a.attnum = k.attnum
  -- One lookup by name per column, through the catalogs' indexes. Joined as a whole,
  -- the planner misjudges the view's size and scans all of it once per column.
  LEFT JOIN LATERAL (
    SELECT st.null_frac, st.avg_width
    FROM pg_stats AS st
    WHERE st.schemaname = r.schema
      AND st.tablename = r."table"
      AND st.attname = a.attname
      AND NOT st.inherited
    OFFSET 0  -- keeps the planner from flattening the lookup into a join
  ) AS s ON true
  GROUP BY r.oid
"""

_TABLES = f"""
  SELECT c.oid,
         c.oid AS table_oid,
         n.nspname AS schema,
         c.relname AS "table",
         c.reltuples,
         c.relpages::bigint AS pages,
         {_fillfactor(100)} AS fillfactor,
         ARRAY(
           SELECT a.attnum FROM pg_attribute AS a
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         ) AS columns,
         current_setting('block_size')::int AS block_size
  FROM pg_class AS c
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'm')
    AND {_USER_RELATIONS}
"""

# Pages the live rows would fill after a rewrite, to the table's fillfactor, after the
# 24-byte page header; a page holds at most 291 rows (with 8 kB pages) however small.
ESTIMATED_TABLE_BLOAT = text(
    f"""
WITH tables AS (
{_TABLES}
    AND c.relpages > 0
    AND c.reltuples >= 0
),
stats AS ({_STATISTICS.format(relations="tables")}),
expected AS (
  SELECT t.*,
         ceil(t.reltuples / GREATEST(1, LEAST(
           floor((t.block_size * t.fillfactor / 100.0 - 24) / (
             8 * ceil((23 + CASE WHEN s.has_nulls THEN ceil(s.columns / 8.0) ELSE 0 END) / 8.0)
             + 8 * ceil(s.data_width / 8.0) + 4)),
           floor((t.block_size - 24) / 28.0)
         ))) AS expected_pages
  FROM tables AS t
  JOIN stats AS s ON s.oid = t.oid
  WHERE s.columns = s.columns_with_stats
),
bloat AS (
  SELECT schema,
         "table",
         pages * block_size AS size_bytes,
         (GREATEST(pages - expected_pages, 0) * block_size)::bigint AS wasted_bytes
  FROM expected
)
SELECT *, false AS exact
FROM bloat
WHERE wasted_bytes >= :min_wasted_bytes
  AND wasted_bytes >= :min_bloat_fraction * size_bytes
ORDER BY wasted_bytes DESC, schema, "table"
"""
)

# The same page model fed with measured rows: their count and average length.
_EXACT_TABLE_BLOAT = f"""
WITH tables AS MATERIALIZED (
{_TABLES}
    AND pg_relation_size(c.oid) >= :min_wasted_bytes
),
measured AS (
  SELECT t.*, m.table_len, m.tuple_count, m.tuple_len
  FROM tables AS t
  CROSS JOIN LATERAL {{schema}}.pgstattuple(t.oid) AS m
),
expected AS (
  SELECT m.*,
         CASE WHEN m.tuple_count = 0 THEN 0 ELSE ceil(m.tuple_count / GREATEST(1, LEAST(
           floor((m.block_size * m.fillfactor / 100.0 - 24)
                 / (8 * ceil(m.tuple_len::numeric / m.tuple_count / 8) + 4)),
           floor((m.block_size - 24) / 28.0)
         ))) END AS expected_pages
  FROM measured AS m
),
bloat AS (
  SELECT schema,
         "table",
         table_len AS size_bytes,
         GREATEST(table_len - expected_pages * block_size, 0)::bigint AS wasted_bytes
  FROM expected
)
SELECT *, true AS exact
FROM bloat
WHERE size_bytes > 0
  AND wasted_bytes >= :min_wasted_bytes
  AND wasted_bytes >= :min_bloat_fraction * size_bytes
ORDER BY wasted_bytes DESC, schema, "table"
"""

# Valid btree indexes on columns (an expression has no column statistics to go by).
_INDEXES = f"""
  SELECT c.oid,
         i.indrelid AS table_oid,
         n.nspname AS schema,
         t.relname AS "table",
         c.relname AS index,
         c.reltuples,
         c.relpages::bigint AS pages,
         {_fillfactor(90)} AS fillfactor,
         i.indkey::int2[] AS columns,
         current_setting('block_size')::int AS block_size
  FROM pg_index AS i
  JOIN pg_class AS c ON c.oid = i.indexrelid
  JOIN pg_class AS t ON t.oid = i.indrelid
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
  JOIN pg_am AS am ON am.oid = c.relam
  WHERE am.amname = 'btree'
    AND c.relkind = 'i'
    AND i.indisvalid
    AND i.indexprs IS NULL
    AND {_USER_RELATIONS}
"""

# Leaf pages filled to the fillfactor after the page header and the btree's 16 bytes
# of special space, internal pages to 70%, and the metapage. An index tuple has an
# 8-byte header, 12 with a null bitmap. Deduplication can make an index smaller than
# this, which reads as no bloat.
ESTIMATED_INDEX_BLOAT = text(
    f"""
WITH indexes AS (
{_INDEXES}
    AND c.relpages > 0
    AND c.reltuples >= 0
),
stats AS ({_STATISTICS.format(relations="indexes")}),
sized AS (
  SELECT x.*,
         8 * ceil((CASE WHEN s.has_nulls THEN 12 ELSE 8 END + s.data_width) / 8.0) + 4
           AS tuple_bytes
  FROM indexes AS x
  JOIN stats AS s ON s.oid = x.oid
  WHERE s.columns = s.columns_with_stats
),
leaves AS (
  SELECT z.*,
         ceil(z.reltuples / GREATEST(1,
           floor((z.block_size * z.fillfactor / 100.0 - 40) / z.tuple_bytes))) AS leaf_pages
  FROM sized AS z
),
bloat AS (
  SELECT schema,
         "table",
         index,
         pages * block_size AS size_bytes,
         (GREATEST(pages - 1 - leaf_pages
                   - ceil(leaf_pages / GREATEST(2, floor((block_size * 0.7 - 40) / tuple_bytes))),
                   0)
          * block_size)::bigint AS wasted_bytes
  FROM leaves
)
SELECT *, false AS exact
FROM bloat
WHERE wasted_bytes >= :min_wasted_bytes
  AND wasted_bytes >= :min_bloat_fraction * size_bytes
ORDER BY wasted_bytes DESC, schema, "table", index
"""
)

# What a rebuild gives back: leaf pages fuller than the fillfactor would be after a
# REINDEX, plus the empty and deleted pages. Dead entries still in the index count as
# used until a VACUUM removes them.
_EXACT_INDEX_BLOAT = f"""
WITH indexes AS MATERIALIZED (
{_INDEXES}
    AND pg_relation_size(c.oid) >= :min_wasted_bytes
),
measured AS (
  SELECT x.*, m.index_size, m.leaf_pages, m.empty_pages, m.deleted_pages, m.avg_leaf_density
  FROM indexes AS x
  CROSS JOIN LATERAL {{schema}}.pgstatindex(x.oid) AS m
),
bloat AS (
  SELECT schema,
         "table",
         index,
         index_size AS size_bytes,
         (GREATEST(
            CASE WHEN leaf_pages > 0
                 THEN leaf_pages * (1 - avg_leaf_density / fillfactor) ELSE 0 END
            + empty_pages + deleted_pages, 0) * block_size)::bigint AS wasted_bytes
  FROM measured
)
SELECT *, true AS exact
FROM bloat
WHERE wasted_bytes >= :min_wasted_bytes
  AND wasted_bytes >= :min_bloat_fraction * size_bytes
ORDER BY wasted_bytes DESC, schema, "table", index
"""

PGSTATTUPLE_SCHEMA = text(
    """
SELECT n.nspname
FROM pg_extension AS e
JOIN pg_namespace AS n ON n.oid = e.extnamespace
WHERE e.extname = 'pgstattuple'
"""
)

UNREADABLE_STATISTICS = text(
    f"""
SELECT n.nspname AS schema, c.relname AS "table"
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm')
  AND {_USER_RELATIONS}
  AND pg_relation_size(c.oid) > 0
  AND pg_relation_size(c.oid) >= :min_size_bytes
  AND (
    EXISTS (
      SELECT 1
      FROM pg_attribute AS a
      WHERE a.attrelid = c.oid
        AND a.attnum > 0
        AND NOT a.attisdropped
        AND NOT has_column_privilege(c.oid, a.attnum, 'SELECT')
    )
    OR (c.relrowsecurity AND row_security_active(c.oid))
  )
ORDER BY schema, "table"
"""
)


def has_pgstattuple(conn: Connection) -> bool:
    """Return whether the pgstattuple extension is installed in this database."""
    return _pgstattuple_schema(conn) is not None


def table_bloat(
    conn: Connection,
    *,
    min_bloat_fraction: float = 0.2,
    min_wasted_bytes: int = _MIN_WASTED_BYTES,
    exact: bool = False,
) -> list[TableBloat]:
    """Return tables wasting ``min_wasted_bytes`` and ``min_bloat_fraction`` of their size.

    Most wasted first. ``exact=True`` measures with pgstattuple, reading every table of
    at least ``min_wasted_bytes`` in full, and raises :class:`CheckSkipped` if the
    extension is not installed in this database.
    """
    params = {"min_bloat_fraction": min_bloat_fraction, "min_wasted_bytes": min_wasted_bytes}
    query = _exact(conn, _EXACT_TABLE_BLOAT) if exact else ESTIMATED_TABLE_BLOAT
    return [TableBloat(**row._mapping) for row in conn.execute(query, params)]


def index_bloat(
    conn: Connection,
    *,
    min_bloat_fraction: float = 0.2,
    min_wasted_bytes: int = _MIN_WASTED_BYTES,
    exact: bool = False,
) -> list[IndexBloat]:
    """Return btree indexes wasting ``min_wasted_bytes`` and ``min_bloat_fraction``.

    Most wasted first. Indexes on expressions are estimated only with ``exact=True``,
    which measures with pgstatindex and raises :class:`CheckSkipped` if pgstattuple
    is not installed in this database.
    """
    params = {"min_bloat_fraction": min_bloat_fraction, "min_wasted_bytes": min_wasted_bytes}
    query = _exact(conn, _EXACT_INDEX_BLOAT) if exact else ESTIMATED_INDEX_BLOAT
    return [IndexBloat(**row._mapping) for row in conn.execute(query, params)]


def unreadable_statistics(conn: Connection, *, min_size_bytes: int = 0) -> list[str]:
    """Return the tables of ``min_size_bytes`` or more whose statistics the role cannot read.

    ``pg_stats`` shows a column's statistics only to a role that may ``SELECT`` the
    column (and not under row-level security), so the estimate skips these tables and
    their indexes.
    """
    rows = conn.execute(UNREADABLE_STATISTICS, {"min_size_bytes": min_size_bytes})
    return [qualified(row.schema, row.table, plain=True) for row in rows]


def table_bloat_findings(tables: Iterable[TableBloat]) -> list[Finding]:
    """Turn bloated tables into findings whose fix rewrites the table."""
    return [
        Finding(
            check="table_bloat",
            severity="warning",
            what=f"table {name} wastes {_waste(table.wasted_bytes, table.size_bytes, table.exact)}",
            why="The empty space costs disk, backups, and reads: sequential scans read it "
            "too. VACUUM only makes it reusable; to give it back, rewrite the table. "
            "VACUUM FULL holds an ACCESS EXCLUSIVE lock for the whole rewrite, blocking "
            "reads and writes, and needs room for a second copy; the pg_repack "
            "extension and tool do the same online.",
            fix=f"VACUUM (FULL, ANALYZE) {name};",
            subject=name,
            details={
                "size_bytes": table.size_bytes,
                "wasted_bytes": table.wasted_bytes,
                "percent": round(table.percent, 1),
                "exact": table.exact,
            },
        )
        for table in tables
        for name in [qualified(table.schema, table.table, plain=True)]
    ]


def index_bloat_findings(indexes: Iterable[IndexBloat]) -> list[Finding]:
    """Turn bloated btree indexes into findings whose fix rebuilds them concurrently."""
    return [
        Finding(
            check="index_bloat",
            severity="warning",
            what=f"index {name} on {index.table} wastes "
            f"{_waste(index.wasted_bytes, index.size_bytes, index.exact)}",
            why="A bloated index takes more disk and cache, and scans of it read more "
            "pages. REINDEX CONCURRENTLY builds a compact copy without blocking writes; "
            "it needs room for the copy while it runs.",
            fix=f"REINDEX INDEX CONCURRENTLY {name};",
            subject=name,
            details={
                "size_bytes": index.size_bytes,
                "wasted_bytes": index.wasted_bytes,
                "percent": round(index.percent, 1),
                "exact": index.exact,
            },
        )
        for index in indexes
        for name in [qualified(index.schema, index.index, plain=True)]
    ]


def _table_bloat(
    conn: Connection,
    *,
    min_bloat_fraction: float = 0.2,
    min_wasted_bytes: int = _MIN_WASTED_BYTES,
    exact: bool = False,
) -> list[Finding]:
    tables = table_bloat(
        conn, min_bloat_fraction=min_bloat_fraction, min_wasted_bytes=min_wasted_bytes, exact=exact
    )
    return table_bloat_findings(tables) + _unestimated(conn, "table_bloat", min_wasted_bytes, exact)


def _index_bloat(
    conn: Connection,
    *,
    min_bloat_fraction: float = 0.2,
    min_wasted_bytes: int = _MIN_WASTED_BYTES,
    exact: bool = False,
) -> list[Finding]:
    indexes = index_bloat(
        conn, min_bloat_fraction=min_bloat_fraction, min_wasted_bytes=min_wasted_bytes, exact=exact
    )
    return index_bloat_findings(indexes) + _unestimated(
        conn, "index_bloat", min_wasted_bytes, exact
    )


CHECKS = (
    Check(
        "table_bloat",
        "bloat",
        "tables wasting space on dead rows and empty pages",
        _table_bloat,
    ),
    Check(
        "index_bloat",
        "bloat",
        "btree indexes wasting space a rebuild would give back",
        _index_bloat,
    ),
)


def check_bloat(
    conn: Connection,
    *,
    min_bloat_fraction: float = 0.2,
    min_wasted_bytes: int = _MIN_WASTED_BYTES,
    exact: bool = False,
) -> list[CheckResult]:
    """Check table and index bloat; return one result each."""
    return [
        check(
            conn,
            min_bloat_fraction=min_bloat_fraction,
            min_wasted_bytes=min_wasted_bytes,
            exact=exact,
        )
        for check in CHECKS
    ]


def _pgstattuple_schema(conn: Connection) -> str | None:
    schema: str | None = conn.execute(PGSTATTUPLE_SCHEMA).scalar_one_or_none()
    return schema


def _exact(conn: Connection, template: str) -> TextClause:
    schema = _pgstattuple_schema(conn)
    if schema is None:
        raise CheckSkipped(
            "pgstattuple is not installed in this database: CREATE EXTENSION pgstattuple "
            "(as a superuser; it ships with PostgreSQL's contrib modules)"
        )
    # The extension's schema is an identifier, quoted; every value stays a bind.
    return text(template.format(schema=quote_identifier(schema)))


def _unestimated(conn: Connection, check: str, min_size_bytes: int, exact: bool) -> list[Finding]:
    if exact:
        return []
    tables = unreadable_statistics(conn, min_size_bytes=min_size_bytes)
    if not tables:
        return []
    installed = has_pgstattuple(conn)
    which = (
        f"{len(tables)} tables" if check == "table_bloat" else f"indexes of {len(tables)} tables"
    )
    return [
        Finding(
            check=check,
            severity="info",
            what=f"{which} were not estimated: the role may not read the tables' planner "
            "statistics",
            why="The estimate needs column statistics, which pg_stats shows "
            "only to a role that may SELECT the columns. Either grant SELECT on them, or "
            "measure with pgstattuple (the check's exact=True), which pg_monitor may use "
            "without reading any data but which reads every page.",
            fix=None if installed else "CREATE EXTENSION pgstattuple;",
            subject=None,
            details={"tables": tables},
        )
    ]


def _waste(wasted_bytes: int, size_bytes: int, exact: bool) -> str:
    share = wasted_bytes / size_bytes if size_bytes else 0.0
    how = "measured" if exact else "estimated"
    return f"{format_size(wasted_bytes)} of {format_size(size_bytes)} ({share:.0%}, {how})"
