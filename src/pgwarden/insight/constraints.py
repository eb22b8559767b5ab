"""Find constraints added ``NOT VALID`` and never validated.

``ALTER TABLE … ADD CONSTRAINT … NOT VALID`` is the safe way to add a check or a
foreign key to a big table: new rows are checked at once, old ones later by
``VALIDATE CONSTRAINT``. Until that runs, existing rows may break the constraint and
the planner does not rely on it::

    with engine.connect() as conn:
        for constraint in invalid_constraints(conn):
            print(constraint.table, constraint.constraint, constraint.violations)

Everything reads only catalogs, so any role can run it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import qualified, quote_identifier
from pgwarden.insight.findings import Check, CheckResult, Finding

__all__ = [
    "InvalidConstraint",
    "check_constraints",
    "invalid_constraint_findings",
    "invalid_constraints",
]


@dataclass(frozen=True)
class InvalidConstraint:
    """A check, foreign key or (PostgreSQL 18) not-null constraint not yet validated.

    ``table`` is the domain's name when ``on_domain``. ``expression`` is a check's
    condition; ``referenced_*`` and ``match_full`` describe a foreign key.
    """

    schema: str
    table: str
    constraint: str
    kind: str
    on_domain: bool
    definition: str
    expression: str | None
    columns: list[str]
    referenced_schema: str | None
    referenced_table: str | None
    referenced_columns: list[str]
    match_full: bool

    @property
    def violations(self) -> str | None:
        """Return a query for the rows that break the constraint, or ``None`` for a domain.

        Validation fails on the first such row; run this to find and fix them first.
        """
        if self.on_domain:
            return None
        table = qualified(self.schema, self.table, plain=True)
        columns = [f"c.{quote_identifier(column, plain=True)}" for column in self.columns]
        if self.kind == "check":
            condition = f"NOT ({self.expression})"
        elif self.kind == "not null":
            condition = f"{columns[0]} IS NULL"
        else:
            referenced = qualified(
                self.referenced_schema or "", self.referenced_table or "", plain=True
            )
            pairs = zip(self.referenced_columns, columns, strict=True)
            match = " AND ".join(
                f"p.{quote_identifier(ref, plain=True)} = {col}" for ref, col in pairs
            )
            missing = f"NOT EXISTS (SELECT 1 FROM {referenced} AS p WHERE {match})"
            listed = ", ".join(columns)
            if self.match_full:
                # MATCH FULL: all-null passes; a partly null key never does.
                condition = f"num_nonnulls({listed}) > 0 AND (num_nulls({listed}) > 0 OR {missing})"
            else:
                # MATCH SIMPLE: a key with any null column passes.
                condition = " AND ".join(f"{col} IS NOT NULL" for col in columns)
                condition += f" AND {missing}"
        return f"SELECT c.* FROM {table} AS c WHERE {condition};"


def _names(keys: str, relation: str) -> str:
    return f"""ARRAY(
         SELECT a.attname::text
         FROM unnest({keys}) WITH ORDINALITY AS u(attnum, ord)
         JOIN pg_attribute AS a ON a.attrelid = {relation} AND a.attnum = u.attnum
         ORDER BY u.ord
       )"""


# Constraints cloned onto partitions (conparentid) or inherited from a parent table
# (not conislocal) are reported once, on the parent: validating it validates them.
# PostgreSQL 18's NOT ENFORCED constraints are also not validated, by design.
_INVALID_CONSTRAINTS = f"""
SELECT n.nspname AS schema,
       COALESCE(t.relname, ty.typname) AS "table",
       k.conname AS "constraint",
       CASE k.contype WHEN 'c' THEN 'check' WHEN 'f' THEN 'foreign key' ELSE 'not null' END
         AS kind,
       k.contypid <> 0 AS on_domain,
       pg_get_constraintdef(k.oid) AS definition,
       CASE WHEN k.contype = 'c' THEN pg_get_expr(k.conbin, k.conrelid) END AS expression,
       {_names("k.conkey", "k.conrelid")} AS columns,
       rn.nspname AS referenced_schema,
       r.relname AS referenced_table,
       {_names("k.confkey", "k.confrelid")} AS referenced_columns,
       k.confmatchtype = 'f' AS match_full
FROM pg_constraint AS k
JOIN pg_namespace AS n ON n.oid = k.connamespace
LEFT JOIN pg_class AS t ON t.oid = k.conrelid
LEFT JOIN pg_type AS ty ON ty.oid = k.contypid
LEFT JOIN pg_class AS r ON r.oid = k.confrelid
LEFT JOIN pg_namespace AS rn ON rn.oid = r.relnamespace
WHERE NOT k.convalidated
  AND k.contype IN ('c', 'f', 'n')
  AND k.conparentid = 0
  AND k.conislocal
  AND NOT pg_is_other_temp_schema(n.oid)
  {{enforced}}
ORDER BY schema, "table", "constraint"
"""

INVALID_CONSTRAINTS = text(_INVALID_CONSTRAINTS.format(enforced=""))
INVALID_CONSTRAINTS_18 = text(_INVALID_CONSTRAINTS.format(enforced="AND k.conenforced"))


def invalid_constraints(conn: Connection) -> list[InvalidConstraint]:
    """Return the check, foreign key and not-null constraints not yet validated.

    Constraints on domains are included (``on_domain``); a constraint a partition or
    child table inherits is reported once, on its parent.
    """
    version = conn.dialect.server_version_info or (0,)
    query = INVALID_CONSTRAINTS_18 if version >= (18,) else INVALID_CONSTRAINTS
    return [InvalidConstraint(**row._mapping) for row in conn.execute(query)]


def invalid_constraint_findings(constraints: Iterable[InvalidConstraint]) -> list[Finding]:
    """Turn unvalidated constraints into findings whose fix validates them."""
    findings = []
    for item in constraints:
        owner = qualified(item.schema, item.table, plain=True)
        name = quote_identifier(item.constraint, plain=True)
        if item.on_domain:
            fix = f"ALTER DOMAIN {owner} VALIDATE CONSTRAINT {name};"
            lock = (
                "Validating scans every table with a column of the domain, locking each "
                "while it does: run it at a quiet time."
            )
        else:
            fix = f"ALTER TABLE {owner} VALIDATE CONSTRAINT {name};"
            lock = (
                "Validating scans the table under a SHARE UPDATE EXCLUSIVE lock, which lets "
                "reads and writes go on and holds off only VACUUM, ANALYZE, index builds "
                "and other schema changes"
                + (
                    " (the referenced table gets a ROW SHARE lock)."
                    if item.kind == "foreign key"
                    else "."
                )
            )
        findings.append(
            Finding(
                check="invalid_constraints",
                severity="warning",
                what=f"{item.kind} constraint {name} on {'domain ' if item.on_domain else ''}"
                f"{owner} is NOT VALID",
                why="New and updated rows are checked, but existing rows may break the "
                "constraint, and the planner does not rely on it. "
                f"{lock} It fails on the first row that breaks the constraint: find and fix "
                "those rows first (details['violations'] has the query).",
                fix=fix,
                subject=owner,
                details={
                    "constraint": item.constraint,
                    "kind": item.kind,
                    "definition": item.definition,
                    "violations": item.violations,
                },
            )
        )
    return findings


CHECKS = (
    Check(
        "invalid_constraints",
        "constraints",
        "check and foreign key constraints added NOT VALID and never validated",
        lambda conn: invalid_constraint_findings(invalid_constraints(conn)),
    ),
)


def check_constraints(conn: Connection) -> CheckResult:
    """Check for constraints not yet validated."""
    [check] = CHECKS
    return check(conn)
