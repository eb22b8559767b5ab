"""Find sequences close to running out, and the columns that run out before them.

A sequence stops at its maximum, but the column it feeds may stop sooner: a ``serial``
column fed by a ``bigint`` sequence fails at 2^31, with the sequence far from its end.
:func:`sequence_usage` measures each sequence against the smaller of the two::

    with engine.connect() as conn:
        for usage in sequence_usage(conn, threshold=0.8):
            print(usage.sequence, usage.column, f"{usage.percent:.1f}%")

A sequence's last value is readable only with ``SELECT`` or ``USAGE`` on it (or
``pg_read_all_data``); ``pg_monitor`` alone does not give that. Sequences the role
cannot read are listed by :func:`unreadable_sequences` instead of being guessed at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import qualified, quote_identifier
from pgwarden.insight.findings import Check, CheckResult, Finding

__all__ = [
    "SequenceUsage",
    "check_sequences",
    "sequence_findings",
    "sequence_usage",
    "unreadable_sequences",
]

_NARROW_TYPES = frozenset({"smallint", "integer"})
_BIGINT_MAX = 2**63 - 1


@dataclass(frozen=True)
class SequenceUsage:
    """How far a sequence, and the column it feeds, are towards their end.

    ``max_value`` is the limit that comes first: the sequence's own maximum, or the
    column type's (minimum, for a descending sequence). ``table``, ``column`` and
    ``column_type`` are ``None`` for a sequence that feeds no column.
    """

    schema: str
    sequence: str
    data_type: str
    last_value: int
    max_value: int
    sequence_max: int
    table_schema: str | None
    table: str | None
    column: str | None
    column_type: str | None
    fraction_used: float

    @property
    def percent(self) -> float:
        """Return the share of the range used, in percent."""
        return self.fraction_used * 100


# Columns a sequence feeds: through a column default (serial, or nextval() by hand) or
# as an identity column. pg_sequence_last_value() is called only where the role may
# read the sequence, as the pg_sequences view does, so no sequence makes it fail.
_SEQUENCES = """
WITH seqs AS (
  SELECT c.oid,
         n.nspname AS schema,
         c.relname AS sequence,
         format_type(s.seqtypid, NULL) AS data_type,
         CASE WHEN s.seqincrement > 0 THEN s.seqmax ELSE s.seqmin END AS sequence_max,
         s.seqincrement > 0 AS ascending,
         -- CASE, for the planner may test this on any pg_class row before the join
         CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT,USAGE') END
           AS readable
  FROM pg_sequence AS s
  JOIN pg_class AS c ON c.oid = s.seqrelid
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
  WHERE NOT s.seqcycle
    AND NOT pg_is_other_temp_schema(n.oid)
)
"""

SEQUENCE_USAGE = text(
    _SEQUENCES
    + """,
feeds AS (
  SELECT d.refobjid AS seqid, ad.adrelid AS relid, ad.adnum AS attnum
  FROM pg_depend AS d
  JOIN pg_attrdef AS ad ON ad.oid = d.objid
  WHERE d.classid = 'pg_attrdef'::regclass
    AND d.refclassid = 'pg_class'::regclass
  UNION
  SELECT d.objid, d.refobjid, d.refobjsubid
  FROM pg_depend AS d
  WHERE d.classid = 'pg_class'::regclass
    AND d.refclassid = 'pg_class'::regclass
    AND d.deptype IN ('a', 'i')
    AND d.refobjsubid > 0
),
fed AS (
  SELECT s.schema,
         s.sequence,
         s.data_type,
         CASE WHEN s.readable THEN pg_sequence_last_value(s.oid) END AS last_value,
         CASE
           WHEN s.ascending THEN LEAST(s.sequence_max, CASE a.atttypid
             WHEN 'int2'::regtype THEN 32767
             WHEN 'int4'::regtype THEN 2147483647 END)
           ELSE GREATEST(s.sequence_max, CASE a.atttypid
             WHEN 'int2'::regtype THEN -32768
             WHEN 'int4'::regtype THEN -2147483648 END)
         END AS max_value,
         s.sequence_max,
         tn.nspname AS table_schema,
         t.relname AS "table",
         a.attname AS "column",
         format_type(a.atttypid, NULL) AS column_type
  FROM seqs AS s
  LEFT JOIN feeds AS f ON f.seqid = s.oid
  LEFT JOIN pg_class AS t ON t.oid = f.relid
  LEFT JOIN pg_namespace AS tn ON tn.oid = t.relnamespace
  LEFT JOIN pg_attribute AS a ON a.attrelid = f.relid AND a.attnum = f.attnum
)
SELECT *
FROM (
  SELECT fed.*,
         (last_value::numeric / NULLIF(max_value, 0))::float8 AS fraction_used
  FROM fed
) AS usage
WHERE fraction_used >= :threshold
ORDER BY fraction_used DESC, schema, sequence, "table", "column"
"""
)

UNREADABLE_SEQUENCES = text(
    _SEQUENCES
    + """
