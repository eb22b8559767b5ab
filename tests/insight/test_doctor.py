"""The doctor: every check in one run, thresholds, and checks that cannot run or fail."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.errors import UserError
from pgwarden.insight.doctor import CHECKS, doctor, find_checks, threshold_names

PROBLEMS = (
    "CREATE TABLE customer (id bigint PRIMARY KEY)",
    "CREATE TABLE orders (id serial PRIMARY KEY,"
    " customer_id bigint REFERENCES customer, note text)",
    "CREATE INDEX ix_orders_note ON orders (note)",
    "CREATE INDEX ix_orders_note_again ON orders (note)",
    f"SELECT setval('orders_id_seq', {int((2**31 - 1) * 0.99)})",
)


def test_doctor_reports_each_problem_once_most_serious_first(run, pg_engine: Engine) -> None:
    run(*PROBLEMS)
    with pg_engine.connect() as conn:
        report = doctor(
            conn,
            checks=["indexes", "sequences"],
            thresholds={"unused_indexes": {"min_size_bytes": 0}},
        )
        # The run leaves nothing behind: no transaction, no changed setting.
        assert not conn.in_transaction()
        assert conn.execute(sa.text("SHOW lock_timeout")).scalar_one() == "0"

    found = {(f.check, f.subject) for f in report.findings}
    assert ("duplicate_indexes", "public.ix_orders_note_again") in found
    assert ("foreign_keys_without_index", "public.orders") in found
    assert ("unused_indexes", "public.ix_orders_note") in found
    assert ("sequence_usage", "public.orders.id") in found
    assert report.findings[0].severity == "critical"  # the sequence at 99%
    assert report.counts["critical"] == 1
    assert report.counts["warning"] == len(report.findings_at("warning")) - 1
    assert [r.check for r in report.results] == [
        c.name for c in CHECKS if c.area in {"indexes", "sequences"}
    ]
    assert not report.failed
    assert report.database == conn.engine.url.database


def test_thresholds_are_the_checks_keyword_defaults(run, pg_engine: Engine) -> None:
    run(*PROBLEMS)
    with pg_engine.connect() as conn:
        default = doctor(conn, checks=["unused_indexes"])
        lowered = doctor(conn, checks=["unused_indexes"], thresholds={
            "unused_indexes": {"min_size_bytes": 0}})  # fmt: skip

    assert default.findings == []  # a small index is under the 10 MB default
    assert {f.subject for f in lowered.findings} == {
        "public.ix_orders_note",
        "public.ix_orders_note_again",
    }
    [unused] = find_checks(["unused_indexes"])
    assert threshold_names(unused) == {"max_scans": 0, "min_size_bytes": 10 * 1024**2}


def test_checks_are_chosen_by_name_or_area(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        report = doctor(conn, checks=["indexes", "sequence_usage"])
    assert {r.check for r in report.results} == {
        c.name for c in CHECKS if c.area == "indexes" or c.name == "sequence_usage"
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"checks": ["unused_indexes", "no_such_check"]}, "unknown check no_such_check"),
        ({"thresholds": {"no_such_check": {"x": 1}}}, "unknown check no_such_check"),
        ({"thresholds": {"unused_indexes": {"min_size": 1}}}, "has no threshold min_size"),
        ({"checks": ["x'; DROP TABLE customer; --"]}, "unknown check x'; DROP TABLE"),
    ],
)
def test_bad_names_are_refused_before_anything_runs(
    run, pg_engine: Engine, kwargs: dict[str, object], message: str
) -> None:
    run(*PROBLEMS)
    with pg_engine.connect() as conn, pytest.raises(UserError, match=message) as raised:
        doctor(conn, **kwargs)  # type: ignore[arg-type]
    assert "doctor --list" in (raised.value.hint or "") or "thresholds are" in (
        raised.value.hint or ""
    )
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('customer')")).scalar() is not None


def test_a_check_that_waits_on_a_lock_fails_alone(run, pg_engine: Engine) -> None:
    run(*PROBLEMS)
    holder = pg_engine.connect()
    try:
        # An uncommitted DROP INDEX holds an exclusive lock the size query must wait for.
        holder.execute(sa.text("DROP INDEX ix_orders_note"))
        with pg_engine.connect() as conn:
            report = doctor(
                conn,
                thresholds={"unused_indexes": {"min_size_bytes": 0}},
                lock_timeout_ms=200,
            )
    finally:
        holder.rollback()
        holder.close()

    # The checks that size the locked index (or its table) fail, each with the reason.
    failed = {r.check: r.error for r in report.failed}
    assert {"unused_indexes", "duplicate_indexes"} <= set(failed)
    assert not set(failed) & {"foreign_keys_without_index", "sequence_usage"}
    assert all("lock timeout" in (error or "") for error in failed.values())
    # The other checks ran, in the same transaction, after the failure.
    assert {f.check for f in report.findings} >= {"foreign_keys_without_index", "sequence_usage"}


def test_every_check_runs_or_says_why_as_a_pg_monitor_role(
    run, pg_engine: Engine, monitor_role: str
) -> None:
    run(*PROBLEMS)
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {monitor_role}"))
        report = doctor(conn)
    assert not report.failed
    # A check that cannot run for this role says why; none of them errs.
    assert all(r.skipped is None or len(r.skipped) > 20 for r in report.results)
    assert {f.check for f in report.findings} >= {"foreign_keys_without_index"}


def test_concurrent_runs_do_not_disturb_each_other(run, pg_engine: Engine) -> None:
    run(*PROBLEMS)
    counts: list[dict[str, int]] = []

    def one() -> None:
        with pg_engine.connect() as conn:
            counts.append(doctor(conn).counts)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(counts) == 3 and all(c == counts[0] for c in counts)
