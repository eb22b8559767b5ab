"""Read the tables a transfer works on: columns, keys, and the foreign-key graph.

:func:`load_catalog` reads every ordinary and partitioned table outside the system
schemas in three queries. Partitions are left out (their parent stands for them), as are
generated columns (COPY FROM cannot write them; the target computes them again).
:meth:`Catalog.dependency_order` sorts tables parents first and reports the cycles
between tables for which no such order exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import NAME_HINT, resolve_table, split_table_key, table_key
from pgwarden.errors import UserError
from pgwarden.transfer.bundle import BundleColumn, BundleForeignKey, TableSchema

__all__ = ["KEY_COLUMNS", "Catalog", "CatalogTable", "load_catalog"]

TABLES = text(
    """
SELECT c.oid,
       n.nspname AS schema,
       c.relname AS name,
       c.relkind = 'p' AS partitioned,
       GREATEST(c.reltuples, 0)::bigint AS estimated_rows
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  -- pgwarden's own schema holds journals and snapshots: operational state, not data
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgwarden')
  AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY n.nspname, c.relname
"""
)

COLUMNS = text(
    """
SELECT a.attrelid AS oid,
       a.attname AS name,
       format_type(a.atttypid, a.atttypmod) AS type,
       NOT a.attnotnull AS nullable
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND a.attnum > 0
  AND NOT a.attisdropped
  AND a.attgenerated = ''
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY a.attrelid, a.attnum
"""
)

# A constraint's columns and, for a foreign key, the referenced ones, in key order.
KEY_COLUMNS = """
       ARRAY(SELECT a.attname
             FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.i) AS columns,
       ARRAY(SELECT a.attname
             FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.i) AS ref_columns
"""

# Keys: primary keys and foreign keys declared on the top-level table (conparentid = 0
# leaves out the copies PostgreSQL makes on each partition). Column lists keep key order.
KEYS = text(
    """
SELECT con.contype AS kind,
       con.condeferrable AS deferrable,
       con.conrelid AS oid,
       con.confrelid AS ref_oid,
"""
    + KEY_COLUMNS
    + """FROM pg_constraint con
WHERE con.contype IN ('p', 'f')
  AND con.conparentid = 0
ORDER BY con.conrelid, con.conname
"""
)


@dataclass(frozen=True)
class CatalogTable(TableSchema):
    """A table as the catalog describes it, with what the export needs besides its schema."""

    partitioned: bool = False
    estimated_rows: int = 0

    @property
    def column_types(self) -> dict[str, str]:
        """Return each column's type as ``format_type`` prints it, by column name."""
        return {column.name: column.type for column in self.columns}