SELECT schema, sequence
FROM seqs
WHERE NOT readable
ORDER BY schema, sequence
"""
)


def sequence_usage(conn: Connection, *, threshold: float = 0.9) -> list[SequenceUsage]:
    """Return the sequences past ``threshold`` (a fraction) of their range, fullest first.

    A sequence that feeds several columns appears once per column, each measured
    against its own type. Cycling sequences wrap by design and are left out, as are
    sequences never called and those the role cannot read (see
    :func:`unreadable_sequences`).
    """
    rows = conn.execute(SEQUENCE_USAGE, {"threshold": threshold})
    return [SequenceUsage(**row._mapping) for row in rows]


def unreadable_sequences(conn: Connection) -> list[str]:
    """Return the qualified names of the sequences the role may not read."""
    rows = conn.execute(UNREADABLE_SEQUENCES)
    return [qualified(row.schema, row.sequence, plain=True) for row in rows]


def sequence_findings(usages: Iterable[SequenceUsage], *, critical: float = 0.98) -> list[Finding]:
    """Turn sequence usage into findings, critical from ``critical`` (a fraction) on."""
    findings = []
    for usage in usages:
        sequence = qualified(usage.schema, usage.sequence, plain=True)
        column = None
        if usage.table_schema is not None and usage.table is not None and usage.column:
            table = qualified(usage.table_schema, usage.table, plain=True)
            column = f"{table}.{quote_identifier(usage.column, plain=True)}"
        column_limits = usage.max_value != usage.sequence_max
        limit = f"the {usage.column_type} limit of {column}" if column_limits else "its maximum"
        findings.append(
            Finding(
                check="sequence_usage",
                severity="critical" if usage.fraction_used >= critical else "warning",
                what=f"sequence {sequence}"
                + (f" (feeding {column})" if column else "")
                + f" is at {usage.last_value:,} of {usage.max_value:,} ({usage.percent:.1f}%)",
                why=f"Once it reaches {limit}, every insert that takes a new value fails.",
                fix=_fix(usage, sequence),
                subject=column or sequence,
                details={
                    "last_value": usage.last_value,
                    "max_value": usage.max_value,
                    "sequence_max": usage.sequence_max,
                    "percent": round(usage.percent, 2),
                    "column": column,
                    "column_type": usage.column_type,
                },
            )
        )
    return findings


def _sequence_findings(
    conn: Connection, *, threshold: float = 0.9, critical: float = 0.98
) -> list[Finding]:
    found = sequence_findings(sequence_usage(conn, threshold=threshold), critical=critical)
    unreadable = unreadable_sequences(conn)
    if unreadable:
        role = quote_identifier(conn.execute(text("SELECT current_user")).scalar_one(), plain=True)
        found.append(
            Finding(
                check="sequence_usage",
                severity="info",
                what=f"{len(unreadable)} sequences could not be read by this role",
                why="A sequence's last value needs SELECT or USAGE on it; these were not checked.",
                fix=f"GRANT SELECT ON SEQUENCE {', '.join(unreadable)} TO {role};",
                subject=None,
                details={"sequences": unreadable},
            )
        )
    return found


CHECKS = (
    Check(
        "sequence_usage",
        "sequences",
        "sequences, and the integer columns they feed, near their maximum",
        _sequence_findings,
    ),
)


def check_sequences(
    conn: Connection, *, threshold: float = 0.9, critical: float = 0.98
) -> CheckResult:
    """Check sequence usage; report sequences the role cannot read as one info finding."""
    [check] = CHECKS
    return check(conn, threshold=threshold, critical=critical)


def _fix(usage: SequenceUsage, sequence: str) -> str | None:
    statements = []
    if usage.column_type in _NARROW_TYPES and usage.table_schema and usage.table:
        table = qualified(usage.table_schema, usage.table, plain=True)
        column = quote_identifier(usage.column or "", plain=True)
        # Rewrites the table under an ACCESS EXCLUSIVE lock: plan it for a quiet time.
        statements.append(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE bigint;")
    if usage.data_type != "bigint":
        statements.append(f"ALTER SEQUENCE {sequence} AS bigint;")
    elif not statements and abs(usage.sequence_max) < _BIGINT_MAX:
        bound = "MAXVALUE" if usage.sequence_max > 0 else "MINVALUE"
        statements.append(f"ALTER SEQUENCE {sequence} NO {bound};")
    return " ".join(statements) or None
