from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from maintain_support import Database
from pgwarden.errors import UserError
from pgwarden.maintain import reindex
from pgwarden.maintain.reindex import BLOCKING_WARNING


def valid(db: Database, index: str) -> bool:
    return bool(
        db.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:i)", i=index)
    )


def setup(db: Database) -> None:
    db.run(
        "CREATE TABLE t (id int PRIMARY KEY, v int)",
        "INSERT INTO t SELECT g, g % 100 FROM generate_series(1, 5000) g",
        "CREATE INDEX t_v ON t (v)",
    )


def test_reindex_concurrently_rebuilds_the_index(db: Database, pg_engine: Engine) -> None:
    setup(db)
    before = {name: db.filenode(name) for name in ("t_v", "t_pkey")}
    with pg_engine.connect() as conn:
        report = reindex(conn, indexes=["t_v"], concurrently=True)
    assert report.ok and report.warnings == []
    [op] = report.operations
    assert op.statement == "REINDEX INDEX CONCURRENTLY public.t_v"
    assert op.command == "REINDEX CONCURRENTLY" and op.status == "ok"
    assert db.filenode("t_v") != before["t_v"]
    assert db.filenode("t_pkey") == before["t_pkey"]
    assert valid(db, "t_v")


def test_reindex_table_rebuilds_all_its_indexes_and_warns_without_concurrently(
    db: Database, pg_engine: Engine
) -> None:
    setup(db)
    before = {name: db.filenode(name) for name in ("t_v", "t_pkey")}
    with pg_engine.connect() as conn:
        report = reindex(conn, tables=["t"])
    assert report.ok
    assert report.warnings == [BLOCKING_WARNING]
    assert report.operations[0].statement == "REINDEX TABLE public.t"
    assert all(db.filenode(name) != node for name, node in before.items())


def test_an_invalid_index_becomes_valid(db: Database, pg_engine: Engine) -> None:
    db.run("CREATE TABLE t (id int)", "INSERT INTO t VALUES (1), (1), (2)")
    with pytest.raises(Exception, match="could not create unique index"):
        db.run("CREATE UNIQUE INDEX CONCURRENTLY t_id ON t (id)")
    assert not valid(db, "t_id")
    db.run("DELETE FROM t WHERE ctid = (SELECT max(ctid) FROM t WHERE id = 1)")
    with pg_engine.connect() as conn:
        plan = reindex(conn, invalid=True, concurrently=True, dry_run=True)
        assert [op.statement for op in plan.operations] == [
            "REINDEX INDEX CONCURRENTLY public.t_id"
        ]
        assert not valid(db, "t_id")
        report = reindex(conn, invalid=True, concurrently=True)
    assert report.ok
    assert valid(db, "t_id")


def test_a_failed_concurrent_reindex_names_what_it_left_behind(
    db: Database, pg_engine: Engine
) -> None:
    # REINDEX CONCURRENTLY waits for transactions older than itself; one that outlasts
    # the lock timeout fails it after the new copy was built, and the copy stays.
    setup(db)
    db.run("CREATE TABLE other (id int)")
    with (
        db.transaction("SELECT * FROM other", isolation="REPEATABLE READ") as holder,
        pg_engine.connect() as conn,
    ):
        report = reindex(conn, indexes=["t_v"], concurrently=True, lock_timeout=0.3)
    [failed] = report.failed
    assert failed.error is not None and "transactions older than itself" in failed.error
    assert [(h.pid, h.mode) for h in failed.blockers] == [(holder, None)]
    assert failed.warnings == [
        "REINDEX CONCURRENTLY left the invalid index public.t_v_ccnew behind; drop it with "
        "DROP INDEX CONCURRENTLY public.t_v_ccnew;"
    ]
    assert "DROP INDEX CONCURRENTLY public.t_v_ccnew;" in (failed.hint or "")
    assert valid(db, "t_v") and not valid(db, "t_v_ccnew")

    # --invalid does not rebuild the leftover into a duplicate: it says to drop it.
    with pg_engine.connect() as conn:
        plan = reindex(conn, invalid=True, concurrently=True, dry_run=True)
    assert plan.operations == []
    assert (
        len(plan.warnings) == 1 and "DROP INDEX CONCURRENTLY public.t_v_ccnew;" in plan.warnings[0]
    )


def test_a_locked_table_fails_the_reindex_with_its_holder(db: Database, pg_engine: Engine) -> None:
    setup(db)
    with (
        db.transaction("SELECT count(*) FROM t WHERE v = 3") as reader,
        pg_engine.connect() as conn,
    ):
        # A plain REINDEX locks the index ACCESS EXCLUSIVE: an open reader is in the way.
        report = reindex(conn, indexes=["t_v"], lock_timeout=0.2)
    [failed] = report.failed
    assert failed.error is not None
    assert failed.error.startswith("could not lock public.t (index public.t_v)")
    assert reader in [h.pid for h in failed.blockers]


def test_reindex_dry_run_changes_nothing(db: Database, pg_engine: Engine) -> None:
    setup(db)
    before = db.filenode("t_v")
    with pg_engine.connect() as conn:
        report = reindex(conn, tables=["t"], indexes=["t_v"], dry_run=True)
    assert report.statements == [
        "SET lock_timeout = '5000ms'",
        "SET statement_timeout = '0'",
        "REINDEX TABLE public.t",
        "REINDEX INDEX public.t_v",
    ]
    assert report.warnings == [BLOCKING_WARNING]
    assert db.filenode("t_v") == before


def test_nothing_to_reindex_is_a_user_error(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn, pytest.raises(UserError, match="nothing to reindex"):
        reindex(conn)


@pytest.mark.parametrize("name", ["t_v; DROP TABLE t", "nosuch", "t", "public.t_v.x.y"])
def test_a_bad_index_name_runs_nothing(db: Database, pg_engine: Engine, name: str) -> None:
    setup(db)
    before = db.filenode("t_v")
    with pg_engine.connect() as conn, pytest.raises(UserError):
        reindex(conn, indexes=["t_v", name], concurrently=True)
    assert db.filenode("t_v") == before
    assert db.scalar("SELECT to_regclass('t') IS NOT NULL")
