"""Vacuum checks, each against a condition made for real: dead rows, a running vacuum."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.insight.vacuum import (
    analyze_findings,
    analyze_needed,
    autovacuum_disabled,
    autovacuum_findings,
    check_vacuum,
    vacuum_findings,
    vacuum_needed,
    vacuum_progress_findings,
    vacuums_running,
)
from pgwarden.testing.servers import TestServer
from pgwarden_test_support import run_counted, stat, wait_until


def test_dead_rows_and_missing_statistics(run_autocommit, pg_engine: Engine) -> None:
    run_counted(
        pg_engine,
        "CREATE TABLE churned (id int, note text) WITH (autovacuum_enabled = false)",
        "CREATE TABLE healthy (id int, note text)",
        "INSERT INTO churned SELECT g, 'x' FROM generate_series(1, 20000) AS g",
        "INSERT INTO healthy SELECT g, 'x' FROM generate_series(1, 20000) AS g",
        "DELETE FROM churned WHERE id > 5000",
    )
    wait_until(pg_engine, stat("churned", "n_dead_tup"), lambda dead: dead == 15000)
    wait_until(pg_engine, stat("healthy", "n_live_tup"), lambda live: live == 20000)
    run_autocommit("VACUUM (ANALYZE) healthy")
    wait_until(pg_engine, stat("healthy", "last_analyze"), lambda moment: moment is not None)

    with pg_engine.connect() as conn:
        vacuum = vacuum_needed(conn)
        analyze = analyze_needed(conn)

    [churned] = vacuum
    assert (churned.table, churned.live_rows, churned.dead_rows) == ("churned", 5000, 15000)
    assert churned.dead_fraction == 0.75
    assert churned.last_vacuum is None and churned.autovacuum_enabled is False
    [stale] = analyze
    assert (stale.table, stale.modified_rows, stale.last_analyze) == ("churned", 35000, None)
    [finding] = vacuum_findings(vacuum)
    assert finding.fix == "VACUUM (ANALYZE) public.churned;"
    assert "15,000 dead rows (75%" in finding.what and "off for this table" in finding.why
    [finding] = analyze_findings(analyze)
    assert finding.fix == "ANALYZE public.churned;" and "never analyzed" in finding.what

    run_autocommit("VACUUM (ANALYZE) public.churned")
    wait_until(pg_engine, stat("churned", "n_dead_tup"), lambda dead: dead == 0)
    wait_until(pg_engine, stat("churned", "n_mod_since_analyze"), lambda changed: changed == 0)
    with pg_engine.connect() as conn:
        assert vacuum_needed(conn) == [] and analyze_needed(conn) == []


def test_changes_since_the_last_analyze(run_autocommit, pg_engine: Engine) -> None:
    run_counted(
        pg_engine,
        "CREATE TABLE prices (id int, amount int) WITH (autovacuum_enabled = false)",
        "INSERT INTO prices SELECT g, g FROM generate_series(1, 10000) AS g",
    )
    wait_until(pg_engine, stat("prices", "n_live_tup"), lambda live: live == 10000)
    run_autocommit("ANALYZE prices")
    run_counted(pg_engine, "UPDATE prices SET amount = amount + 1 WHERE id <= 1500")
    wait_until(pg_engine, stat("prices", "n_mod_since_analyze"), lambda changed: changed == 1500)

    with pg_engine.connect() as conn:
        [stale] = analyze_needed(conn, min_modified_fraction=0.1)
        # 15% changed: below the default fifth of the table, and below a higher floor.
        assert analyze_needed(conn) == []
        assert analyze_needed(conn, min_modified_rows=2000, min_modified_fraction=0) == []

    assert (stale.table, stale.modified_rows) == ("prices", 1500)
    assert stale.last_analyze is not None
    [finding] = analyze_findings([stale])
    assert "last analyzed at" in finding.what and "UTC" in finding.what


def test_autovacuum_turned_off_per_table(run, pg_engine: Engine) -> None:
    run(
        "CREATE TABLE quiet (id int) WITH (autovacuum_enabled = off)",
        "CREATE TABLE big_values (id int, body text) WITH (toast.autovacuum_enabled = false)",
        'CREATE SCHEMA "Sales"',
        'CREATE TABLE "Sales"."Order Items" (id int, body text) '
        "WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false)",
        "CREATE MATERIALIZED VIEW totals WITH (autovacuum_enabled = false) AS SELECT 1 AS n",
        "CREATE TABLE normal (id int) WITH (autovacuum_enabled = true)",
    )
    with pg_engine.connect() as conn:
        found = autovacuum_disabled(conn)

    assert [(t.schema, t.table) for t in found] == [
        ("Sales", "Order Items"),
        ("public", "big_values"),
        ("public", "quiet"),
        ("public", "totals"),
    ]
    fixes = {f.subject: f.fix for f in autovacuum_findings(found)}
    assert fixes == {
        '"Sales"."Order Items"': 'ALTER TABLE "Sales"."Order Items" '
        "RESET (autovacuum_enabled, toast.autovacuum_enabled);",
        "public.big_values": "ALTER TABLE public.big_values RESET (toast.autovacuum_enabled);",
        "public.quiet": "ALTER TABLE public.quiet RESET (autovacuum_enabled);",
        "public.totals": "ALTER MATERIALIZED VIEW public.totals RESET (autovacuum_enabled);",
    }
    run(*(fix for fix in fixes.values() if fix))
    with pg_engine.connect() as conn:
        assert autovacuum_disabled(conn) == []


@pytest.fixture
def slow_vacuum(pg_engine: Engine, run) -> Iterator[int]:
    """Yield the pid of a manual VACUUM slowed to a crawl, cancelled afterwards."""
    run(
        "CREATE TABLE crawl (id int, pad text) WITH (autovacuum_enabled = false)",
        "INSERT INTO crawl SELECT g, md5(g::text) FROM generate_series(1, 20000) AS g",
        "DELETE FROM crawl WHERE id % 2 = 0",
    )
    conn = pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    # A 100 ms sleep after every page: the vacuum runs for seconds, long enough to see.
    conn.execute(sa.text("SET vacuum_cost_delay = 100"))
    conn.execute(sa.text("SET vacuum_cost_limit = 1"))
    errors: list[BaseException] = []

    def vacuum() -> None:
        try:
            conn.execute(sa.text("VACUUM crawl"))
        except sa.exc.OperationalError as error:  # cancelled, as planned
            errors.append(error)

    worker = threading.Thread(target=vacuum)
    worker.start()
    try:
        wait_until(
            pg_engine,
            f"SELECT count(*) FROM pg_stat_progress_vacuum WHERE pid = {pid}",
            lambda count: count == 1,
        )
        yield pid
    finally:
        with pg_engine.connect() as admin:
            admin.execute(sa.text("SELECT pg_cancel_backend(:pid)"), {"pid": pid})
        worker.join(timeout=10)
        conn.close()
    assert errors, "the vacuum finished before it was cancelled"


@pytest.fixture
def plain_role(pg_server: TestServer, pg_engine: Engine) -> Iterator[str]:
    """Yield the quoted name of a new role with no privileges at all."""
    quoted = f'"plain_{secrets.token_hex(4)}"'
    try:
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f"CREATE ROLE {quoted}"))
    except sa.exc.ProgrammingError as exc:
        pytest.skip(f"the test server's role cannot create roles: {exc.orig}")
    try:
        yield quoted
    finally:
        with pg_server.admin.connect() as conn:
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {quoted}"))


def test_a_running_vacuum_is_reported(
    slow_vacuum: int, pg_engine: Engine, monitor_role: str, plain_role: str
) -> None:
    with pg_engine.connect() as conn:
        [running] = vacuums_running(conn)
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {monitor_role}"))
        [seen_by_monitor] = vacuums_running(conn)
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {plain_role}"))
        [seen_by_anyone] = vacuums_running(conn)

    assert (running.pid, running.schema, running.table) == (slow_vacuum, "public", "crawl")
    assert running.autovacuum is False and running.wraparound is False
    assert running.heap_blocks_total > 0 and running.phase
    assert (seen_by_monitor.table, seen_by_monitor.autovacuum) == ("crawl", False)
    [finding] = vacuum_progress_findings([running])
    assert finding.severity == "info" and finding.subject == "public.crawl"
    assert finding.what.startswith("VACUUM of public.crawl is running")
    # Without pg_read_all_stats, another role's vacuum shows its process and no more.
    assert (seen_by_anyone.pid, seen_by_anyone.table, seen_by_anyone.phase) == (
        slow_vacuum,
        None,
        None,
    )
    [vague] = vacuum_progress_findings([seen_by_anyone])
    assert vague.subject is None and "of a table is running" in vague.what


def test_every_vacuum_check_runs_as_a_pg_monitor_role(
    pg_engine: Engine, pg_url: str, monitor_role: str
) -> None:
    run_counted(
        pg_engine,
        "CREATE TABLE churned (id int) WITH (autovacuum_enabled = false)",
        "INSERT INTO churned SELECT g FROM generate_series(1, 20000) AS g",
        "DELETE FROM churned WHERE id > 2000",
        "CREATE TABLE inserted (id int) WITH (autovacuum_enabled = false)",
        "INSERT INTO inserted SELECT g FROM generate_series(1, 20000) AS g",
    )
    wait_until(pg_engine, stat("churned", "n_dead_tup"), lambda dead: dead == 18000)
    wait_until(pg_engine, stat("inserted", "n_ins_since_vacuum"), lambda rows: rows == 20000)
    # Connect as the role itself: a login that is a member of pg_monitor and nothing more.
    role = monitor_role.strip('"')
    engine = sa.create_engine(
        sa.make_url(pg_url).set(drivername="postgresql+psycopg", username=role)
    )
    try:
        with engine.connect() as conn:
            user, is_super = conn.execute(
                sa.text("SELECT rolname, rolsuper FROM pg_roles WHERE rolname = current_user")
            ).one()
            results = check_vacuum(conn)
    finally:
        engine.dispose()

    assert (user, is_super) == (role, False)
    assert all(r.skipped is None and r.error is None for r in results)
    subjects = {r.check: [f.subject for f in r.findings] for r in results}
    assert subjects["vacuum_needed"] == ["public.churned", "public.inserted"]
    assert subjects["analyze_needed"] == ["public.churned", "public.inserted"]
    assert subjects["autovacuum_disabled"] == ["public.churned", "public.inserted"]