@dataclass(frozen=True)
class Catalog:
    """The tables of a database and the foreign keys between them."""

    tables: dict[str, CatalogTable]
    _children: dict[str, list[tuple[str, BundleForeignKey]]] = field(default_factory=dict)
    deferrable: frozenset[tuple[str, tuple[str, ...]]] = frozenset()
    # Reads a table name as SQL does (pgwarden._sql.resolve_table on the catalog's
    # connection); without one, names are taken as table keys.
    resolver: Callable[[str], tuple[str, str]] | None = None

    def table(self, key: str) -> CatalogTable:
        """Return the table of ``key`` (``schema.name`` as :func:`table_key` writes it)."""
        found = self.tables.get(key)
        if found is None:
            raise UserError(f"no table {key!r} in the database.", hint=NAME_HINT)
        return found

    def find(self, name: str) -> CatalogTable:
        """Return the table a user's ``name`` names, read as SQL reads it, or raise UserError.

        ``users``, ``Users`` and ``public.users`` are one table; ``"Users"`` another. Every
        command that takes a table reads its name this way (:func:`pgwarden._sql.resolve_table`).
        """
        schema, table = self.resolver(name) if self.resolver else split_table_key(name)
        found = self.tables.get(table_key(schema, table))
        if found is None:
            raise UserError(
                f"{name!r} is {schema}.{table}, which pgwarden does not export"
                " (a system or pgwarden table).",
                hint=NAME_HINT,
            )
        return found

    def children(self, name: str) -> list[tuple[str, BundleForeignKey]]:
        """Return the foreign keys that reference table ``name``, with the referencing table."""
        return self._children.get(name, [])

    def dependency_order(self, names: Iterable[str]) -> tuple[list[str], list[list[str]]]:
        """Return ``names`` parents first, and the cycles (two or more tables) among them.

        Foreign keys to tables outside ``names`` and self-references do not constrain the
        order. Inside a cycle, tables are ordered by the keys checked at once (deferrable
        keys wait for the commit), then by the NOT NULL ones (a nullable key can be
        loaded empty and set after), then alphabetically.
        """
        wanted = sorted(set(names))
        edges = {name: self._parents(name, wanted) for name in wanted}
        parents = {name: {parent for parent, _ in edges[name]} for name in wanted}
        components = _strongly_connected(wanted, parents)
        order: list[str] = []
        placed: set[str] = set()
        pending = list(components)
        while pending:
            for component in pending:
                needs = set().union(*(parents[name] for name in component)) - set(component)
                if needs <= placed:
                    order.extend(self._cycle_order(component, edges))
                    placed.update(component)
                    pending.remove(component)
                    break
        cycles = [component for component in components if len(component) > 1]
        return order, cycles

    def _parents(self, name: str, wanted: list[str]) -> list[tuple[str, str]]:
        """Return (parent, strength) per foreign key: hard, nullable, or deferrable."""
        table = self.tables[name]
        nullable = {column.name for column in table.columns if column.nullable}
        result = []
        for fk in table.foreign_keys:
            if fk.references not in wanted or fk.references == name:
                continue
            if (name, fk.columns) in self.deferrable:
                strength = "deferrable"
            elif any(column in nullable for column in fk.columns):
                strength = "nullable"
            else:
                strength = "hard"
            result.append((fk.references, strength))
        return result

    @staticmethod
    def _cycle_order(component: list[str], edges: dict[str, list[tuple[str, str]]]) -> list[str]:
        if len(component) == 1:
            return component
        for ignored in ({"deferrable"}, {"deferrable", "nullable"}):
            needs = {
                name: {
                    p for p, strength in edges[name] if p in component and strength not in ignored
                }
                for name in component
            }
            order: list[str] = []
            while len(order) < len(component):
                ready = [n for n in component if n not in order and needs[n] <= set(order)]
                if not ready:
                    break
                order.append(ready[0])
            if len(order) == len(component):
                return order
        return component


def load_catalog(conn: Connection) -> Catalog:
    """Read every table outside the system schemas: columns, primary and foreign keys."""
    rows = conn.execute(TABLES).all()
    names = {row.oid: table_key(row.schema, row.name) for row in rows}
    parts = {row.oid: (row.schema, row.name) for row in rows}
    columns: dict[int, list[BundleColumn]] = {}
    for row in conn.execute(COLUMNS):
        if row.oid in names:
            columns.setdefault(row.oid, []).append(BundleColumn(row.name, row.type, row.nullable))
    deferrable: set[tuple[str, tuple[str, ...]]] = set()
    primary: dict[int, tuple[str, ...]] = {}
    foreign: dict[int, list[BundleForeignKey]] = {}
    for row in conn.execute(KEYS):
        if row.oid not in names:
            continue
        if row.kind == "p":
            primary[row.oid] = tuple(row.columns)
        elif row.ref_oid in names:
            schema, table = parts[row.ref_oid]
            foreign.setdefault(row.oid, []).append(
                BundleForeignKey(tuple(row.columns), schema, table, tuple(row.ref_columns))
            )
            if row.deferrable:
                deferrable.add((names[row.oid], tuple(row.columns)))
    tables = {
        names[row.oid]: CatalogTable(
            schema=row.schema,
            name=row.name,
            columns=tuple(columns.get(row.oid, [])),
            primary_key=primary.get(row.oid, ()),
            foreign_keys=tuple(foreign.get(row.oid, [])),
            partitioned=row.partitioned,
            estimated_rows=row.estimated_rows,
        )
        for row in rows
    }
    children: dict[str, list[tuple[str, BundleForeignKey]]] = {}
    for name, table in tables.items():
        for fk in table.foreign_keys:
            children.setdefault(fk.references, []).append((name, fk))
    return Catalog(
        tables=tables,
        _children=children,
        deferrable=frozenset(deferrable),
        resolver=partial(resolve_table, conn),
    )


def _strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components of the graph (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            result.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return result
