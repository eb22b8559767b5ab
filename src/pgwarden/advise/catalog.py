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

__all__ = ["ExistingIndex", "QueriedTable", "QueryCatalog", "load_catalog"]

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
 AND NOT st.inherited
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
       pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_am AS am ON am.oid = c.relam
WHERE i.indrelid = ANY(CAST(:oids AS oid[]))
  AND i.indisvalid
  AND am.amname = 'btree'
ORDER BY i.indrelid, c.relname
"""
)


@dataclass(frozen=True)
class ExistingIndex:
    """A valid B-tree index already on a table; ``None`` stands for an expression key."""

    name: str
    columns: tuple[str | None, ...]
    partial: bool
    definition: str


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
    indexes: list[ExistingIndex] = field(default_factory=list)

    @property
    def qualified(self) -> str:
        """Return the table's name, schema-qualified and quoted for SQL."""
        return qualified(self.schema, self.name, plain=True)

    @property
    def user_table(self) -> bool:
        """Return whether an index can be advised here: a plain table of the application."""
        return self.kind == "r" and self.application

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
            tables[int(row.oid)].columns[row.name] = int(row.width)
            tables[int(row.oid)].distinct[row.name] = float(row.distinct_values or 0)
        for row in conn.execute(_INDEXES, {"oids": oids}):
            tables[int(row.oid)].indexes.append(
                ExistingIndex(row.name, tuple(row.columns), bool(row.partial), row.definition)
            )
    for position, oid in resolved.items():
        by_name[wanted[position]] = tables.get(oid)
    return QueryCatalog(by_name=by_name, tables=tables)
