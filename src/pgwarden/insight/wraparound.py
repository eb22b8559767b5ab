"""Measure how close each database and table is to transaction ID wraparound.

Transaction IDs and multixact IDs are 32-bit counters compared modulo 2^32, so a row's
ID may be at most about 2^31 transactions old. ``VACUUM`` freezes old rows to lift
that limit; a table it has not frozen for a long time holds its database's oldest ID
back, and once fewer than 3 million IDs are left (1 million on PostgreSQL 13) the
server refuses every write in the whole cluster until it is frozen::

    with engine.connect() as conn:
        for db in database_ages(conn):
            print(db.database, db.xid_age, db.xids_left)
        for table in table_ages(conn, limit=5):
            print(table.schema, table.table, table.xid_age)

Ages are read from ``pg_database`` and ``pg_class``, which every role may read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import qualified, quote_identifier
from pgwarden.insight.findings import Check, CheckResult, Finding, Severity

__all__ = [
    "WRAPAROUND_LIMIT",
    "DatabaseAge",
    "TableAge",
    "check_wraparound",
    "database_ages",
    "database_wraparound_findings",
    "table_ages",
    "table_wraparound_findings",
]

# The age at which an ID wraps around: half the 32-bit space, for both counters.
WRAPAROUND_LIMIT = 2**31 - 1

# Warn at a billion: five times the default autovacuum_freeze_max_age (200 million), so
# autovacuum should long since have frozen the table, and still more than half the
# space is left. Critical at 1.5 billion: about 650 million left, which a busy server
# uses up in a day or two. PgHero's alarm (10 million left) comes later than the
# server's own log warnings (from 40 million left).
WARNING_AGE = 1_000_000_000
CRITICAL_AGE = 1_500_000_000


class _Ages:
    """The IDs left before wraparound, from the ages (fields of the dataclasses below)."""

    xid_age: int
    mxid_age: int

    @property
    def xids_left(self) -> int:
        """Return the transaction IDs left before wraparound."""
        return WRAPAROUND_LIMIT - self.xid_age

    @property
    def multixacts_left(self) -> int:
        """Return the multixact IDs left before wraparound."""
        return WRAPAROUND_LIMIT - self.mxid_age


@dataclass(frozen=True)
class DatabaseAge(_Ages):
    """The age of a database's oldest unfrozen transaction ID and multixact ID."""

    database: str
    xid_age: int
    mxid_age: int


@dataclass(frozen=True)
class TableAge(_Ages):
    """The age of a table's oldest unfrozen IDs, its TOAST table included.

    ``temporary`` marks a temporary table, which only its own session can vacuum;
    ``size_bytes`` (TOAST and indexes included) hints how long a freeze will take.
    """

    schema: str
    table: str
    xid_age: int
    mxid_age: int
    temporary: bool
    size_bytes: int


DATABASE_AGES = text(
    """
SELECT datname AS database,
       age(datfrozenxid) AS xid_age,
       mxid_age(datminmxid) AS mxid_age
FROM pg_database
ORDER BY GREATEST(age(datfrozenxid), mxid_age(datminmxid)) DESC, datname
"""
)


def database_ages(conn: Connection) -> list[DatabaseAge]:
    """Return every database of the server with its ID ages, oldest first.

    A database's age is that of its oldest table, so it falls only when that table is
    frozen; ``template0`` ages too, and autovacuum freezes it like any other.
    """
    return [DatabaseAge(**row._mapping) for row in conn.execute(DATABASE_AGES)]


# Tables and materialized views: only they (and their TOAST tables, counted with their
# owner) hold IDs. age() of a relation that holds none would read as 2^31 - 1.
TABLE_AGES = text(
    """
SELECT *
FROM (
  SELECT n.nspname AS schema,
         c.relname AS "table",
         GREATEST(age(c.relfrozenxid), age(t.relfrozenxid)) AS xid_age,
         GREATEST(mxid_age(c.relminmxid), mxid_age(t.relminmxid)) AS mxid_age,
         c.relpersistence = 't' AS temporary,
         pg_total_relation_size(c.oid) AS size_bytes
  FROM pg_class AS c
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
  LEFT JOIN pg_class AS t ON t.oid = c.reltoastrelid
  WHERE c.relkind IN ('r', 'm')
) AS ages
WHERE GREATEST(xid_age, mxid_age) >= :min_age
ORDER BY GREATEST(xid_age, mxid_age) DESC, schema, "table"
LIMIT :limit
"""
)


def table_ages(conn: Connection, *, min_age: int = 0, limit: int | None = 20) -> list[TableAge]:
    """Return this database's oldest tables by ID age, at least ``min_age``, oldest first.

    A table's age is the greater of its own and its TOAST table's, for transaction IDs
    and multixact IDs alike; tables are ordered by the greater of the two. System
    catalogs are included: they hold the database's age back just the same.
    ``limit=None`` returns every table.
    """
    rows = conn.execute(TABLE_AGES, {"min_age": min_age, "limit": limit})
    return [TableAge(**row._mapping) for row in rows]


