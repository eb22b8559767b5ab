"""How a run meets other sessions: lock timeouts, statement timeouts, server warnings."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from maintain_support import Database
from pgwarden.maintain import analyze, vacuum


def test_a_locked_table_fails_fast_names_the_holder_and_the_rest_go_on(
    db: Database, pg_engine: Engine
) -> None:
    db.bloated("a", rows=2000, deleted=1000)
    db.bloated("b", rows=2000, deleted=1000)
    db.bloated("c", rows=2000, deleted=1000)
    with (
        db.transaction("LOCK TABLE b IN ACCESS EXCLUSIVE MODE") as holder,
        pg_engine.connect() as conn,
    ):
        report = vacuum(conn, ["a", "b", "c"], lock_timeout=0.2)
    assert not report.ok
    assert [op.status for op in report.operations] == ["ok", "failed", "ok"]
    [failed] = report.failed
    assert failed.error is not None
    assert failed.error.startswith("could not lock public.b within lock_timeout (200ms)")
    assert [(h.pid, h.mode) for h in failed.blockers] == [(holder, "AccessExclusiveLock")]
    assert "LOCK TABLE b" in (failed.blockers[0].query or "")
    assert failed.blockers[0].state == "idle in transaction"
    assert f"pg_terminate_backend({holder})" in (failed.hint or "")
    assert "--lock-timeout" in (failed.hint or "")
    assert db.stat("a", "last_vacuum") is not None
    assert db.stat("b", "last_vacuum") is None
    assert db.stat("c", "last_vacuum") is not None


def test_a_weaker_conflicting_lock_stops_vacuum_too(db: Database, pg_engine: Engine) -> None:
    # SHARE (what CREATE INDEX takes) lets readers and VACUUM's readers in, not VACUUM.
    db.run("CREATE TABLE t (id int)")
    with db.transaction("LOCK TABLE t IN SHARE MODE") as holder, pg_engine.connect() as conn:
        report = analyze(conn, ["t"], lock_timeout=0.1)
    [failed] = report.failed
    assert [(h.pid, h.mode) for h in failed.blockers] == [(holder, "ShareLock")]


def test_a_lock_that_does_not_conflict_is_no_obstacle(db: Database, pg_engine: Engine) -> None:
    db.run("CREATE TABLE t (id int)", "INSERT INTO t VALUES (1)")
    with (
        db.transaction("UPDATE t SET id = 2"),  # ROW EXCLUSIVE
        pg_engine.connect() as conn,
    ):
        report = vacuum(conn, ["t"], lock_timeout=5)
    assert report.ok


def test_a_statement_timeout_fails_the_statement_only(db: Database, pg_engine: Engine) -> None:
    # Slowed down to a pause after every page, VACUUM of t takes minutes.
    db.run("CREATE TABLE t (id int)", "INSERT INTO t SELECT generate_series(1, 100000)")
    db.run("CREATE TABLE u (id int)")
    db.slow_vacuums()
    with pg_engine.connect() as conn:
        report = vacuum(conn, ["t", "u"], statement_timeout=0.3)
    assert [op.status for op in report.operations] == ["failed", "ok"]
    failed = report.failed[0]
    assert "statement timeout" in (failed.error or "")
    assert "--statement-timeout" in (failed.hint or "")


def test_a_table_the_role_may_not_vacuum_is_reported(
    db: Database, pg_url: str, pg_engine: Engine
) -> None:
    import secrets

    import sqlalchemy as sa

    from pgwarden.db.engines import create_engine

    role = f"maint_{secrets.token_hex(4)}"
    db.run("CREATE TABLE t (id int)")
    try:
        db.run(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'", f"GRANT SELECT ON t TO {role}")
    except sa.exc.ProgrammingError:
        import pytest

        pytest.skip("the test server's role cannot create roles")
    url = sa.make_url(pg_url).set(username=role, password="pw")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            report = vacuum(conn, ["t"])
        [op] = report.operations
        # PostgreSQL skips it with a WARNING, not an error: the warning must not be lost.
        assert op.warnings and "skipping" in op.warnings[0]
    finally:
        engine.dispose()
        db.run(f"DROP OWNED BY {role}", f"DROP ROLE {role}")


def test_a_locked_table_does_not_stall_the_plan_of_a_whole_run(
    db: Database, pg_engine: Engine
) -> None:
    # Listing every table must not wait for the lock on one of them (reading its exact
    # size would): it settles for the estimate and the VACUUM reports the lock.
    db.run("CREATE TABLE a (id int)", "CREATE TABLE b (id int)")
    with (
        db.transaction("LOCK TABLE a IN ACCESS EXCLUSIVE MODE") as holder,
        pg_engine.connect() as conn,
    ):
        report = vacuum(conn, lock_timeout=0.2)
        tables = {op.target.name: op.target for op in report.operations}
        assert not tables["a"].size_exact and tables["b"].size_exact
        assert [op.status for op in report.operations] == ["failed", "ok"]
        assert [h.pid for h in report.failed[0].blockers] == [holder]


def test_vacuum_full_of_a_table_whose_size_is_locked_away_is_refused(
    db: Database, pg_engine: Engine
) -> None:
    import pytest

    from pgwarden.errors import UserError

    db.run("CREATE TABLE a (id int)")
    with (
        db.transaction("LOCK TABLE a IN ACCESS EXCLUSIVE MODE"),
        pg_engine.connect() as conn,
        pytest.raises(UserError, match="size unknown"),
    ):
        vacuum(conn, ["a"], full=True)
