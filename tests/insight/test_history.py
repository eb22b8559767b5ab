"""Snapshots of sizes and query statistics, and the trends read from them."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pgwarden.errors import NotEnabled, UserError
from pgwarden.insight.history import Snapshot, growth, regressions, snapshot, snapshots


def take(engine: Engine, **kwargs: object) -> Snapshot:
    with engine.begin() as conn:
        return snapshot(conn, **kwargs)  # type: ignore[arg-type]


def total_size(conn: Connection, relation: str) -> int:
    return int(
        conn.execute(sa.text("SELECT pg_total_relation_size(:r)"), {"r": relation}).scalar_one()
    )


def test_growth_between_snapshots_is_measured_per_table_and_index(run, pg_engine: Engine) -> None:
    run(
        "CREATE TABLE events (id bigint PRIMARY KEY, payload text)",
        "CREATE TABLE quiet (id int)",
    )
    first = take(pg_engine)
    with pg_engine.connect() as conn:
        before = total_size(conn, "events")
    run("INSERT INTO events SELECT g, repeat('x', 200) FROM generate_series(1, 20000) AS g")
    second = take(pg_engine)

    with pg_engine.connect() as conn:
        after = total_size(conn, "events")
        index_after = conn.execute(sa.text("SELECT pg_relation_size('events_pkey')")).scalar_one()
        grown = {g.name: g for g in growth(conn)}
        listed = snapshots(conn)

    assert [s.id for s in listed] == [second.id, first.id]
    assert second.relations >= 3 and second.figures["database_bytes"] > 0
    events = grown["events"]
    assert (events.schema, events.kind) == ("public", "table")
    assert (events.before_bytes, events.after_bytes) == (before, after)
    assert events.delta_bytes == after - before > 0
    assert grown["events_pkey"].after_bytes == index_after
    assert grown["events_pkey"].table_name == "events"
    assert "quiet" not in grown  # no growth, not listed
    assert next(iter(grown)) == "events"  # largest growth first


def test_a_first_snapshot_creates_its_schema_and_prunes_old_ones(run, pg_engine: Engine) -> None:
    take(pg_engine)
    run("UPDATE pgwarden.insight_snapshot SET taken_at = taken_at - interval '100 days'")
    kept = take(pg_engine, keep_days=90)
    with pg_engine.connect() as conn:
        assert [s.id for s in snapshots(conn)] == [kept.id]
        # Its own tables are not measured.
        count = conn.execute(
            sa.text("SELECT count(*) FROM pgwarden.insight_relation WHERE schema_name = 'pgwarden'")
        ).scalar_one()
    assert count == 0


def test_comparisons_need_two_snapshots_and_known_ids(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        assert snapshots(conn) == []
        with pytest.raises(NotEnabled, match="has 0"):
            growth(conn)
    only = take(pg_engine)
    with pg_engine.connect() as conn, pytest.raises(NotEnabled, match="two snapshots"):
        regressions(conn)
    take(pg_engine)
    with pg_engine.connect() as conn:
        with pytest.raises(UserError, match="no snapshot 999"):
            growth(conn, before=999)
        with pytest.raises(UserError, match="with itself"):
            growth(conn, before=only.id, after=only.id)
        with pytest.raises(UserError, match="days older"):
            growth(conn, days=30)


def test_a_role_that_may_not_create_the_schema_is_told_how(
    pg_engine: Engine, monitor_role: str
) -> None:
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {monitor_role}"))
        with pytest.raises(NotEnabled, match="may not create") as raised:
            snapshot(conn)
    assert "CREATE SCHEMA pgwarden AUTHORIZATION" in (raised.value.hint or "")
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regnamespace('pgwarden')")).scalar() is None


@pytest.fixture
def statements(run, pg_engine: Engine) -> None:
    try:
        run("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        with pg_engine.connect() as conn:
            conn.execute(sa.text("SELECT count(*) FROM pg_stat_statements"))
    except sa.exc.DBAPIError as error:
        pytest.skip(f"pg_stat_statements is not usable on this server: {error.orig}")


def lookups(engine: Engine, times: int) -> None:
    with engine.connect() as conn:
        for key in range(times):
            conn.execute(sa.text("SELECT count(*) FROM readings WHERE sensor = :k"), {"k": key})


def test_a_query_that_lost_its_index_is_a_regression(
    statements: None, run, pg_engine: Engine
) -> None:
    run(
        "CREATE TABLE readings (sensor int, value float8)",
        "INSERT INTO readings SELECT g % 5000, random() FROM generate_series(1, 200000) AS g",
        "CREATE INDEX ix_readings_sensor ON readings (sensor)",
        "ANALYZE readings",
    )
    lookups(pg_engine, 150)
    before = take(pg_engine)
    assert before.statements_tracked and before.statements > 0
    run("DROP INDEX ix_readings_sensor")
    lookups(pg_engine, 150)
    take(pg_engine)

    with pg_engine.connect() as conn:
        found = [r for r in regressions(conn, min_delta_ms=0.1) if "readings" in r.query]
        unchanged = [
            r for r in regressions(conn, min_delta_ms=0.1) if "pgwarden.insight" in r.query
        ]
    [slower] = found
    assert (slower.before_calls, slower.after_calls) == (150, 150)
    assert slower.after_mean_ms > 1.5 * slower.before_mean_ms
    assert slower.factor > 1.5 and slower.extra_ms > 0
    assert unchanged == []


def test_statements_are_tracked_only_where_the_view_answers(run, pg_engine: Engine) -> None:
    run("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    with pg_engine.connect() as conn:
        try:
            with conn.begin():
                conn.execute(sa.text("SELECT 1 FROM pg_stat_statements LIMIT 1"))
            readable = True
        except sa.exc.DBAPIError:
            readable = False
    taken = take(pg_engine)
    assert taken.statements_tracked is readable
    assert (taken.statements > 0) is readable
