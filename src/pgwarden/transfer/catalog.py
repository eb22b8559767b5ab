"""Read the tables a transfer works on: columns, keys, foreign keys and triggers.

One model serves both sides. :func:`load_catalog` reads every ordinary and partitioned
table outside the system schemas, as an export sees the database: partitions are left
out (their parent stands for them), and :meth:`Catalog.dependency_order` sorts tables
parents first and reports the cycles between tables for which no such order exists.
:func:`load_tables` reads the tables an import, a rollback or an erasure writes into, by
name. Both describe a table as a :class:`CatalogTable`: the columns, primary and foreign
keys a bundle records (generated columns left out: COPY FROM cannot write them, the
target computes them again), and what writing into it needs besides: every column with
its identity, default and a type that holds its values whole, the unique keys an upsert
can resolve conflicts on, what each foreign key does on delete, the foreign keys that
point at the table, and its user triggers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import NAME_HINT, qualified, resolve_table, split_table_key, table_key
from pgwarden.errors import UserError
from pgwarden.transfer.bundle import BundleColumn, BundleForeignKey, TableSchema

__all__ = [
    "Catalog",
    "CatalogColumn",
    "CatalogForeignKey",
    "CatalogTable",
    "UniqueKey",
    "load_catalog",
    "load_tables",
]

_RELATIONS = """
SELECT c.oid,
       n.nspname AS schema,
       c.relname AS name,
       c.relkind = 'p' AS partitioned,
       GREATEST(c.reltuples, 0)::bigint AS estimated_rows
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
"""

# The tables an export can read: no partitions, no system or pgwarden tables.
_TABLES = text(
    _RELATIONS
    + """  AND NOT c.relispartition
  -- pgwarden's own schema holds journals and snapshots: operational state, not data
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgwarden')
  AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY n.nspname, c.relname
"""
)

# One table by name, whatever it is (an import may write into a partition).
_TABLE = text(
    _RELATIONS
    + """  AND n.nspname = :schema
  AND c.relname = :name
"""
)

_COLUMNS = text(
    """
SELECT a.attrelid AS oid,
       a.attname AS name,
       format_type(a.atttypid, a.atttypmod) AS type,
       a.atttypid AS type_oid,
       NOT a.attnotnull AS nullable,
       a.attgenerated <> '' AS generated,
       a.attidentity AS identity,
       a.atthasdef OR a.attidentity <> '' AS has_default,
       t.typcategory AS category,
       t.typname IN ('int2', 'int4', 'int8', 'oid', 'bool', 'char', 'name', 'text', 'varchar',
                     'date', 'time', 'timetz', 'timestamp', 'timestamptz', 'uuid', 'bytea',
                     'money', 'inet', 'cidr', 'macaddr', 'macaddr8')
         AND t.typnamespace = 'pg_catalog'::regnamespace
         AND coalesce(co.collisdeterministic, true) AS equal_is_identical,
       CASE WHEN a.atttypmod > 4 AND t.typname IN ('varchar', 'bpchar')
            THEN a.atttypmod - 4 END AS max_length,
       pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname),
                              a.attname) AS sequence,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS default_sql
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_collation co ON co.oid = a.attcollation
WHERE a.attrelid = ANY(:oids)
  AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""
)

# Primary keys, unique constraints and plain unique indexes (no predicate, no
# expression), and foreign keys both ways, each with its columns in key order. Only
# constraints declared on the top-level table (conparentid = 0 leaves out the copies
# PostgreSQL makes on each partition).
_KEYS = text(
    """
SELECT 'constraint' AS source,
       con.contype AS kind,
       con.conname AS name,
       con.conrelid AS oid,
       con.confrelid AS ref_oid,
       con.confdeltype AS on_delete,
       con.condeferrable AS deferrable,
       ARRAY(SELECT a.attname
             FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.i) AS columns,
       ARRAY(SELECT a.attname
             FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.i) AS ref_columns
FROM pg_constraint con
WHERE con.contype IN ('p', 'u', 'f')
  AND con.conparentid = 0
  AND (con.conrelid = ANY(:oids) OR (con.contype = 'f' AND con.confrelid = ANY(:oids)))
UNION ALL
SELECT 'index', 'u', ic.relname, i.indrelid, 0, ' ', false,
       ARRAY(SELECT a.attname
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.n),
       '{}'::name[]
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = ANY(:oids)
  AND i.indisunique
  AND NOT i.indisprimary
  AND i.indpred IS NULL
  AND i.indexprs IS NULL
  AND NOT EXISTS (SELECT FROM pg_constraint con WHERE con.conindid = i.indexrelid)
ORDER BY oid, name
"""
)

