"""Find what to maintain: the tables and indexes a user names, every table, or the bloated ones.

A name is looked up the way PostgreSQL reads it in SQL, through ``to_regclass`` on a
bound parameter: ``orders`` follows the ``search_path`` and is folded to lower case,
``sales.orders`` names the schema, ``'"Order Items"'`` keeps capitals and spaces. The
name never becomes part of a statement: statements are built from the catalog's schema
and name, quoted. A name that resolves to nothing, or to the wrong kind of object, is a
:class:`~pgwarden.errors.UserError` that lists every bad name at once, raised before
anything runs.

Lookups read only the catalogs and the statistics views, which lock no table, so a
table another session holds locked cannot stall the planning of a run. Exact sizes
take a lock, and are read under a short lock timeout; where a lock is in the way, the
size is the catalog's estimate instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pgwarden._sql import KINDS, find_relation, qualified
from pgwarden.errors import UserError
from pgwarden.maintain._session import LOCK_TIMEOUT, guarded, session_settings

__all__ = [
    "Index",
    "Table",
    "dead_tuple_tables",
    "invalid_index_targets",
    "is_reindex_leftover",
    "resolve_indexes",
    "resolve_tables",
    "user_tables",
]

_TABLE_KINDS = ("r", "p", "m")

_INDEX_KINDS = ("i", "I")


@dataclass(frozen=True)
class Table:
    """A table (or materialized view) with the figures that say whether it needs work.

    ``size_bytes`` is the whole of it: heap, TOAST and indexes, what ``VACUUM FULL``
    rewrites (for a partitioned table, the sum of its partitions). Reading it takes a
    lock; when another session's lock is in the way, ``size_exact`` is false and the
    size is the catalog's estimate as of the last VACUUM or ANALYZE. ``live_tuples`` and
    ``dead_tuples`` are the statistics system's estimates (``pg_stat_user_tables``), so
    they lag a moment behind the table and are zero for a table never vacuumed,
    analyzed or written since statistics were reset.
    """

    oid: int
    schema: str
    name: str
    kind: str
    size_bytes: int
    size_exact: bool
    live_tuples: int
    dead_tuples: int
    last_vacuum: dt.datetime | None
    last_autovacuum: dt.datetime | None
    last_analyze: dt.datetime | None
    last_autoanalyze: dt.datetime | None

    @property
    def qualified(self) -> str:
        """Return ``schema.name`` quoted as SQL needs it."""
        return qualified(self.schema, self.name, plain=True)

    @property
    def dead_pct(self) -> float:
        """Return dead tuples as a percentage of live and dead ones (0 for an empty table)."""
        total = self.live_tuples + self.dead_tuples
        return 100.0 * self.dead_tuples / total if total else 0.0


@dataclass(frozen=True)
class Index:
    """An index, the table it belongs to, and whether queries can use it (``valid``).

    ``size_bytes`` and ``size_exact`` are as for :class:`Table`.
    """

    oid: int
    schema: str
    name: str
    table_oid: int
    table_schema: str
    table_name: str
    size_bytes: int
    size_exact: bool
    valid: bool

    @property
    def qualified(self) -> str:
        """Return ``schema.name`` quoted as SQL needs it."""
        return qualified(self.schema, self.name, plain=True)

    @property
    def table(self) -> str:
        """Return the table's ``schema.name`` quoted as SQL needs it."""
        return qualified(self.table_schema, self.table_name, plain=True)


# Sizes here are the catalog's estimates (pages as of the last VACUUM or ANALYZE); the
# exact ones come from EXACT_SIZES.
_TABLES = """
SELECT c.oid::bigint AS oid,
       n.nspname AS schema,
       c.relname AS name,
       c.relkind::text AS relkind,
       ((c.relpages + COALESCE(toast.relpages, 0)
         + COALESCE((SELECT sum(ic.relpages)
                     FROM pg_index AS i
                     JOIN pg_class AS ic ON ic.oid = i.indexrelid
                     WHERE i.indrelid = c.oid), 0))
        * current_setting('block_size')::bigint)::bigint AS size_bytes,
       false AS size_exact,
       COALESCE(s.n_live_tup, 0) AS live_tuples,
       COALESCE(s.n_dead_tup, 0) AS dead_tuples,
       s.last_vacuum,
       s.last_autovacuum,
       s.last_analyze,
       s.last_autoanalyze
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_class AS toast ON toast.oid = c.reltoastrelid
LEFT JOIN pg_stat_all_tables AS s ON s.relid = c.oid
"""

