"""Which tables a backup holds, their rows in its snapshot, and what a target holds.

Tables are chosen here, not by pg_dump's patterns, so that the rows counted are those
of exactly the tables dumped: the chosen tables are handed to pg_dump by exact, quoted
name. A pattern is a name (``users``), ``schema.name``, and may use ``*`` and ``?``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import quoted_name

from pgwarden.backup.manifest import TableEntry
from pgwarden.errors import UserError

__all__ = [
    "Selection",
    "count_rows",
    "large_object_count",
    "pattern",
    "read_tables",
    "select_tables",
    "user_tables",
]

_USER_RELATION = """
    n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
    AND c.relpersistence <> 't'
    AND NOT EXISTS (
        SELECT 1
        FROM pg_depend AS e
        WHERE e.classid = 'pg_class'::regclass
          AND e.objid = c.oid
          AND e.deptype = 'e'
    )
"""

TABLES = sa.text(
    f"""
SELECT c.oid,
       n.nspname AS schema,
       c.relname AS name,
       c.relkind,
       pn.nspname AS parent_schema,
       pc.relname AS parent_name
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_inherits AS i ON i.inhrelid = c.oid AND c.relispartition
LEFT JOIN pg_class AS pc ON pc.oid = i.inhparent
LEFT JOIN pg_namespace AS pn ON pn.oid = pc.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND {_USER_RELATION}
ORDER BY n.nspname, c.relname
"""
)

INDEXES = sa.text(
    """
SELECT i.indrelid AS table_oid,
       ic.relname AS name
FROM pg_index AS i
JOIN pg_class AS ic ON ic.oid = i.indexrelid
ORDER BY ic.relname
"""
)

OWNED_SEQUENCES = sa.text(
    """
SELECT d.refobjid AS table_oid,
       s.relname AS name
FROM pg_depend AS d
JOIN pg_class AS s ON s.oid = d.objid AND s.relkind = 'S'
WHERE d.classid = 'pg_class'::regclass
  AND d.refclassid = 'pg_class'::regclass
  AND d.deptype IN ('a', 'i')
ORDER BY s.relname
"""
)

FOREIGN_KEYS = sa.text(
    """
SELECT k.conrelid AS table_oid,
       k.conname AS name,
       rn.nspname || '.' || rc.relname AS referenced
FROM pg_constraint AS k
JOIN pg_class AS rc ON rc.oid = k.confrelid
JOIN pg_namespace AS rn ON rn.oid = rc.relnamespace
WHERE k.contype = 'f'
  AND k.conparentid = 0
ORDER BY k.conname
"""
)

ESTIMATE = sa.text(
    """
SELECT c.reltuples::bigint
FROM pg_class AS c
WHERE c.oid = :oid
"""
)

TABLE_EXISTS = sa.text(
    "SELECT to_regclass(quote_ident(:schema) || '.' || quote_ident(:name)) IS NOT NULL"
)

LARGE_OBJECTS = sa.text("SELECT count(*) FROM pg_largeobject_metadata")

USER_TABLES = sa.text(
    f"""
SELECT n.nspname || '.' || c.relname AS name
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND {_USER_RELATION}
ORDER BY 1
"""
)


@dataclass(frozen=True, slots=True)
class Table:
    """A table of the source database, as the selection sees it."""

    oid: int
    entry: TableEntry
    partitioned: bool


def pattern(schema: str, name: str | None = None) -> str:
    """Return a pg_dump pattern that matches exactly ``schema`` or ``schema.name``.

    Not SQL: in a pattern only double quotes turn off wildcards (``*``, ``?``) and case
    folding, so every part is quoted, and ``U&`` is not understood.
    """
    exact = ['"' + part.replace('"', '""') + '"' for part in (schema, name) if part is not None]
    return ".".join(exact)


def read_tables(conn: Connection) -> list[Table]:
    """Return every user table with its partitions' parent, indexes, sequences and keys."""
    indexes: dict[int, list[str]] = {}
    for row in conn.execute(INDEXES):
        indexes.setdefault(row.table_oid, []).append(row.name)
    sequences: dict[int, list[str]] = {}
    for row in conn.execute(OWNED_SEQUENCES):
        sequences.setdefault(row.table_oid, []).append(row.name)
    keys: dict[int, dict[str, str]] = {}
    for row in conn.execute(FOREIGN_KEYS):
        keys.setdefault(row.table_oid, {})[row.name] = row.referenced
    tables = []
    for row in conn.execute(TABLES):
        parent = f"{row.parent_schema}.{row.parent_name}" if row.parent_name else None
        entry = TableEntry(
            schema=row.schema,
            name=row.name,
            parent=parent,
            indexes=tuple(indexes.get(row.oid, ())),
            sequences=tuple(sequences.get(row.oid, ())),
            foreign_keys=keys.get(row.oid, {}),
        )
        tables.append(Table(oid=row.oid, entry=entry, partitioned=row.relkind == "p"))
    return tables


