"""Wraparound ages, measured on tables whose IDs were made to age for real."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pgwarden.insight.wraparound import (
    WRAPAROUND_LIMIT,
    check_wraparound,
    database_ages,
    database_wraparound_findings,
    table_ages,
    table_wraparound_findings,
)

# Each statement on its own in autocommit mode is a transaction that takes an ID.
CONSUME_XIDS = ("SELECT txid_current()",) * 5


def relation_ages(conn: Connection, table: str) -> tuple[int, int | None]:
    """Return the transaction ID age of ``table`` and of its TOAST table."""
    row = conn.execute(
        sa.text(
            "SELECT age(c.relfrozenxid), age(t.relfrozenxid) FROM pg_class AS c "
            "LEFT JOIN pg_class AS t ON t.oid = c.reltoastrelid WHERE c.oid = CAST(:t AS regclass)"
        ),
        {"t": table},
    ).one()
    return row[0], row[1]


def test_database_ages_cover_the_server_oldest_first(run_autocommit, pg_engine: Engine) -> None:
    run_autocommit(*CONSUME_XIDS)
    with pg_engine.connect() as conn:
        current = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        ages = database_ages(conn)

    by_name = {db.database: db for db in ages}
    assert {current, "template0", "template1"} <= set(by_name)
    ours = by_name[current]
    assert ours.xid_age >= 5  # cloned with its template's frozen ID, five IDs since
    assert ours.mxid_age >= 0
    assert ours.xids_left == WRAPAROUND_LIMIT - ours.xid_age
    oldest = [max(db.xid_age, db.mxid_age) for db in ages]
    assert oldest == sorted(oldest, reverse=True)


def test_table_ages_order_oldest_first_and_a_freeze_resets(
    run, run_autocommit, pg_engine: Engine
) -> None:
    run("CREATE TABLE ledger (id int, note text)")
    run_autocommit(*CONSUME_XIDS)
    run("CREATE TABLE journal (id int)")
    run_autocommit(*CONSUME_XIDS)
    with pg_engine.connect() as conn:
        ours = [t for t in table_ages(conn, limit=None) if t.schema == "public"]

    assert [t.table for t in ours] == ["ledger", "journal"]
    ledger, journal = ours
    assert ledger.xid_age >= journal.xid_age + 5 >= 10
    assert (ledger.temporary, ledger.xids_left) == (False, WRAPAROUND_LIMIT - ledger.xid_age)
    assert ledger.size_bytes > 0  # its TOAST table and TOAST index, even when empty

    run_autocommit("VACUUM (FREEZE) ledger")
    with pg_engine.connect() as conn:
        ours = [t for t in table_ages(conn, limit=None) if t.schema == "public"]
    assert [t.table for t in ours] == ["journal", "ledger"]


def test_a_toast_table_older_than_its_table_counts(run, run_autocommit, pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        if conn.dialect.server_version_info < (14,):
            pytest.skip("VACUUM (PROCESS_TOAST FALSE) needs PostgreSQL 14")
    run("CREATE TABLE document (id int, body text)")
    run_autocommit(*CONSUME_XIDS, "VACUUM (FREEZE, PROCESS_TOAST FALSE) document")
    with pg_engine.connect() as conn:
        main_age, toast_age = relation_ages(conn, "document")
        [document] = [t for t in table_ages(conn, limit=None) if t.table == "document"]

    assert toast_age is not None and toast_age >= main_age + 5
    assert document.xid_age == toast_age


def test_a_low_threshold_flags_the_table_with_a_freeze(
    run, run_autocommit, pg_engine: Engine
) -> None:
    run('CREATE TABLE "Old Orders" (id int)')
    run_autocommit(*CONSUME_XIDS)
    with pg_engine.connect() as conn:
        tables = table_ages(conn, min_age=1, limit=None)
        before, _ = relation_ages(conn, 'public."Old Orders"')

    [finding] = [
        f for f in table_wraparound_findings(tables, warning_age=1) if "Old Orders" in f.what
    ]
    assert finding.check == "table_wraparound"
    assert finding.severity == "warning"
    assert finding.subject == 'public."Old Orders"'
    assert finding.fix == 'VACUUM (FREEZE, VERBOSE) public."Old Orders";'
    assert f"{before:,} transactions old" in finding.what
    assert finding.details["xids_left"] == WRAPAROUND_LIMIT - before
    [critical] = [
        f
        for f in table_wraparound_findings(tables, warning_age=1, critical_age=1)
        if f.subject == finding.subject
    ]
    assert critical.severity == "critical"

    run_autocommit(finding.fix)
    with pg_engine.connect() as conn:
        after, _ = relation_ages(conn, 'public."Old Orders"')
    assert after < before


def test_a_temporary_table_has_no_fix_another_session_could_run(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        conn.execute(sa.text("CREATE TEMPORARY TABLE scratch (id int)"))
        conn.commit()
        for _ in range(3):
            conn.execute(sa.text("SELECT txid_current()"))
            conn.commit()
        [scratch] = [t for t in table_ages(conn, min_age=1, limit=None) if t.table == "scratch"]

    assert scratch.temporary
    [finding] = table_wraparound_findings([scratch], warning_age=1)
    assert finding.fix is None
    assert "temporary" in finding.why


def test_database_findings_freeze_the_database(run_autocommit, pg_engine: Engine) -> None:
    run_autocommit(*CONSUME_XIDS)
    with pg_engine.connect() as conn:
        current = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        ages = database_ages(conn)

    [finding] = [
        f for f in database_wraparound_findings(ages, warning_age=1) if f.subject == current
    ]
    assert finding.check == "database_wraparound"
    assert finding.fix == "VACUUM (FREEZE, VERBOSE);"
    assert current in finding.why
    assert database_wraparound_findings(ages) == []


def test_default_thresholds_flag_nothing_on_a_fresh_database(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        results = check_wraparound(conn)

    assert [r.check for r in results] == ["database_wraparound", "table_wraparound"]
    assert [(r.skipped, r.findings) for r in results] == [(None, []), (None, [])]


def test_wraparound_as_a_pg_monitor_role(
    run, run_autocommit, pg_engine: Engine, monitor_role: str
) -> None:
    run("CREATE TABLE ledger (id int, note text)")
    run_autocommit(*CONSUME_XIDS)
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {monitor_role}"))
        databases, tables = check_wraparound(conn, warning_age=1)
        assert [t.table for t in table_ages(conn, limit=None) if t.schema == "public"] == ["ledger"]

    assert databases.skipped is None and tables.skipped is None
    assert databases.findings  # this database, at least, is older than one transaction
    assert "public.ledger" in {f.subject for f in tables.findings}