_TRIGGERS = text(
    """
SELECT tgrelid AS oid, tgname AS name, tgenabled AS enabled
FROM pg_trigger
WHERE tgrelid = ANY(:oids)
  AND NOT tgisinternal
  AND tgenabled IN ('O', 'A')
ORDER BY tgname
"""
)

# Each type the columns use, with the types it is built on (a domain's base type, an
# array's element type), to name a type that takes any of its values unchanged.
_TYPES = text(
    """
WITH RECURSIVE pgw_ty (oid) AS (
  SELECT unnest(CAST(:oids AS oid[]))
  UNION
  SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END
  FROM pgw_ty
  JOIN pg_type t ON t.oid = pgw_ty.oid
  WHERE t.typtype = 'd' OR (t.typelem <> 0 AND t.typcategory = 'A')
)
SELECT t.oid,
       t.typtype AS kind,
       t.typbasetype AS base,
       CASE WHEN t.typelem <> 0 AND e.typarray = t.oid THEN t.typelem END AS element,
       n.nspname = 'pg_catalog' AND t.typname IN ('bpchar', 'bit') AS sized,
       t.typname AS name,
       format_type(t.oid, NULL) AS formatted
FROM pgw_ty
JOIN pg_type t ON t.oid = pgw_ty.oid
JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_type e ON e.oid = t.typelem
"""
)

_NAMES = text(
    """
SELECT c.oid, n.nspname AS schema, c.relname AS name
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY(:oids)
"""
)


@dataclass(frozen=True)
class CatalogColumn(BundleColumn):
    """A column as the catalog describes it, with what an INSERT or UPDATE must respect."""

    # A type that holds any value of ``type`` unchanged: no length, precision or domain.
    # A cast to it never cuts or rounds; assigning the result to the column then checks
    # the column's modifier and domain, and refuses a value that does not fit.
    base_type: str
    generated: bool
    identity: str  # "a" GENERATED ALWAYS, "d" BY DEFAULT, "" neither
    has_default: bool
    category: str  # pg_type.typcategory: "S" string, "N" numeric, "A" array, "U" user...
    # Whether ``=`` holds only for identical values (not so for numeric 1.0 = 1.00,
    # float -0 = 0, interval '1 day' = '24 hours', jsonb, arrays, or a nondeterministic
    # collation): such columns compare with IS DISTINCT FROM, the rest by binary image.
    equal_is_identical: bool
    max_length: int | None
    sequence: str | None
    default: str | None = None  # the default's SQL, as pg_get_expr prints it


@dataclass(frozen=True)
class UniqueKey:
    """A primary key, unique constraint or unique index an upsert can resolve conflicts on."""

    name: str
    columns: tuple[str, ...]
    primary: bool


@dataclass(frozen=True)
class CatalogForeignKey(BundleForeignKey):
    """A foreign key ``name`` from ``table`` (``schema.name``) to :attr:`references`.

    ``on_delete`` is ``pg_constraint.confdeltype``: ``a`` no action, ``r`` restrict,
    ``c`` cascade, ``n`` set null, ``d`` set default.
    """

    name: str
    table: str
    on_delete: str
    deferrable: bool


