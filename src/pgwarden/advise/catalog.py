"""What the advisor needs to know about the tables the queries read.

Names are resolved the way the server resolves them for this session (its
``search_path``), so ``content`` means the same table to the advisor as to the
application. For each table: its columns, its valid B-tree indexes, its size, its read
and write counts, and each column's average width (for index size estimates) and number
of distinct values (to put the most selective equality column first).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import qualified, quote_identifier

__all__ = [
    "ExistingIndex",
    "Partition",
    "QueriedTable",
    "QueryCatalog",
    "immutable",
    "load_catalog",
]

# Schemas whose tables are the server's, not the application's.
SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema"})

_RESOLVE = text(
    """
SELECT r.ord,
       c.oid,
       n.nspname AS schema,
       c.relname AS name,
       c.relkind AS kind
FROM unnest(CAST(:names AS text[])) WITH ORDINALITY AS r(name, ord)
JOIN pg_class AS c ON c.oid = to_regclass(r.name)
JOIN pg_namespace AS n ON n.oid = c.relnamespace
"""
)

_TABLES = text(
    """
SELECT c.oid,
       n.nspname AS schema,
       c.relname AS name,
       c.relkind AS kind,
       c.reltuples::float8 AS reltuples,
       c.relpages::bigint AS relpages,
       coalesce(s.n_tup_ins + s.n_tup_upd + s.n_tup_del, 0)::bigint AS writes,
       coalesce(s.seq_scan + coalesce(s.idx_scan, 0), 0)::bigint AS reads
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_all_tables AS s ON s.relid = c.oid
WHERE c.oid = ANY(CAST(:oids AS oid[]))
"""
)

_COLUMNS = text(
    """
SELECT a.attrelid AS oid,
       a.attname AS name,
       format_type(a.atttypid, NULL) AS type,
       coalesce(st.correlation, 0)::float8 AS correlation,
       coalesce(st.avg_width, CASE WHEN a.attlen > 0 THEN a.attlen ELSE 32 END) AS width,
       CASE
         WHEN st.n_distinct >= 0 THEN st.n_distinct
         ELSE -st.n_distinct * greatest(c.reltuples, 0)
       END::float8 AS distinct_values
FROM pg_attribute AS a
JOIN pg_class AS c ON c.oid = a.attrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_stats AS st
  ON st.schemaname = n.nspname AND st.tablename = c.relname AND st.attname = a.attname
 AND st.inherited = (c.relkind = 'p')
WHERE a.attrelid = ANY(CAST(:oids AS oid[]))
  AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""
)

# Key columns by name, in order; an expression key is NULL. INCLUDE columns are left
# out: they cannot serve a comparison or an order.
_INDEXES = text(
    """
SELECT i.indrelid AS oid,
       c.relname AS name,
       ARRAY(
         SELECT a.attname::text
         FROM unnest((string_to_array(i.indkey::text, ' ')::int2[])[1:i.indnkeyatts])
              WITH ORDINALITY AS k(attnum, ord)
         LEFT JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         ORDER BY k.ord
       ) AS columns,
       i.indpred IS NOT NULL AS partial,
       i.indisunique OR i.indisprimary OR i.indisexclusion
         OR EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = i.indexrelid) AS enforces,
       pg_get_indexdef(i.indexrelid) AS definition,
       pg_relation_size(i.indexrelid)::bigint AS size_bytes
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_am AS am ON am.oid = c.relam
WHERE i.indrelid = ANY(CAST(:oids AS oid[]))
  AND i.indisvalid
  AND am.amname = 'btree'
ORDER BY i.indrelid, c.relname
"""
)


# The partitions under each partitioned table, every level, with the parent each hangs on.
_PARTITIONS = text(
    """
WITH RECURSIVE tree(root, oid, parent, depth) AS (
  SELECT c.oid, c.oid, NULL::oid, 0
  FROM pg_class AS c
  WHERE c.oid = ANY(CAST(:oids AS oid[]))
    AND c.relkind = 'p'
  UNION ALL
  SELECT t.root, i.inhrelid, i.inhparent, t.depth + 1
  FROM tree AS t
  JOIN pg_inherits AS i ON i.inhparent = t.oid
)
SELECT t.root,
       n.nspname AS schema,
       c.relname AS name,
       p.relname AS parent,
       c.relkind = 'p' AS partitioned
FROM tree AS t
JOIN pg_class AS c ON c.oid = t.oid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_class AS p ON p.oid = t.parent
ORDER BY t.root, t.depth, n.nspname, c.relname
"""
)

# Whether each function or operator an expression applies is IMMUTABLE, as an index
# needs: the overload taking the column's type, else every overload of that name.
_VOLATILITY = text(
    """
WITH candidates AS (
  SELECT p.provolatile,
         format_type(p.proargtypes[:position], NULL) = :type AS exact
  FROM pg_proc AS p
  WHERE :kind = 'f'
    AND p.proname = :name
    AND p.pronargs = :nargs
  UNION ALL
  SELECT f.provolatile,
         format_type(o.oprleft, NULL) = :type
  FROM pg_operator AS o
  JOIN pg_proc AS f ON f.oid = o.oprcode
  WHERE :kind = 'o'
    AND o.oprname = :name
)
SELECT coalesce(
         bool_and(provolatile = 'i') FILTER (WHERE exact),
         bool_and(provolatile = 'i')
       ) AS immutable
FROM candidates
"""
)


