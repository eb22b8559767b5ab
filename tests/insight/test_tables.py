"""Table checks, each against a condition made for real: sequential scans, cache misses."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.insight.tables import (
    cache_hit_findings,
    cache_hit_ratios,
    check_tables,
    sequential_scan_findings,
    sequential_scans,
)
from pgwarden_test_support import flush_statistics, run_counted, stat, wait_until


def test_sequential_scans_of_a_large_table(pg_engine: Engine) -> None:
    run_counted(
        pg_engine,
        "CREATE TABLE events (id int PRIMARY KEY, kind int)",
        "CREATE TABLE users (id int PRIMARY KEY, name text)",
        "INSERT INTO events SELECT g, g % 50 FROM generate_series(1, 20000) AS g",
        "INSERT INTO users SELECT g, md5(g::text) FROM generate_series(1, 20000) AS g",
    )
    with pg_engine.connect() as conn:
        for kind in range(5):  # no index on kind: each count reads the whole table
            conn.execute(sa.text("SELECT count(*) FROM events WHERE kind = :k"), {"k": kind})
        for user in range(5):
            conn.execute(sa.text("SELECT name FROM users WHERE id = :id"), {"id": user})
        flush_statistics(conn)
        conn.commit()
    wait_until(pg_engine, stat("events", "seq_scan"), lambda scans: scans >= 5)
    wait_until(pg_engine, stat("users", "idx_scan"), lambda scans: scans >= 5)
    wait_until(pg_engine, stat("users", "n_live_tup"), lambda rows: rows == 20000)

    with pg_engine.connect() as conn:
        [events] = sequential_scans(conn, min_rows=10_000, min_rows_read=100_000)
        by_default = sequential_scans(conn)

    assert (events.schema, events.table, events.live_rows) == ("public", "events", 20000)
    assert events.seq_scans >= 5 and events.seq_rows_read >= 100_000
    assert events.sequential_share == 1.0
    assert by_default == []  # 100,000 rows read is below the default million
    [finding] = sequential_scan_findings([events])
    assert finding.subject == "public.events" and finding.fix is None
    assert "20,000 rows" in finding.what and "pgwarden advise indexes" in finding.why


def test_cache_hit_ratios_and_a_table_read_from_outside_the_cache(pg_engine: Engine) -> None:
    # CREATE TABLE AS writes through a 16 MB ring of buffers, so most of a 34 MB table
    # is evicted from shared buffers as it is written: reading it back must miss.
    run_counted(
        pg_engine,
        "CREATE TABLE cold AS SELECT g AS id, repeat('x', 200) AS pad "
        "FROM generate_series(1, 150000) AS g",
    )
    run_counted(pg_engine, "SELECT count(*) FROM cold")
    wait_until(
        pg_engine,
        "SELECT heap_blks_read FROM pg_statio_user_tables WHERE relname = 'cold'",
        lambda reads: reads > 1000,
    )
    with pg_engine.connect() as conn:
        ratios = {r.scope: r for r in cache_hit_ratios(conn)}

    assert set(ratios) == {"database", "tables", "indexes"}
    for ratio in ratios.values():
        assert ratio.ratio is None or 0 <= ratio.ratio <= 1
    assert ratios["indexes"].blocks == 0 and ratios["indexes"].ratio is None  # no index
    tables = ratios["tables"]
    assert tables.ratio is not None and tables.ratio < 0.99 and tables.reads > 1000
    findings = {f.subject: f for f in cache_hit_findings(ratios.values(), min_blocks=1000)}
    assert "tables" in findings and "indexes" not in findings
    assert findings["tables"].fix is None and "shared_buffers" in findings["tables"].why
    # Thresholds filter: too few blocks to judge, or a ratio low enough to accept.
    assert cache_hit_findings(ratios.values(), min_blocks=10**15) == []
    assert cache_hit_findings(ratios.values(), min_hit_ratio=0.0, min_blocks=0) == []


def test_every_table_check_runs_as_a_pg_monitor_role(
    pg_engine: Engine, pg_url: str, monitor_role: str
) -> None:
    run_counted(
        pg_engine,
        "CREATE TABLE scanned (id int) WITH (autovacuum_enabled = false)",
        "INSERT INTO scanned SELECT g FROM generate_series(1, 20000) AS g",
        "SELECT count(*) FROM scanned",
    )
    wait_until(pg_engine, stat("scanned", "seq_tup_read"), lambda rows: rows >= 20000)
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
            results = check_tables(conn, min_rows_read=10_000, min_blocks=0, min_hit_ratio=1.01)
    finally:
        engine.dispose()

    assert (user, is_super) == (role, False)
    assert all(r.skipped is None and r.error is None for r in results)
    subjects = {r.check: [f.subject for f in r.findings] for r in results}
    assert subjects["sequential_scans"] == ["public.scanned"]
    assert set(subjects["cache_hit_ratio"]) == {"database", "tables"}  # no index was read