_WHY = (
    "Once the oldest unfrozen ID is about 2^31 transactions old, the server refuses "
    "writes in every database until it is frozen. Autovacuum should have frozen it at "
    "autovacuum_freeze_max_age; if the age does not drop after VACUUM, something holds "
    "back the oldest xmin: a long-open or prepared transaction, or a replication slot."
)


def database_wraparound_findings(
    databases: Iterable[DatabaseAge],
    *,
    warning_age: int = WARNING_AGE,
    critical_age: int = CRITICAL_AGE,
) -> list[Finding]:
    """Turn database ages of at least ``warning_age`` into findings."""
    findings = []
    for db in databases:
        severity = _severity(max(db.xid_age, db.mxid_age), warning_age, critical_age)
        if severity is None:
            continue
        name = quote_identifier(db.database, plain=True)
        findings.append(
            Finding(
                check="database_wraparound",
                severity=severity,
                what=f"database {name} is {_age(db.xid_age, db.mxid_age)}",
                why=f"{_WHY} Run the VACUUM connected to {name}, as a superuser so that it "
                "covers the system catalogs, or freeze only its oldest tables (the "
                "table_wraparound check, run in that database, names them).",
                fix="VACUUM (FREEZE, VERBOSE);",
                subject=name,
                details=_figures(db.xid_age, db.mxid_age),
            )
        )
    return findings


def table_wraparound_findings(
    tables: Iterable[TableAge],
    *,
    warning_age: int = WARNING_AGE,
    critical_age: int = CRITICAL_AGE,
) -> list[Finding]:
    """Turn table ages of at least ``warning_age`` into findings that freeze the table."""
    findings = []
    for table in tables:
        severity = _severity(max(table.xid_age, table.mxid_age), warning_age, critical_age)
        if severity is None:
            continue
        name = qualified(table.schema, table.table, plain=True)
        why = _WHY
        fix: str | None = f"VACUUM (FREEZE, VERBOSE) {name};"
        if table.temporary:
            # Autovacuum skips temporary tables and no other session may vacuum one.
            why += " Only the session that created this temporary table can vacuum it: "
            why += "end that session or drop the table."
            fix = None
        findings.append(
            Finding(
                check="table_wraparound",
                severity=severity,
                what=f"table {name} is {_age(table.xid_age, table.mxid_age)}",
                why=why,
                fix=fix,
                subject=name,
                details={
                    **_figures(table.xid_age, table.mxid_age),
                    "temporary": table.temporary,
                    "size_bytes": table.size_bytes,
                },
            )
        )
    return findings


def _database_findings(
    conn: Connection, *, warning_age: int = WARNING_AGE, critical_age: int = CRITICAL_AGE
) -> list[Finding]:
    return database_wraparound_findings(
        database_ages(conn), warning_age=warning_age, critical_age=critical_age
    )


def _table_findings(
    conn: Connection, *, warning_age: int = WARNING_AGE, critical_age: int = CRITICAL_AGE
) -> list[Finding]:
    return table_wraparound_findings(
        table_ages(conn, min_age=warning_age, limit=None),
        warning_age=warning_age,
        critical_age=critical_age,
    )


CHECKS = (
    Check(
        "database_wraparound",
        "wraparound",
        "databases whose oldest transaction or multixact ID nears wraparound",
        _database_findings,
        scope="cluster",
    ),
    Check(
        "table_wraparound",
        "wraparound",
        "tables whose oldest transaction or multixact ID nears wraparound",
        _table_findings,
    ),
)


def check_wraparound(
    conn: Connection, *, warning_age: int = WARNING_AGE, critical_age: int = CRITICAL_AGE
) -> list[CheckResult]:
    """Check databases and this database's tables for wraparound; one result each."""
    return [check(conn, warning_age=warning_age, critical_age=critical_age) for check in CHECKS]


def _severity(age: int, warning_age: int, critical_age: int) -> Severity | None:
    if age >= critical_age:
        return "critical"
    if age >= warning_age:
        return "warning"
    return None


def _age(xid_age: int, mxid_age: int) -> str:
    if mxid_age > xid_age:
        return (
            f"{mxid_age:,} multixact IDs old "
            f"({WRAPAROUND_LIMIT - mxid_age:,} left before wraparound)"
        )
    return f"{xid_age:,} transactions old ({WRAPAROUND_LIMIT - xid_age:,} left before wraparound)"


def _figures(xid_age: int, mxid_age: int) -> dict[str, int | float]:
    return {
        "xid_age": xid_age,
        "xids_left": WRAPAROUND_LIMIT - xid_age,
        "mxid_age": mxid_age,
        "multixacts_left": WRAPAROUND_LIMIT - mxid_age,
        "percent_used": round(max(xid_age, mxid_age) / WRAPAROUND_LIMIT * 100, 2),
    }