# Leaf tables and materialized views outside the system schemas. Partitioned parents
# are left out: VACUUM and ANALYZE of a parent repeat the work on every partition.
# Temporary tables are left out: another session's cannot be vacuumed.
USER_TABLES = text(
    _TABLES
    + """
WHERE c.relkind IN ('r', 'm')
  AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast'
ORDER BY n.nspname, c.relname
"""
)

TABLE_BY_OID = text(_TABLES + "WHERE c.oid = :oid\n")

INDEX_BY_OID = text(
    """
SELECT c.oid::bigint AS oid,
       n.nspname AS schema,
       c.relname AS name,
       c.relkind::text AS relkind,
       t.oid::bigint AS table_oid,
       tn.nspname AS table_schema,
       t.relname AS table_name,
       (c.relpages::bigint * current_setting('block_size')::bigint) AS size_bytes,
       false AS size_exact,
       COALESCE(i.indisvalid, false) AS valid
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_index AS i ON i.indexrelid = c.oid
LEFT JOIN pg_class AS t ON t.oid = i.indrelid
LEFT JOIN pg_namespace AS tn ON tn.oid = t.relnamespace
WHERE c.oid = :oid
"""
)

# Names as SQL reads them, to be looked up like the names a user gives.
INVALID_INDEXES = text(
    """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast'
ORDER BY n.nspname, c.relname
"""
)

# Exact sizes. Each takes an ACCESS SHARE lock on its relation (and on every partition).
EXACT_SIZES = text(
    """
SELECT r.oid::bigint AS oid,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT COALESCE(sum(pg_total_relation_size(pt.relid)), 0)
                  FROM pg_partition_tree(r.oid) AS pt)
            WHEN c.relkind IN ('i', 'I') THEN pg_relation_size(r.oid)
            ELSE pg_total_relation_size(r.oid) END::bigint AS size_bytes
FROM unnest(CAST(:oids AS oid[])) AS r(oid)
JOIN pg_class AS c ON c.oid = r.oid
"""
)

# How long to wait for the lock an exact size takes before settling for the estimate.
SIZE_LOCK_TIMEOUT = "200ms"

_Found = TypeVar("_Found", Table, Index)


def _exact_sizes(conn: Connection, found: list[_Found]) -> list[_Found]:
    """Return ``found`` with exact sizes, except where another session's lock is in the way.

    All in one query, unless a lock stops it; then one by one, under a short lock
    timeout each, so that a locked table costs its estimate and not the whole plan.
    """
    if not found:
        return found
    sizes: dict[int, int] = {}
    with session_settings(conn, {"lock_timeout": SIZE_LOCK_TIMEOUT}):
        if not _read_sizes(conn, [item.oid for item in found], sizes):
            for item in found:
                _read_sizes(conn, [item.oid], sizes)
    return [
        dataclasses.replace(item, size_bytes=sizes[item.oid], size_exact=True)
        if item.oid in sizes
        else item
        for item in found
    ]


def _read_sizes(conn: Connection, oids: list[int], sizes: dict[int, int]) -> bool:
    try:
        with guarded(conn):
            sizes.update((oid, size) for oid, size in conn.execute(EXACT_SIZES, {"oids": oids}))
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != LOCK_TIMEOUT:
            raise
        return False
    return True


def _lookup(conn: Connection, query: Any, name: str) -> tuple[Any, str | None]:
    """Return the catalog row ``name`` resolves to, or why it resolves to nothing."""
    try:
        found = find_relation(conn, name)
    except ValueError as error:
        return None, f"not a valid name: {error}"
    if found is None:
        return None, "no such name"
    return conn.execute(query, {"oid": found.oid}).first(), None


