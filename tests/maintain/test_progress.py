"""Progress of a real VACUUM, slowed down so that it can be read without a race.

The test database makes VACUUM pause after every page (vacuum_cost_delay), so a vacuum
of a few hundred pages stays in its "scanning heap" phase for minutes: long enough to
read its progress, after which the test cancels it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from maintain_support import Database
from pgwarden.maintain import (
    MaintenanceReport,
    Progress,
    analyze,
    progress_sample,
    reindex,
    vacuum,
    watch_progress,
)


def big_table(db: Database) -> int:
    """Create table ``t`` of a few hundred pages for slowed vacuums; return its pages."""
    db.run(
        "CREATE TABLE t (id int, body text) WITH (autovacuum_enabled = false)",
        "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g",
    )
    db.slow_vacuums()
    return int(db.scalar("SELECT pg_relation_size('t') / current_setting('block_size')::int"))


def scanning(db: Database) -> int:
    """Return the pid of the backend vacuuming ``t``, once it scans the heap."""
    query = (
        "SELECT pid FROM pg_stat_progress_vacuum "
        "WHERE relid = 't'::regclass AND phase = 'scanning heap'"
    )
    return int(db.wait_for(lambda: db.scalar(query)))


def in_thread(target: Callable[[], None]) -> threading.Thread:
    worker = threading.Thread(target=target)
    worker.start()
    return worker


def test_vacuum_reports_progress_while_it_runs(db: Database, pg_engine: Engine) -> None:
    pages = big_table(db)
    samples: list[Progress] = []
    reports: list[MaintenanceReport] = []

    def run() -> None:
        with pg_engine.connect() as conn:
            reports.append(vacuum(conn, ["t"], on_progress=samples.append, progress_interval=0.02))

    worker = in_thread(run)
    pid = scanning(db)
    db.wait_for(lambda: any(s.phase == "scanning heap" and s.done > 0 for s in samples))
    db.cancel(pid)
    worker.join()

    sample = next(s for s in samples if s.phase == "scanning heap" and s.done > 0)
    assert sample.pid == pid
    assert sample.command == "VACUUM" and sample.relation == "t"
    assert sample.unit == "heap blocks" and sample.total == pages
    assert 0 < sample.done < sample.total
    assert sample.fraction is not None and 0 < sample.fraction < 1
    # samples move forward
    scanned = [s.done for s in samples if s.phase == "scanning heap"]
    assert scanned == sorted(scanned)
    # cancelled by another session: reported as such, not raised
    [failed] = reports[0].failed
    assert "Another session cancelled it" in (failed.hint or "")


def test_watch_progress_yields_samples_until_stopped(db: Database, pg_engine: Engine) -> None:
    big_table(db)

    def run() -> None:
        with pg_engine.connect() as conn:
            vacuum(conn, ["t"])

    worker = in_thread(run)
    pid = scanning(db)
    stop = threading.Event()
    seen = []
    with pg_engine.connect() as watcher:
        watcher.execution_options(isolation_level="AUTOCOMMIT")
        for sample in watch_progress(watcher, pid, stop, interval=0.01):
            seen.append(sample)
            if len(seen) == 3:
                stop.set()
    db.cancel(pid)
    worker.join()
    assert len(seen) == 3
    assert {(s.pid, s.command, s.phase, s.unit) for s in seen} == {
        (pid, "VACUUM", "scanning heap", "heap blocks")
    }


def test_no_sample_for_a_backend_running_no_maintenance(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        assert progress_sample(conn, pid) is None
        stop = threading.Event()
        stop.set()
        assert list(watch_progress(conn, pid, stop)) == []


def test_a_failing_progress_callback_does_not_fail_the_vacuum(
    db: Database, pg_engine: Engine
) -> None:
    db.run("CREATE TABLE t (id int)", "INSERT INTO t SELECT generate_series(1, 1000)")
    calls: list[Progress] = []
    reports: list[MaintenanceReport] = []

    def broken(sample: Progress) -> None:
        calls.append(sample)
        raise RuntimeError("display gone")

    db.slow_vacuums()

    def run() -> None:
        with pg_engine.connect() as conn:
            reports.append(vacuum(conn, ["t"], on_progress=broken, progress_interval=0.01))

    worker = in_thread(run)
    db.wait_for(lambda: calls)
    worker.join()  # five pages: done in a few seconds, even slowed down
    assert reports and reports[0].ok
    assert db.stat("t", "last_vacuum") is not None


def test_analyze_reports_its_sample_blocks(db: Database, pg_engine: Engine) -> None:
    pages = big_table(db)
    samples: list[Progress] = []

    def run() -> None:
        with pg_engine.connect() as conn:
            analyze(conn, ["t"], on_progress=samples.append, progress_interval=0.02)

    worker = in_thread(run)
    db.wait_for(lambda: any(s.done > 0 for s in samples))
    db.cancel(samples[0].pid)
    worker.join()
    sample = next(s for s in samples if s.done > 0)
    assert (sample.command, sample.phase, sample.unit) == (
        "ANALYZE",
        "acquiring sample rows",
        "sample blocks",
    )
    assert 0 < sample.done <= sample.total == pages


def test_reindex_concurrently_reports_what_it_waits_for(db: Database, pg_engine: Engine) -> None:
    # REINDEX CONCURRENTLY waits for older transactions; one held open holds it there.
    db.run("CREATE TABLE t (id int PRIMARY KEY)", "CREATE TABLE other (id int)")
    samples: list[Progress] = []
    reports: list[MaintenanceReport] = []

    def run() -> None:
        with pg_engine.connect() as conn:
            reports.append(
                reindex(
                    conn,
                    indexes=["t_pkey"],
                    concurrently=True,
                    lock_timeout=0,
                    on_progress=samples.append,
                    progress_interval=0.02,
                )
            )

    with db.transaction("SELECT * FROM other", isolation="REPEATABLE READ"):
        worker = in_thread(run)
        db.wait_for(lambda: any(s.phase.startswith("waiting for") for s in samples))
    worker.join()
    assert reports[0].ok
    sample = next(s for s in samples if s.phase.startswith("waiting for"))
    assert sample.command == "REINDEX CONCURRENTLY" and sample.relation == "t"
    assert sample.unit == "lockers waited for" and 0 <= sample.done <= sample.total