@dataclass(frozen=True)
class ExistingIndex:
    """A valid B-tree index already on a table; ``None`` stands for an expression key.

    ``enforces`` is true for an index behind a constraint (unique, primary key,
    exclusion), which cannot be dropped for a wider one.
    """

    name: str
    columns: tuple[str | None, ...]
    partial: bool
    definition: str
    enforces: bool = False
    size_bytes: int = 0


@dataclass(frozen=True)
class Partition:
    """A partition under a partitioned table, and the table it is a partition of."""

    schema: str
    name: str
    parent: str
    partitioned: bool

    @property
    def qualified(self) -> str:
        """Return the partition's name, schema-qualified and quoted for SQL."""
        return qualified(self.schema, self.name, plain=True)


@dataclass
class QueriedTable:
    """A table the queries read, with what the advisor weighs an index on it by."""

    oid: int
    schema: str
    name: str
    kind: str
    reltuples: float
    relpages: int
    writes: int
    reads: int
    columns: dict[str, int] = field(default_factory=dict)  # name -> average width
    distinct: dict[str, float] = field(default_factory=dict)  # name -> distinct values
    types: dict[str, str] = field(default_factory=dict)  # name -> type, as format_type
    correlation: dict[str, float] = field(default_factory=dict)  # physical order, -1..1
    indexes: list[ExistingIndex] = field(default_factory=list)
    partitions: list[Partition] = field(default_factory=list)  # of a partitioned table

    @property
    def partitioned(self) -> bool:
        """Return whether this is a partitioned table (its rows live in partitions)."""
        return self.kind == "p"

    @property
    def qualified(self) -> str:
        """Return the table's name, schema-qualified and quoted for SQL."""
        return qualified(self.schema, self.name, plain=True)

    @property
    def user_table(self) -> bool:
        """Return whether an index can be advised here: a plain table of the application."""
        return self.kind in ("r", "p") and self.application

    @property
    def application(self) -> bool:
        """Return whether the relation is the application's, not the server's."""
        return self.schema not in SYSTEM_SCHEMAS and not self.schema.startswith(
            ("pg_toast", "pg_temp")
        )


@dataclass
class QueryCatalog:
    """The tables named by a set of queries, looked up once."""

    by_name: dict[tuple[str | None, str], QueriedTable | None]
    tables: dict[int, QueriedTable]

    def table(self, schema: str | None, name: str) -> QueriedTable | None:
        """Return the table ``schema.name`` (or ``name`` on the search path) names, if any."""
        return self.by_name.get((schema, name))


def load_catalog(conn: Connection, names: Iterable[tuple[str | None, str]]) -> QueryCatalog:
    """Look up the relations ``names`` mean in this session, and what the advisor needs.

    A name that resolves to nothing (a CTE, a typo, a table of another database) maps
    to ``None``.
    """
    wanted = sorted(set(names), key=lambda n: (n[0] or "", n[1]))
    spelled = [
        qualified(schema, name, plain=True) if schema else quote_identifier(name, plain=True)
        for schema, name in wanted
    ]
    by_name: dict[tuple[str | None, str], QueriedTable | None] = dict.fromkeys(wanted)
    resolved: dict[int, int] = {}
    if wanted:
        for row in conn.execute(_RESOLVE, {"names": spelled}):
            resolved[int(row.ord) - 1] = int(row.oid)
    oids = sorted(set(resolved.values()))
    tables: dict[int, QueriedTable] = {}
    if oids:
        for found in conn.execute(_TABLES, {"oids": oids}).mappings():
            tables[int(found["oid"])] = QueriedTable(**found)
        for row in conn.execute(_COLUMNS, {"oids": oids}):
            table = tables[int(row.oid)]
            table.columns[row.name] = int(row.width)
            table.distinct[row.name] = float(row.distinct_values or 0)
            table.types[row.name] = str(row.type)
            table.correlation[row.name] = float(row.correlation)
        for row in conn.execute(_INDEXES, {"oids": oids}):
            tables[int(row.oid)].indexes.append(
                ExistingIndex(
                    row.name,
                    tuple(row.columns),
                    bool(row.partial),
                    row.definition,
                    bool(row.enforces),
                    int(row.size_bytes),
                )
            )
        for row in conn.execute(_PARTITIONS, {"oids": oids}):
            tables[int(row.root)].partitions.append(
                Partition(row.schema, row.name, row.parent, bool(row.partitioned))
            )
    for position, oid in resolved.items():
        by_name[wanted[position]] = tables.get(oid)
    return QueryCatalog(by_name=by_name, tables=tables)


def immutable(
    conn: Connection, calls: Iterable[tuple[str, str, int, int]], column_type: str
) -> bool:
    """Return whether every function and operator in ``calls`` is IMMUTABLE (``provolatile``).

    An index can hold only an immutable expression: ``date_trunc('day', ts)`` is one on
    ``timestamp`` and is not on ``timestamptz`` (it depends on the time zone setting).
    """
    for kind, name, nargs, position in calls:
        found = conn.execute(
            _VOLATILITY,
            {
                "kind": kind,
                "name": name,
                "nargs": nargs,
                "position": position,
                "type": column_type,
            },
        ).scalar()
        if not found:
            return False
    return True