def _unknown(kind: str, problems: list[str]) -> UserError:
    listed = "; ".join(problems)
    return UserError(
        f"unknown {kind}{'s' if len(problems) > 1 else ''}: {listed}. Nothing was run.",
        hint=f"Give a {kind} as name or schema.name, as in SQL: unquoted names are folded "
        f"to lower case, so quote capitals and spaces ('public.\"Order Items\"'). The role "
        "also needs USAGE on the schema to see it.",
    )


def resolve_tables(conn: Connection, names: Iterable[str]) -> list[Table]:
    """Return the tables ``names`` resolve to, in order, each once.

    Raises :class:`~pgwarden.errors.UserError` naming every name that is not a table,
    partitioned table or materialized view, before anything is changed.
    """
    return _resolve(conn, names, TABLE_BY_OID, _TABLE_KINDS, "table", _table)


def resolve_indexes(conn: Connection, names: Iterable[str]) -> list[Index]:
    """Return the indexes ``names`` resolve to, in order, each once.

    Raises :class:`~pgwarden.errors.UserError` naming every name that is not an index.
    """
    return _resolve(conn, names, INDEX_BY_OID, _INDEX_KINDS, "index", _index)


def _resolve(
    conn: Connection,
    names: Iterable[str],
    query: TextClause,
    kinds: Container[str],
    noun: str,
    make: Callable[[Any], _Found],
) -> list[_Found]:
    """Return the relations of ``kinds`` that ``names`` resolve to, or raise naming the rest."""
    found: dict[int, _Found] = {}
    problems: list[str] = []
    for name in names:
        row, why = _lookup(conn, query, name)
        if row is None:
            problems.append(f"{name!r} ({why})")
        elif row.relkind not in kinds:
            article = "an" if noun[0] in "aeiou" else "a"
            problems.append(
                f"{name!r} (a {KINDS.get(row.relkind, row.relkind)}, not {article} {noun})"
            )
        else:
            found.setdefault(row.oid, make(row._mapping))
    if problems:
        raise _unknown(noun, problems)
    return _exact_sizes(conn, list(found.values()))


def _index(row: Any) -> Index:
    return Index(**{k: v for k, v in row.items() if k != "relkind"})


def _table(row: Any) -> Table:
    values = dict(row)
    values["kind"] = KINDS[values.pop("relkind")]
    return Table(**values)


def user_tables(conn: Connection) -> list[Table]:
    """Return every table and materialized view outside the system schemas, by name.

    Partitions are listed one by one; partitioned parents are not (their own statistics
    are gathered only by ``ANALYZE parent``, which autovacuum never runs: name them).
    """
    return _exact_sizes(conn, [_table(row._mapping) for row in conn.execute(USER_TABLES)])


def dead_tuple_tables(
    tables: Sequence[Table], *, min_dead_pct: float = 10.0, min_dead_tuples: int = 1000
) -> list[Table]:
    """Return the tables whose dead tuples pass both thresholds.

    ``min_dead_pct`` is the share of dead among live and dead tuples, in percent;
    ``min_dead_tuples`` keeps small tables out, where a high share is a few rows and
    autovacuum's own threshold (50 rows plus 20 %) takes care of them.
    """
    return [
        table
        for table in tables
        if table.dead_pct >= min_dead_pct and table.dead_tuples >= max(min_dead_tuples, 1)
    ]


def invalid_index_targets(conn: Connection) -> tuple[list[Index], list[Index]]:
    """Return the invalid indexes of user schemas, split into rebuildable ones and leftovers.

    A leftover (``*_ccnew``, ``*_ccold``) is the half-built copy a failed
    ``REINDEX CONCURRENTLY`` leaves behind, next to the original that still works: it
    should be dropped, not rebuilt (rebuilding it makes a duplicate of the original).
    """
    indexes = resolve_indexes(conn, conn.execute(INVALID_INDEXES).scalars().all())
    leftovers = [index for index in indexes if is_reindex_leftover(index.name)]
    return [index for index in indexes if index not in leftovers], leftovers


def is_reindex_leftover(name: str) -> bool:
    """Return whether ``name`` is one ``REINDEX CONCURRENTLY`` gives its temporary copies."""
    stem = name.rstrip("0123456789")
    return stem.endswith(("_ccnew", "_ccold"))
