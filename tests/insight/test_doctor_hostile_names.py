"""The doctor on a schema of hostile names: every check runs, every finding names the
real object, and its SQL (the fix, the query for violating rows) runs as written."""

from __future__ import annotations

import contextlib

import sqlalchemy as sa
from hypothesis import given
from sqlalchemy.engine import Connection, Engine

from hostile_names import HostileSchema, examples, hostile_schemas, quoted, raw
from pgwarden.insight import Finding, doctor

# Low enough that the small hostile tables are reported by every check that can see them.
THRESHOLDS = {
    "unused_indexes": {"min_size_bytes": 0},
    "sequential_scans": {"min_rows": 1, "min_rows_read": 1},
    "vacuum_needed": {"min_dead_rows": 1, "min_dead_fraction": 0, "min_inserted_rows": 1},
    "analyze_needed": {"min_modified_rows": 1, "min_modified_fraction": 0},
    "table_bloat": {"min_bloat_fraction": 0, "min_wasted_bytes": 0, "exact": True},
    "index_bloat": {"min_bloat_fraction": 0, "min_wasted_bytes": 0, "exact": True},
    "largest_tables": {"limit": 1000, "min_size_bytes": 0},
    "table_wraparound": {"warning_age": 1},
}

# Checks whose findings do not hang on statistics arriving in time.
ALWAYS_FOUND = {
    "duplicate_indexes",
    "invalid_indexes",
    "foreign_keys_without_index",
    "sequence_usage",
    "invalid_constraints",
    "autovacuum_disabled",
    "largest_tables",
    "table_wraparound",
}

_RESOLVE = sa.text(
    """
    SELECT CASE cardinality(p.parts)
             WHEN 2 THEN to_regclass(:subject)::oid
             WHEN 3 THEN (SELECT a.attrelid FROM pg_attribute AS a
                          WHERE a.attrelid = to_regclass(quote_ident(p.parts[1]) || '.'
                                                         || quote_ident(p.parts[2]))
                            AND a.attname = p.parts[3] AND NOT a.attisdropped)
           END
    FROM (SELECT parse_ident(:subject) AS parts) AS p
    """
)


def resolve(conn: Connection, subject: str) -> int | None:
    """Return the oid of the relation ``subject`` names (or whose column it names)."""
    return conn.execute(_RESOLVE, {"subject": subject}).scalar()


@examples(20)
@given(names=hostile_schemas)
def test_the_doctor_names_hostile_objects_with_sql_that_runs(
    pg_engine: Engine, names: HostileSchema
) -> None:
    autocommit = pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    with autocommit as conn:
        with contextlib.suppress(sa.exc.DBAPIError):  # for the exact bloat checks
            raw(conn, "CREATE EXTENSION IF NOT EXISTS pgstattuple")
        names.build(conn)
        try:
            with pg_engine.connect() as reader:
                report = doctor(reader, thresholds=THRESHOLDS)
            assert [(r.check, r.error) for r in report.results if r.error] == []
            ours = [f for r in report.results for f in r.findings if mine(conn, names, f)]
            assert {f.check for f in ours} >= ALWAYS_FOUND
            check_objects(conn, names, ours)
            raw(conn, f"DELETE FROM {names.qualified(names.table)} WHERE {quoted(names.key)} < 0")
            for finding in ours:  # each fix runs, unless an earlier one dropped its object
                if finding.fix and resolve(conn, finding.subject or "") is not None:
                    raw(conn, finding.fix)
        finally:
            names.drop(conn)


def mine(conn: Connection, names: HostileSchema, finding: Finding) -> bool:
    """Tell whether ``finding`` is about the hostile schema; fail if its subject is wrong."""
    if finding.subject is None or finding.check == "settings":
        return False
    found = resolve(conn, finding.subject)
    if found is None:  # a name the doctor quoted wrongly, or a one-part name
        parts = conn.execute(sa.text("SELECT parse_ident(:s)"), {"s": finding.subject}).scalar()
        assert len(parts) == 1, f"{finding.check}: {finding.subject!r} names nothing"
        return False
    schema = conn.execute(
        sa.text("SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = :o"),
        {"o": found},
    ).scalar()
    return schema == quoted(names.schema) or schema == names.schema


def check_objects(conn: Connection, names: HostileSchema, ours: list[Finding]) -> None:
    """Check the findings name the objects built for them, and their queries run."""
    by_check: dict[str, list[Finding]] = {}
    for finding in ours:
        by_check.setdefault(finding.check, []).append(finding)
    (invalid,) = by_check["invalid_indexes"]
    assert resolve(conn, invalid.subject or "") == names.oid(conn, names.invalid)
    (duplicate,) = by_check["duplicate_indexes"]
    assert resolve(conn, duplicate.subject or "") in {
        names.oid(conn, names.index),
        names.oid(conn, names.duplicate),
    }
    (unindexed,) = by_check["foreign_keys_without_index"]
    assert unindexed.details["constraint"] == names.foreign_key
    (sequence,) = by_check["sequence_usage"]
    assert resolve(conn, sequence.subject or "") == names.oid(conn, names.parent)
    constraints = {f.details["constraint"]: f for f in by_check["invalid_constraints"]}
    assert set(constraints) == {names.foreign_key, names.check}
    for name, key in [(names.check, -1), (names.foreign_key, -2)]:
        query = constraints[name].details["violations"]
        rows = conn.exec_driver_sql(query, execution_options={"no_parameters": True}).all()
        assert [row._mapping[names.key] for row in rows] == [key]