def _matches(table: TableEntry, patterns: Iterable[str]) -> bool:
    return any(
        fnmatchcase(table.qualified, p) if "." in p else fnmatchcase(table.name, p)
        for p in patterns
    )


def _with_partitions(chosen: list[Table], tables: list[Table]) -> list[Table]:
    """Add the partitions (at any depth) of every chosen partitioned table."""
    names = {t.entry.qualified for t in chosen}
    grew = True
    while grew:
        grew = False
        for table in tables:
            if table.entry.qualified not in names and table.entry.parent in names:
                names.add(table.entry.qualified)
                grew = True
    return [t for t in tables if t.entry.qualified in names]


@dataclass(frozen=True, slots=True)
class Selection:
    """The tables chosen, and the pg_dump options that choose exactly them."""

    tables: list[Table]
    dump_args: list[str]
    whole_database: bool


def select_tables(
    tables: list[Table],
    *,
    schemas: Sequence[str] = (),
    exclude_schemas: Sequence[str] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Selection:
    """Choose the tables of a backup, as pg_dump's -n/-N/-t/-T would, by exact name.

    A partitioned table brings its partitions, whether included or excluded. Every
    include pattern must match something.
    """
    for wanted, what in ((schemas, "schema"), (include, "table")):
        for given in wanted:
            if what == "schema":
                found = any(fnmatchcase(t.entry.schema, given) for t in tables)
            else:
                found = any(_matches(t.entry, [given]) for t in tables)
            if not found:
                raise UserError(
                    f"no {what} of the database matches {given!r}.",
                    hint="Give a name, schema.name, or a pattern with * and ?; names are "
                    "case-sensitive, as stored in the catalog.",
                )
    chosen = tables
    if include:
        chosen = _with_partitions([t for t in tables if _matches(t.entry, include)], tables)
    elif schemas:
        chosen = [t for t in tables if any(fnmatchcase(t.entry.schema, s) for s in schemas)]
    dropped = _with_partitions(
        [
            t
            for t in chosen
            if _matches(t.entry, exclude)
            or any(fnmatchcase(t.entry.schema, s) for s in exclude_schemas)
        ],
        tables,
    )
    dropped_names = {t.entry.qualified for t in dropped}
    final = [t for t in chosen if t.entry.qualified not in dropped_names]
    if not final:
        raise UserError(
            "the options leave no table to back up.",
            hint="Check --schema, --table, --exclude-schema and --exclude-table.",
        )
    args: list[str] = []
    if include:
        args += [f"--table={pattern(t.entry.schema, t.entry.name)}" for t in final]
    else:
        matched = sorted({t.entry.schema for t in chosen}) if schemas else []
        args += [f"--schema={pattern(s)}" for s in matched]
        excluded_schemas = sorted(
            {
                t.entry.schema
                for t in tables
                if any(fnmatchcase(t.entry.schema, s) for s in exclude_schemas)
            }
        )
        args += [f"--exclude-schema={pattern(s)}" for s in excluded_schemas]
        args += [
            f"--exclude-table={pattern(t.entry.schema, t.entry.name)}"
            for t in dropped
            if t.entry.schema not in excluded_schemas
        ]
    whole = not (include or schemas or exclude or exclude_schemas)
    return Selection(tables=final, dump_args=args, whole_database=whole)


def _count(conn: Connection, entry: TableEntry) -> int:
    """Return ``count(*)`` of a table, its name quoted by SQLAlchemy for any legal name.

    Not text SQL: a name holding ``%`` or ``:x`` would be read as a placeholder there.
    """
    table = sa.table(quoted_name(entry.name, True), schema=quoted_name(entry.schema, True))
    query = sa.select(sa.func.count()).select_from(table)
    return int(conn.execute(query).scalar_one())


def count_rows(conn: Connection, tables: Iterable[Table], *, method: str) -> list[TableEntry]:
    """Return the entries with ``rows`` set: ``exact`` (count(*)), ``estimate`` or ``none``.

    Partitioned tables hold no rows of their own and keep ``rows`` None.
    """
    result = []
    for table in tables:
        rows: int | None = None
        if not table.partitioned and method == "exact":
            rows = _count(conn, table.entry)
        elif not table.partitioned and method == "estimate":
            estimate = int(conn.execute(ESTIMATE, {"oid": table.oid}).scalar_one())
            rows = estimate if estimate >= 0 else None
        result.append(replace(table.entry, rows=rows))
    return result


def large_object_count(conn: Connection) -> int:
    """Return how many large objects the database holds."""
    return int(conn.execute(LARGE_OBJECTS).scalar_one())


def user_tables(conn: Connection) -> list[str]:
    """Return the ``schema.name`` of every user table (extensions' own left out)."""
    return [row.name for row in conn.execute(USER_TABLES)]


def table_rows(conn: Connection, entry: TableEntry) -> int | None:
    """Return the rows of ``entry`` in the connected database, None if it is missing."""
    names = {"schema": entry.schema, "name": entry.name}
    exists = conn.execute(TABLE_EXISTS, names).scalar_one()
    return _count(conn, entry) if exists else None