@dataclass(frozen=True)
class CatalogTable(TableSchema):
    """A table as the catalog describes it: its schema as a bundle records it, and more.

    ``columns`` and ``foreign_keys`` are what a bundle records (no generated columns);
    ``all_columns`` has every column in table order, ``unique_keys`` the primary key
    first, ``referenced_by`` the foreign keys of any table that point at this one, and
    ``triggers`` the enabled user triggers as ``(name, pg_trigger.tgenabled)``.
    """

    columns: tuple[CatalogColumn, ...]
    foreign_keys: tuple[CatalogForeignKey, ...]
    oid: int = 0
    partitioned: bool = False  # RETURNING cannot give a partitioned table's xmin
    estimated_rows: int = 0
    all_columns: tuple[CatalogColumn, ...] = ()
    unique_keys: tuple[UniqueKey, ...] = ()
    referenced_by: tuple[CatalogForeignKey, ...] = ()
    triggers: tuple[tuple[str, str], ...] = ()

    @property
    def column_types(self) -> dict[str, str]:
        """Return each column's type as ``format_type`` prints it, by column name."""
        return {column.name: column.type for column in self.columns}

    @cached_property
    def by_name(self) -> dict[str, CatalogColumn]:
        """Return every column (generated ones too) by name, in table order."""
        return {column.name: column for column in self.all_columns}

    @property
    def sql(self) -> str:
        """Return the table's name quoted for SQL."""
        return qualified(self.schema, self.name)

    @property
    def writable(self) -> list[str]:
        """Return the columns an INSERT may name: all but generated ones."""
        return [column.name for column in self.all_columns if not column.generated]

    @property
    def identity_always(self) -> bool:
        """Return whether an INSERT naming every column needs OVERRIDING SYSTEM VALUE."""
        return any(column.identity == "a" for column in self.all_columns)

    def key(self, name: str | None = None) -> UniqueKey:
        """Return the unique key ``name`` (default: the primary key), or raise UserError."""
        for key in self.unique_keys:
            if (name is None and key.primary) or key.name == name:
                return key
        if name is None:
            raise UserError(
                f"{self.qualified} has no primary key, so rows cannot be matched or journaled.",
                hint="Name a unique constraint whose columns are NOT NULL with --conflict-key.",
            )
        known = ", ".join(key.name for key in self.unique_keys) or "none"
        raise UserError(
            f"{self.qualified} has no unique constraint or index {name!r} (it has: {known}).",
            hint="Name a primary key, unique constraint or plain unique index.",
        )

    def row_key(self, conflict: UniqueKey) -> tuple[str, ...]:
        """Return the columns that name a row in the journal: the primary key, else ``conflict``.

        A key with a nullable column cannot name a row (NULLs never match), so a table
        without a primary key needs a NOT NULL unique key.
        """
        if self.primary_key:
            return self.primary_key
        if any(self.by_name[c].nullable for c in conflict.columns):
            raise UserError(
                f"{self.qualified} has no primary key, and {conflict.name} allows NULLs.",
                hint="Add a primary key, or name a unique key of NOT NULL columns.",
            )
        return conflict.columns

    def self_referencing(self) -> bool:
        """Return whether a foreign key of the table points at the table itself."""
        return any(fk.references == self.qualified for fk in self.foreign_keys)


@dataclass(frozen=True)
class Catalog:
    """The tables of a database and the foreign keys between them."""

    tables: dict[str, CatalogTable]
    _children: dict[str, list[tuple[str, CatalogForeignKey]]] = field(default_factory=dict)
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

    def children(self, name: str) -> list[tuple[str, CatalogForeignKey]]:
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
    """Read every table outside the system schemas: columns, keys, foreign keys, triggers.

    A foreign key to a table the catalog leaves out (a partition, a system or pgwarden
    table) is left out too: an export cannot follow it.
    """
    described = _describe(conn, conn.execute(_TABLES).all())
    tables = {
        name: replace(
            table,
            foreign_keys=tuple(fk for fk in table.foreign_keys if fk.references in described),
        )
        for name, table in described.items()
    }
    children: dict[str, list[tuple[str, CatalogForeignKey]]] = {}
    deferrable: set[tuple[str, tuple[str, ...]]] = set()
    for name, table in tables.items():
        for fk in table.foreign_keys:
            children.setdefault(fk.references, []).append((name, fk))
            if fk.deferrable:
                deferrable.add((name, fk.columns))
    return Catalog(
        tables=tables,
        _children=children,
        deferrable=frozenset(deferrable),
        resolver=partial(resolve_table, conn),
    )


def load_tables(conn: Connection, names: Iterable[tuple[str, str]]) -> dict[str, CatalogTable]:
    """Return the tables ``(schema, name)`` that exist, keyed by ``schema.name``.

    A name that is not an ordinary or partitioned table is left out: the caller says
    which are missing. A partition is read as any table. Foreign keys pointing at the
    tables (``referenced_by``) come from every table of the database.
    """
    rows = []
    for schema, name in names:
        row = conn.execute(_TABLE, {"schema": schema, "name": name}).first()
        if row is not None:
            rows.append(row)
    return _describe(conn, rows)


