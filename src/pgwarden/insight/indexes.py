"""Find indexes that cost more than they give, and foreign keys that lack one.

Four queries, each a public function returning dataclasses, and :func:`check_indexes`
turning them into findings with the SQL that fixes each::

    with engine.connect() as conn:
        for index in unused_indexes(conn, max_scans=50):
            print(index.index, index.scans, index.size_bytes)
        results = check_indexes(conn)

Everything reads only catalogs and ``pg_stat_user_indexes``, so a role with
``pg_monitor`` (or no special role at all) can run it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import qualified, quote_identifier
from pgwarden._units import format_size
from pgwarden.insight.findings import Check, CheckResult, Finding, run_checks

__all__ = [
    "DuplicateIndex",
    "ForeignKeyWithoutIndex",
    "InvalidIndex",
    "UnusedIndex",
    "check_indexes",
    "duplicate_index_findings",
    "duplicate_indexes",
    "foreign_key_findings",
    "foreign_keys_without_index",
    "invalid_index_findings",
    "invalid_indexes",
    "unused_index_findings",
    "unused_indexes",
]

# Schemas no application index lives in.
_USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"


@dataclass(frozen=True)
class UnusedIndex:
    """An index scanned at most ``max_scans`` times since statistics were reset."""

    schema: str
    table: str
    index: str
    scans: int
    size_bytes: int


@dataclass(frozen=True)
class DuplicateIndex:
    """An index another index on the same table makes redundant.

    ``exact`` is true when both have the same key columns; otherwise ``index``'s keys
    are a leading prefix of ``covering_index``'s.
    """

    schema: str
    table: str
    index: str
    covering_index: str
    exact: bool
    size_bytes: int
    definition: str
    covering_definition: str


@dataclass(frozen=True)
class InvalidIndex:
    """An index left invalid, usually by a failed ``CREATE INDEX CONCURRENTLY``."""

    schema: str
    table: str
    index: str
    size_bytes: int
    definition: str


@dataclass(frozen=True)
class ForeignKeyWithoutIndex:
    """A foreign key whose columns lead no index of the referencing table."""

    schema: str
    table: str
    constraint: str
    columns: list[str]
    referenced_table: str
    partitioned: bool


UNUSED_INDEXES = text(
    """
SELECT s.schemaname AS schema,
       s.relname AS "table",
       s.indexrelname AS index,
       s.idx_scan AS scans,
       pg_relation_size(s.indexrelid) AS size_bytes
FROM pg_stat_user_indexes AS s
JOIN pg_index AS i ON i.indexrelid = s.indexrelid
WHERE NOT i.indisunique
  AND i.indisvalid
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = s.indexrelid)
  AND s.idx_scan <= :max_scans
  AND pg_relation_size(s.indexrelid) >= :min_size_bytes
ORDER BY size_bytes DESC, schema, "table", index
"""
)


def unused_indexes(
    conn: Connection, *, max_scans: int = 0, min_size_bytes: int = 10 * 1024**2
) -> list[UnusedIndex]:
    """Return the indexes scanned at most ``max_scans`` times, largest first.

    Unique, primary-key and other constraint-backing indexes are left out: they enforce
    something even when no query reads them. Counts are since the last statistics reset
    and on this server only; an index a replica's queries use looks unused here.
    """
    rows = conn.execute(UNUSED_INDEXES, {"max_scans": max_scans, "min_size_bytes": min_size_bytes})
    return [UnusedIndex(**row._mapping) for row in rows]


# A: the candidate, B: an index that covers it. Keys, operator classes, collations and
# options are compared as arrays over the key columns (INCLUDE columns come after
# indnkeyatts in indkey), expressions and predicates by their deparsed text.
DUPLICATE_INDEXES = text(
    f"""
WITH idx AS (
  SELECT i.indexrelid,
         i.indrelid,
         n.nspname AS schema,
         t.relname AS "table",
         c.relname AS name,
         am.amname AS method,
         i.indisunique AS is_unique,
         (string_to_array(i.indkey::text, ' ')::int2[])[1:i.indnkeyatts] AS keys,
         (string_to_array(i.indkey::text, ' ')::int2[])[i.indnkeyatts + 1:] AS included,
         string_to_array(i.indkey::text, ' ')::int2[] AS all_columns,
         string_to_array(i.indclass::text, ' ')::oid[] AS classes,
         string_to_array(i.indcollation::text, ' ')::oid[] AS collations,
         string_to_array(i.indoption::text, ' ')::int2[] AS options,
         pg_get_expr(i.indexprs, i.indrelid) AS expressions,
         pg_get_expr(i.indpred, i.indrelid) AS predicate,
         EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = i.indexrelid
                 AND k.contype IN ('p', 'u', 'x')) AS backs_constraint,
         pg_get_indexdef(i.indexrelid) AS definition
  FROM pg_index AS i
  JOIN pg_class AS c ON c.oid = i.indexrelid
  JOIN pg_class AS t ON t.oid = i.indrelid
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
  JOIN pg_am AS am ON am.oid = c.relam
  WHERE i.indisvalid
    AND i.indisready
    AND {_USER_SCHEMAS}
)
SELECT DISTINCT ON (a.indexrelid)
       a.schema,
       a."table",
       a.name AS index,
       b.name AS covering_index,
       cardinality(a.keys) = cardinality(b.keys) AS exact,
       pg_relation_size(a.indexrelid) AS size_bytes,
       a.definition,
       b.definition AS covering_definition
