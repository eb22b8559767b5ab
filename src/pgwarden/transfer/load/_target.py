"""Read what writing into a table needs to know: columns, keys, foreign keys, triggers.

:mod:`pgwarden.transfer.catalog` describes tables the way a bundle does (and the schema
fingerprint covers); writing into them needs more: which columns are generated or
identities, the unique keys an upsert can resolve conflicts on, what each foreign key
does on delete, which foreign keys point at a table, and the user triggers to switch off.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import qualified as qualified_name
from pgwarden._sql import quote_identifier as quote
from pgwarden._sql import split_table_key, table_key
from pgwarden.errors import UserError
from pgwarden.transfer.catalog import KEY_COLUMNS

__all__ = [
    "Column",
    "ForeignKey",
    "Target",
    "UniqueKey",
    "column_list",
    "key_json",
    "load_targets",
    "match",
    "sql_name",
    "triggers_off",
]

_RELATIONS = text(
    """
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind = 'p' AS partitioned
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname = :schema
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
# expression), and foreign keys both ways, each with its columns in key order.
_KEYS = text(
    """
SELECT 'constraint' AS source,
       con.contype AS kind,
       con.conname AS name,
       con.conrelid AS oid,
       con.confrelid AS ref_oid,
       con.confdeltype AS on_delete,
       con.condeferrable AS deferrable,
"""
    + KEY_COLUMNS
    + """FROM pg_constraint con
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
class Column:
    """A column of a target table, with what an INSERT or UPDATE of it must respect."""

    name: str
    type: str
    # A type that holds any value of ``type`` unchanged: no length, precision or domain.
    # A cast to it never cuts or rounds; assigning the result to the column then checks
    # the column's modifier and domain, and refuses a value that does not fit.
    base_type: str
    nullable: bool
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
class ForeignKey:
    """A foreign key from ``table`` (``schema.name``) ``columns`` to ``ref_table``.

    ``on_delete`` is ``pg_constraint.confdeltype``: ``a`` no action, ``r`` restrict,
    ``c`` cascade, ``n`` set null, ``d`` set default.
    """

    name: str
    table: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str
    deferrable: bool


@dataclass
class Target:
    """A table to write into: ``schema.name``, its columns, keys, and foreign keys."""

    oid: int
    schema: str
    name: str
    columns: dict[str, Column] = field(default_factory=dict)
    unique_keys: list[UniqueKey] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)  # from this table
    referenced_by: list[ForeignKey] = field(default_factory=list)  # to this table
    triggers: list[tuple[str, str]] = field(default_factory=list)  # (name, tgenabled)
    partitioned: bool = False  # RETURNING cannot give a partitioned table's xmin

    @property
    def qualified(self) -> str:
        """Return ``schema.name`` unquoted, as bundles and the journal name tables."""
        return table_key(self.schema, self.name)

    @property
    def sql(self) -> str:
        """Return the table's name quoted for SQL."""
        return qualified_name(self.schema, self.name)

    @property
    def primary_key(self) -> tuple[str, ...]:
        """Return the primary key's columns, or ``()`` when the table has none."""
        return next((key.columns for key in self.unique_keys if key.primary), ())

    @property
    def writable(self) -> list[str]:
        """Return the columns an INSERT may name: all but generated ones."""
        return [c.name for c in self.columns.values() if not c.generated]

    @property
    def identity_always(self) -> bool:
        """Return whether an INSERT naming every column needs OVERRIDING SYSTEM VALUE."""
        return any(c.identity == "a" for c in self.columns.values())

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
        if any(self.columns[c].nullable for c in conflict.columns):
            raise UserError(
                f"{self.qualified} has no primary key, and {conflict.name} allows NULLs.",
                hint="Add a primary key, or name a unique key of NOT NULL columns.",
            )
        return conflict.columns

    def self_referencing(self) -> bool:
        """Return whether a foreign key of the table points at the table itself."""
        return any(fk.ref_table == self.qualified for fk in self.foreign_keys)


def load_targets(conn: Connection, names: Iterable[tuple[str, str]]) -> dict[str, Target]:
    """Return the tables ``(schema, name)`` that exist, keyed by ``schema.name``.

    A name that is not an ordinary or partitioned table is left out: the caller says
    which are missing. Foreign keys pointing at the tables (``referenced_by``) come from
    every table of the database.
    """
    targets: dict[int, Target] = {}
    for schema, name in names:
        row = conn.execute(_RELATIONS, {"schema": schema, "name": name}).first()
        if row is not None:
            targets[row.oid] = Target(
                oid=row.oid, schema=row.schema, name=row.name, partitioned=row.partitioned
            )
    oids = list(targets)
    if not oids:
        return {}
    columns = conn.execute(_COLUMNS, {"oids": oids}).all()
    wide = _wide_types(conn, {row.type_oid for row in columns})
    for row in columns:
        targets[row.oid].columns[row.name] = Column(
            name=row.name,
            type=row.type,
            base_type=wide[row.type_oid],
            nullable=row.nullable,
            generated=row.generated,
            identity=row.identity,
            has_default=row.has_default,
            category=row.category,
            equal_is_identical=row.equal_is_identical,
            max_length=row.max_length,
            sequence=row.sequence,
            default=row.default_sql,
        )
    keys = conn.execute(_KEYS, {"oids": oids}).all()
    others = {key.oid for key in keys} | {key.ref_oid for key in keys if key.kind == "f"}
    names_by_oid = _names(conn, others)
    for key in keys:
        if key.kind in ("p", "u") and key.oid in targets:
            targets[key.oid].unique_keys.append(
                UniqueKey(key.name, tuple(key.columns), primary=key.kind == "p")
            )
        elif key.kind == "f":
            fk = ForeignKey(
                name=key.name,
                table=names_by_oid[key.oid],
                columns=tuple(key.columns),
                ref_table=names_by_oid[key.ref_oid],
                ref_columns=tuple(key.ref_columns),
                on_delete=key.on_delete,
                deferrable=key.deferrable,
            )
            if key.oid in targets:
                targets[key.oid].foreign_keys.append(fk)
            if key.ref_oid in targets:
                targets[key.ref_oid].referenced_by.append(fk)
    for row in conn.execute(_TRIGGERS, {"oids": oids}):
        targets[row.oid].triggers.append((row.name, row.enabled))
    for target in targets.values():
        target.unique_keys.sort(key=lambda key: (not key.primary, key.name))
    return {target.qualified: target for target in targets.values()}


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


def _names(conn: Connection, oids: set[int]) -> dict[int, str]:
    rows = conn.execute(_NAMES, {"oids": sorted(oids)}).all()
    return {row.oid: table_key(row.schema, row.name) for row in rows}


def sql_name(qualified: str) -> str:
    """Return a table key (``schema.name``, see :func:`pgwarden._sql.table_key`) quoted for SQL."""
    schema, table = split_table_key(qualified)
    return qualified_name(schema, table)


def column_list(names: Iterable[str], alias: str | None = None) -> str:
    """Return ``a, b, c`` (or ``t.a, t.b``) quoted for SQL."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + quote(name) for name in names)


def key_json(
    columns: Iterable[str],
    alias: str,
    params: dict[str, Any],
    prefix: str,
    *,
    as_text: bool = False,
) -> str:
    """Return ``jsonb_build_object(:k0, alias.c0, ...)``, binding the names into ``params``.

    Names go as bound values, never into the SQL text; the journal's keys are built only
    here, so the same key always has the same JSON. ``as_text`` gives every value as
    its text, as a report shows keys.
    """
    parts = []
    for i, name in enumerate(columns):
        params[f"{prefix}{i}"] = name
        value = f"{alias}.{quote(name)}"
        parts.append(
            f"CAST(:{prefix}{i} AS text), {f'CAST({value} AS text)' if as_text else value}"
        )
    return f"jsonb_build_object({', '.join(parts)})"


def match(columns: Iterable[str], left: str, right: str) -> str:
    """Return ``left.a = right.a AND left.b = right.b`` for ``columns``."""
    return " AND ".join(f"{left}.{quote(c)} = {right}.{quote(c)}" for c in columns)


@contextmanager
def triggers_off(conn: Connection, targets: Iterable[Target]) -> Iterator[None]:
    """Disable the enabled user triggers of ``targets`` inside, and enable them again after.

    Foreign keys (internal triggers) stay on. ``ALTER TABLE ... DISABLE TRIGGER`` is
    transactional and takes a SHARE ROW EXCLUSIVE lock: other sessions read on, but
    cannot write those tables until the transaction ends. On an error the triggers stay
    disabled for the caller's rollback to restore.
    """
    chosen = [(target, name, enabled) for target in targets for name, enabled in target.triggers]
    for target, name, _ in chosen:
        conn.exec_driver_sql(f"ALTER TABLE {target.sql} DISABLE TRIGGER {quote(name)}")
    yield
    for target, name, enabled in chosen:
        how = "ENABLE ALWAYS" if enabled == "A" else "ENABLE"
        conn.exec_driver_sql(f"ALTER TABLE {target.sql} {how} TRIGGER {quote(name)}")