def _describe(conn: Connection, relations: Sequence[Any]) -> dict[str, CatalogTable]:
    """Describe the tables of ``relations`` (rows of oid, schema, name and their figures)."""
    by_oid = {row.oid: row for row in relations}
    oids = list(by_oid)
    if not oids:
        return {}
    columns: dict[int, list[CatalogColumn]] = {}
    column_rows = conn.execute(_COLUMNS, {"oids": oids}).all()
    wide = _wide_types(conn, {row.type_oid for row in column_rows})
    for row in column_rows:
        columns.setdefault(row.oid, []).append(
            CatalogColumn(
                name=row.name,
                type=row.type,
                nullable=row.nullable,
                base_type=wide[row.type_oid],
                generated=row.generated,
                identity=row.identity,
                has_default=row.has_default,
                category=row.category,
                equal_is_identical=row.equal_is_identical,
                max_length=row.max_length,
                sequence=row.sequence,
                default=row.default_sql,
            )
        )
    keys = conn.execute(_KEYS, {"oids": oids}).all()
    names = _names(
        conn, {key.oid for key in keys} | {key.ref_oid for key in keys if key.kind == "f"}
    )
    unique: dict[int, list[UniqueKey]] = {}
    foreign: dict[int, list[CatalogForeignKey]] = {}
    referenced_by: dict[int, list[CatalogForeignKey]] = {}
    for key in keys:
        if key.kind in ("p", "u") and key.oid in by_oid:
            unique.setdefault(key.oid, []).append(
                UniqueKey(key.name, tuple(key.columns), primary=key.kind == "p")
            )
        elif key.kind == "f":
            ref_schema, ref_table = names[key.ref_oid]
            fk = CatalogForeignKey(
                columns=tuple(key.columns),
                ref_schema=ref_schema,
                ref_table=ref_table,
                ref_columns=tuple(key.ref_columns),
                name=key.name,
                table=table_key(*names[key.oid]),
                on_delete=key.on_delete,
                deferrable=key.deferrable,
            )
            if key.oid in by_oid:
                foreign.setdefault(key.oid, []).append(fk)
            if key.ref_oid in by_oid:
                referenced_by.setdefault(key.ref_oid, []).append(fk)
    triggers: dict[int, list[tuple[str, str]]] = {}
    for row in conn.execute(_TRIGGERS, {"oids": oids}):
        triggers.setdefault(row.oid, []).append((row.name, row.enabled))
    tables = {}
    for oid, row in by_oid.items():
        every = tuple(columns.get(oid, []))
        keys_here = sorted(unique.get(oid, []), key=lambda key: (not key.primary, key.name))
        tables[table_key(row.schema, row.name)] = CatalogTable(
            schema=row.schema,
            name=row.name,
            columns=tuple(column for column in every if not column.generated),
            primary_key=next((key.columns for key in keys_here if key.primary), ()),
            foreign_keys=tuple(foreign.get(oid, [])),
            oid=oid,
            partitioned=row.partitioned,
            estimated_rows=row.estimated_rows,
            all_columns=every,
            unique_keys=tuple(keys_here),
            referenced_by=tuple(referenced_by.get(oid, [])),
            triggers=tuple(triggers.get(oid, [])),
        )
    return tables


def _wide_types(conn: Connection, oids: set[int]) -> dict[int, str]:
    """Return, for each type of ``oids``, the type a cast to which keeps every value whole.

    ``format_type(oid, NULL)`` is not that: it prints ``character`` and ``bit``, which a
    cast reads as ``char(1)`` and ``bit(1)``; and a cast to a domain over ``varchar(n)``
    cuts to its length. So domains give way to their base types, arrays are of the wide
    type of their elements, and ``char``/``bit`` widen to ``bpchar``/``varbit``.
    """
    types = {row.oid: row for row in conn.execute(_TYPES, {"oids": sorted(oids)})}

    def wide(oid: int) -> str:
        row = types[oid]
        if row.kind == "d":
            return wide(row.base)
        if row.element is not None:
            return wide(row.element) + "[]"
        if row.sized:
            return "pg_catalog.bpchar" if row.name == "bpchar" else "pg_catalog.varbit"
        return str(row.formatted)

    return {oid: wide(oid) for oid in oids}


def _names(conn: Connection, oids: set[int]) -> dict[int, tuple[str, str]]:
    rows = conn.execute(_NAMES, {"oids": sorted(oids)}).all()
    return {row.oid: (row.schema, row.name) for row in rows}


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