FROM idx AS a
JOIN idx AS b
  ON b.indrelid = a.indrelid
 AND b.indexrelid <> a.indexrelid
 AND b.method = a.method
 AND b.expressions IS NOT DISTINCT FROM a.expressions
 AND b.predicate IS NOT DISTINCT FROM a.predicate
WHERE NOT a.backs_constraint
  AND a.keys = b.keys[1:cardinality(a.keys)]
  AND a.classes = b.classes[1:cardinality(a.keys)]
  AND a.collations = b.collations[1:cardinality(a.keys)]
  AND a.options = b.options[1:cardinality(a.keys)]
  AND a.included <@ b.all_columns
  -- a longer key is only a prefix match for a btree; other methods need the same keys
  AND (a.method = 'btree' OR cardinality(a.keys) = cardinality(b.keys))
  -- a unique index is redundant only to a unique index on exactly its keys
  AND (NOT a.is_unique OR (b.is_unique AND cardinality(a.keys) = cardinality(b.keys)))
  -- of two identical indexes report one: keep the constraint's, else the first by name
  AND NOT (
    cardinality(a.keys) = cardinality(b.keys)
    AND a.is_unique = b.is_unique
    AND b.included <@ a.all_columns
    AND NOT b.backs_constraint
    AND a.name < b.name
  )
ORDER BY a.indexrelid, exact DESC, b.backs_constraint DESC, b.name
"""
)


def duplicate_indexes(conn: Connection) -> list[DuplicateIndex]:
    """Return the indexes made redundant by another index on the same table.

    An index is redundant when another one with the same access method, expressions
    and predicate has the same key columns (an exact duplicate), or, for a btree,
    starts with them (a prefix). A unique index is redundant only to a unique index on
    the same keys, and an index backing a constraint is never the one reported.
    """
    rows = conn.execute(DUPLICATE_INDEXES)
    found = [DuplicateIndex(**row._mapping) for row in rows]
    return sorted(found, key=lambda d: (d.schema, d.table, d.index))


INVALID_INDEXES = text(
    f"""
SELECT n.nspname AS schema,
       t.relname AS "table",
       c.relname AS index,
       pg_relation_size(c.oid) AS size_bytes,
       pg_get_indexdef(c.oid) AS definition
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_class AS t ON t.oid = i.indrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid
  AND {_USER_SCHEMAS}
ORDER BY schema, "table", index
"""
)


def invalid_indexes(conn: Connection) -> list[InvalidIndex]:
    """Return the indexes marked invalid, which no query uses.

    A failed ``CREATE INDEX CONCURRENTLY`` or ``REINDEX CONCURRENTLY`` leaves one
    behind; so does one still being built, which shows up here until it finishes.
    """
    return [InvalidIndex(**row._mapping) for row in conn.execute(INVALID_INDEXES)]


# An index covers a foreign key when its leading key columns are the key's columns in
# any order: a lookup by all of them can use it. Partial indexes do not count. Keys
# cloned onto partitions (conparentid <> 0) are reported once, on the parent.
FOREIGN_KEYS_WITHOUT_INDEX = text(
    f"""
SELECT n.nspname AS schema,
       t.relname AS "table",
       k.conname AS "constraint",
       ARRAY(
         SELECT a.attname::text
         FROM unnest(k.conkey) WITH ORDINALITY AS u(attnum, ord)
         JOIN pg_attribute AS a ON a.attrelid = k.conrelid AND a.attnum = u.attnum
         ORDER BY u.ord
       ) AS columns,
       k.confrelid::regclass::text AS referenced_table,
       t.relkind = 'p' AS partitioned
FROM pg_constraint AS k
JOIN pg_class AS t ON t.oid = k.conrelid
JOIN pg_namespace AS n ON n.oid = t.relnamespace
WHERE k.contype = 'f'
  AND k.conparentid = 0
  AND {_USER_SCHEMAS}
  AND NOT EXISTS (
    SELECT 1
    FROM pg_index AS i
    WHERE i.indrelid = k.conrelid
      AND i.indisvalid
      AND i.indpred IS NULL
      AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(k.conkey)]
          @> k.conkey
      AND cardinality(k.conkey) <= i.indnkeyatts
  )
