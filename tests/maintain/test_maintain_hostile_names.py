"""VACUUM, ANALYZE and REINDEX, planned and run, on a schema of hostile names: each
statement names the real object and runs."""

from __future__ import annotations

import sqlalchemy as sa
from hypothesis import given
from sqlalchemy.engine import Connection, Engine

from hostile_names import HostileSchema, examples, hostile_schemas
from pgwarden.maintain import MaintenanceReport, analyze, reindex, vacuum
from pgwarden.maintain.tables import Index, Table

COMMANDS = (
    "VACUUM (FULL) ",
    "VACUUM (ANALYZE) ",
    "VACUUM ",
    "ANALYZE ",
    "REINDEX TABLE CONCURRENTLY ",
    "REINDEX TABLE ",
    "REINDEX INDEX CONCURRENTLY ",
    "REINDEX INDEX ",
)


def target_of(conn: Connection, statement: str) -> tuple[str, str]:
    """Return the schema and name of the relation ``statement`` works on, as PostgreSQL
    reads it (by name: REINDEX CONCURRENTLY swaps in a new relation)."""
    command = next(c for c in COMMANDS if statement.startswith(c))
    found = conn.execute(
        sa.text(
            "SELECT n.nspname, c.relname FROM pg_class AS c"
            " JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(:r)"
        ),
        {"r": statement[len(command) :]},
    )
    return tuple(found.one())  # type: ignore[return-value]


def assert_named_right(conn: Connection, report: MaintenanceReport, status: str) -> None:
    """Check every operation of ``report`` has ``status`` and names its own target."""
    for op in report.operations:
        assert (op.status, op.error) == (status, None)
        assert target_of(conn, op.statement) == (op.target.schema, op.target.name)


@examples(20)
@given(names=hostile_schemas)
def test_maintenance_names_hostile_objects_and_runs(
    pg_engine: Engine, names: HostileSchema
) -> None:
    table, index = names.qualified(names.table), names.qualified(names.index)
    with pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        names.build(conn)
        try:
            table_oid = names.oid(conn, names.table)
            for full in (False, True):
                plan = vacuum(conn, tables=[table], full=full, dry_run=True, force=True)
                assert [op.target.oid for op in plan.operations] == [table_oid]
                assert_named_right(conn, plan, "planned")
            # By threshold: whichever tables the statistics show, each named right.
            assert_named_right(conn, vacuum(conn, min_dead_tuples=1, dry_run=True), "planned")
            assert_named_right(conn, vacuum(conn, tables=[table], analyze=True), "ok")
            assert_named_right(conn, analyze(conn, tables=[table]), "ok")
            plan = reindex(conn, tables=[table], concurrently=True, dry_run=True)
            assert_named_right(conn, plan, "planned")
            assert_named_right(conn, reindex(conn, indexes=[index], concurrently=True), "ok")
            # The invalid index is a unique one over duplicates: found, named, and its
            # rebuild fails for that reason alone.
            (rebuild,) = reindex(conn, invalid=True).operations
            assert isinstance(rebuild.target, Index)
            assert rebuild.target.oid == names.oid(conn, names.invalid)
            assert target_of(conn, rebuild.statement) == (names.schema, names.invalid)
            assert rebuild.status == "failed" and "could not create unique index" in (
                rebuild.error or ""
            )
            assert not isinstance(rebuild.target, Table)
        finally:
            names.drop(conn)
