from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from maintain_support import Database
from pgwarden.errors import UserError
from pgwarden.maintain import analyze, vacuum


def test_vacuum_removes_dead_tuples(db: Database, pg_engine: Engine) -> None:
    db.bloated("orders", rows=5000, deleted=3000)
    db.run("CREATE TABLE clean (id int)")
    with pg_engine.connect() as conn:
        report = vacuum(conn, ["orders"])
    assert report.ok
    [op] = report.operations
    assert op.statement == "VACUUM public.orders"
    assert op.status == "ok" and op.seconds is not None and op.error is None
    assert op.target.dead_tuples >= 3000
    assert db.dead_tuples("orders") == 0
    assert db.stat("orders", "n_dead_tup") == 0
    assert db.stat("orders", "last_vacuum") is not None
    assert db.stat("clean", "last_vacuum") is None


def test_vacuum_without_tables_does_every_user_table(db: Database, pg_engine: Engine) -> None:
    db.run("CREATE SCHEMA sales", "CREATE TABLE sales.a (id int)", "CREATE TABLE b (id int)")
    db.run("CREATE MATERIALIZED VIEW m AS SELECT 1 AS one")
    with pg_engine.connect() as conn:
        report = vacuum(conn, analyze=True)
    assert [op.statement for op in report.operations] == [
        "VACUUM (ANALYZE) public.b",
        "VACUUM (ANALYZE) public.m",
        "VACUUM (ANALYZE) sales.a",
    ]
    assert report.ok
    for table in ("b", "sales.a"):
        assert db.stat(table, "last_vacuum") is not None
        assert db.stat(table, "last_analyze") is not None


def test_auto_picks_only_the_table_over_the_threshold(db: Database, pg_engine: Engine) -> None:
    db.bloated("bloated", rows=5000, deleted=3000)  # 60 % dead
    db.bloated("clean", rows=5000, deleted=10)  # 0.2 % dead
    db.bloated("tiny", rows=10, deleted=8)  # 80 % dead, but 8 rows
    with pg_engine.connect() as conn:
        report = vacuum(conn, min_dead_pct=10, min_dead_tuples=1000)
    assert [op.target.name for op in report.operations] == ["bloated"]
    assert report.below_threshold == 2
    assert db.stat("bloated", "last_vacuum") is not None
    assert db.stat("clean", "last_vacuum") is None
    assert db.stat("tiny", "last_vacuum") is None


def test_auto_threshold_applies_to_named_tables_too(db: Database, pg_engine: Engine) -> None:
    db.bloated("a", rows=2000, deleted=1500)
    db.bloated("b", rows=2000, deleted=1500)
    with pg_engine.connect() as conn:
        report = vacuum(conn, ["b"], min_dead_pct=50, min_dead_tuples=100)
    assert [op.target.name for op in report.operations] == ["b"]
    assert db.stat("a", "last_vacuum") is None


def test_vacuum_full_gives_space_back(db: Database, pg_engine: Engine) -> None:
    db.bloated("t", rows=20000, deleted=19000)
    size = db.scalar("SELECT pg_relation_size('t')")
    filenode = db.filenode("t")
    with pg_engine.connect() as conn:
        report = vacuum(conn, ["t"], full=True)
    assert report.ok
    assert report.operations[0].statement == "VACUUM (FULL) public.t"
    assert report.operations[0].command == "VACUUM FULL"
    assert any("ACCESS EXCLUSIVE" in warning for warning in report.warnings)
    assert db.scalar("SELECT pg_relation_size('t')") < size / 5
    assert db.filenode("t") != filenode


def test_vacuum_full_of_a_table_over_the_limit_is_refused(db: Database, pg_engine: Engine) -> None:
    db.bloated("big", rows=20000, deleted=10000)
    db.bloated("small", rows=10, deleted=5)
    filenodes = {name: db.filenode(name) for name in ("big", "small")}
    with pg_engine.connect() as conn, pytest.raises(UserError) as refused:
        vacuum(conn, ["small", "big"], full=True, max_full_size_bytes=256 * 1024)
    assert "public.big" in refused.value.message and "public.small" not in refused.value.message
    assert "ACCESS EXCLUSIVE" in refused.value.message
    assert "pg_repack" in (refused.value.hint or "")
    assert refused.value.exit_code == 2
    for name, filenode in filenodes.items():  # nothing ran, not even the small table
        assert db.filenode(name) == filenode
        assert db.stat(name, "last_vacuum") is None

    with pg_engine.connect() as conn:
        report = vacuum(conn, ["big"], full=True, max_full_size_bytes=256 * 1024, force=True)
    assert report.ok
    assert db.filenode("big") != filenodes["big"]


def test_dry_run_changes_nothing_and_gives_the_statements(db: Database, pg_engine: Engine) -> None:
    db.bloated("t", rows=5000, deleted=3000)
    filenode = db.filenode("t")
    with pg_engine.connect() as conn:
        report = vacuum(
            conn, ["t"], full=True, analyze=True, freeze=True, dry_run=True, lock_timeout=2
        )
    assert report.dry_run
    assert [op.status for op in report.operations] == ["planned"]
    assert report.statements == [
        "SET lock_timeout = '2000ms'",
        "SET statement_timeout = '0'",
        "VACUUM (FULL, FREEZE, ANALYZE) public.t",
    ]
    table = report.operations[0].target
    assert table.dead_tuples >= 3000 and 55 < table.dead_pct < 65
    assert table.size_bytes > 0
    assert db.filenode("t") == filenode
    assert db.stat("t", "last_vacuum") is None
    assert db.stat("t", "last_analyze") is None
    assert db.stat("t", "n_dead_tup") >= 3000


def test_analyze_sets_last_analyze(db: Database, pg_engine: Engine) -> None:
    db.run("CREATE TABLE t (id int)", "INSERT INTO t SELECT generate_series(1, 100)")
    db.run("CREATE TABLE other (id int)")
    with pg_engine.connect() as conn:
        report = analyze(conn, ["t"])
    assert report.ok and report.operations[0].statement == "ANALYZE public.t"
    assert db.stat("t", "last_analyze") is not None
    assert db.stat("other", "last_analyze") is None
    assert db.scalar("SELECT reltuples FROM pg_class WHERE relname = 't'") == 100


def test_analyze_dry_run_changes_nothing(db: Database, pg_engine: Engine) -> None:
    db.run("CREATE TABLE t (id int)")
    with pg_engine.connect() as conn:
        report = analyze(conn, dry_run=True)
    assert report.statements[-1] == "ANALYZE public.t"
    assert db.stat("t", "last_analyze") is None


def test_timeouts_are_restored_after_the_run(pg_engine: Engine, db: Database) -> None:
    db.run("CREATE TABLE t (id int)")
    with pg_engine.connect() as conn:
        before = conn.exec_driver_sql("SHOW lock_timeout").scalar()
        conn.rollback()
        vacuum(conn, ["t"], lock_timeout=1.5, statement_timeout=60)
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == before
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "0"


def test_a_connection_in_a_transaction_is_refused(pg_engine: Engine, db: Database) -> None:
    db.run("CREATE TABLE t (id int)")
    with pg_engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
        with pytest.raises(UserError, match="transaction"):
            vacuum(conn, ["t"])


def test_a_negative_timeout_is_a_user_error(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn, pytest.raises(UserError, match="lock timeout"):
        vacuum(conn, lock_timeout=-1)