ORDER BY schema, "table", "constraint"
"""
)


def foreign_keys_without_index(conn: Connection) -> list[ForeignKeyWithoutIndex]:
    """Return the foreign keys whose columns lead no index on the referencing table.

    Without one, every delete or key update on the referenced table scans the
    referencing table to check for rows that still point at it, and joins along the key
    cannot use an index. A multi-column key needs all its columns at the front of one
    index, in any order.
    """
    rows = conn.execute(FOREIGN_KEYS_WITHOUT_INDEX)
    return [ForeignKeyWithoutIndex(**row._mapping) for row in rows]


def unused_index_findings(indexes: Iterable[UnusedIndex]) -> list[Finding]:
    """Turn unused indexes into findings whose fix drops the index."""
    return [
        Finding(
            check="unused_indexes",
            severity="warning",
            what=f"index {name} on {index.table} has {index.scans} scans "
            f"({format_size(index.size_bytes)})",
            why="Every write to the table updates the index and it takes space and cache, "
            "but no query on this server reads it (check replicas before dropping).",
            fix=f"DROP INDEX CONCURRENTLY {name};",
            subject=name,
            details={"scans": index.scans, "size_bytes": index.size_bytes},
        )
        for index in indexes
        for name in [qualified(index.schema, index.index, plain=True)]
    ]


def duplicate_index_findings(indexes: Iterable[DuplicateIndex]) -> list[Finding]:
    """Turn redundant indexes into findings whose fix drops the redundant one."""
    return [
        Finding(
            check="duplicate_indexes",
            severity="warning",
            what=f"index {name} on {index.table} is "
            f"{'a duplicate of' if index.exact else 'covered by'} {index.covering_index} "
            f"({format_size(index.size_bytes)})",
            why=f"{index.covering_index} serves every query {index.index} can, so "
            f"{index.index} only slows writes and takes space.",
            fix=f"DROP INDEX CONCURRENTLY {name};",
            subject=name,
            details={
                "covering_index": qualified(index.schema, index.covering_index, plain=True),
                "exact": index.exact,
                "size_bytes": index.size_bytes,
                "definition": index.definition,
                "covering_definition": index.covering_definition,
            },
        )
        for index in indexes
        for name in [qualified(index.schema, index.index, plain=True)]
    ]


def invalid_index_findings(indexes: Iterable[InvalidIndex]) -> list[Finding]:
    """Turn invalid indexes into findings whose fix drops them to build again."""
    return [
        Finding(
            check="invalid_indexes",
            severity="warning",
            what=f"index {name} on {index.table} is invalid ({format_size(index.size_bytes)})",
            why="No query uses an invalid index, yet writes may still maintain it; "
            "a unique one enforces nothing. Drop it, fix the cause (such as duplicate "
            "rows), then create it again, unless a build is still running.",
            fix=f"DROP INDEX CONCURRENTLY {name};",
            subject=name,
            details={"size_bytes": index.size_bytes, "definition": index.definition},
        )
        for index in indexes
        for name in [qualified(index.schema, index.index, plain=True)]
    ]


def foreign_key_findings(keys: Iterable[ForeignKeyWithoutIndex]) -> list[Finding]:
    """Turn unindexed foreign keys into findings whose fix creates the index."""
    findings = []
    for key in keys:
        table = qualified(key.schema, key.table, plain=True)
        columns = ", ".join(quote_identifier(column, plain=True) for column in key.columns)
        # CONCURRENTLY is not supported on a partitioned table.
        create = "CREATE INDEX" if key.partitioned else "CREATE INDEX CONCURRENTLY"
        findings.append(
            Finding(
                check="foreign_keys_without_index",
                severity="warning",
                what=f"foreign key {key.constraint} on {table} ({', '.join(key.columns)}) "
                f"has no index",
                why=f"Each delete or key update in {key.referenced_table} scans {table} for "
                "rows referencing it, and joins on the key cannot use an index.",
                fix=f"{create} ON {table} ({columns});",
                subject=table,
                details={
                    "constraint": key.constraint,
                    "columns": key.columns,
                    "referenced_table": key.referenced_table,
                },
            )
        )
    return findings


def _unused(
    conn: Connection, *, max_scans: int = 0, min_size_bytes: int = 10 * 1024**2
) -> list[Finding]:
    return unused_index_findings(
        unused_indexes(conn, max_scans=max_scans, min_size_bytes=min_size_bytes)
    )


CHECKS = (
    Check(
        "unused_indexes",
        "indexes",
        "indexes no query has read, large enough to matter",
        _unused,
    ),
    Check(
        "duplicate_indexes",
        "indexes",
        "indexes another index makes redundant",
        lambda conn: duplicate_index_findings(duplicate_indexes(conn)),
    ),
    Check(
        "invalid_indexes",
        "indexes",
        "indexes left invalid by a failed build",
        lambda conn: invalid_index_findings(invalid_indexes(conn)),
    ),
    Check(
        "foreign_keys_without_index",
        "indexes",
        "foreign keys no index supports",
        lambda conn: foreign_key_findings(foreign_keys_without_index(conn)),
    ),
)


def check_indexes(
    conn: Connection, *, max_scans: int = 0, min_size_bytes: int = 10 * 1024**2
) -> list[CheckResult]:
    """Run the four index checks and return one result each."""
    thresholds = {"unused_indexes": {"max_scans": max_scans, "min_size_bytes": min_size_bytes}}
    return run_checks(conn, CHECKS, thresholds)
