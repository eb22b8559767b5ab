"""Statement statistics, from statements run here for real.

The embedded test server preloads pg_stat_statements; a server that does not (the
system one, say) runs the tests of the skip instead. Each test database is new, and
the view is read for the current database only, so other tests' statements never
show up. No test asserts an upper bound on a time: pg_sleep gives the lower bounds.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.advise import top_queries
from pgwarden.insight.findings import CheckSkipped
from pgwarden.insight.statements import (
    QueryStats,
    check_statements,
    queries_by_calls,
    queries_by_mean_time,
    queries_by_total_time,
    slow_queries,
    slow_query_findings,
)
from pgwarden.testing.servers import TestServer

# pg_stat_statements merges statements of the same shape, aliases aside: each probe
# has a shape of its own, and an alias that names it in the text kept.
SLOW = "SELECT pg_sleep(0.02) AS pgwarden_slow_probe"
RARE = "SELECT pg_sleep(0.02), 1 AS pgwarden_rare_probe"
FAST = "SELECT 1, 2, 3 AS pgwarden_fast_probe"


def preloaded(engine: Engine) -> bool:
    with engine.connect() as conn:
        return (
            "pg_stat_statements"
            in conn.execute(sa.text("SHOW shared_preload_libraries")).scalar_one()
        )


def repeat(engine: Engine, statement: str, times: int) -> None:
    with engine.connect() as conn:
        for _ in range(times):
            conn.execute(sa.text(statement))
        conn.commit()


def probe(found: list[QueryStats], alias: str) -> QueryStats:
    [stats] = [s for s in found if alias in s.query]
    return stats


@pytest.fixture
def workload(run, pg_engine: Engine) -> None:
    """Create the extension and run the probes: 100 slow, 5 rare, 150 fast calls."""
    if not preloaded(pg_engine):
        pytest.skip("this server does not preload pg_stat_statements")
    run("CREATE EXTENSION pg_stat_statements")
    repeat(pg_engine, SLOW, 100)
    repeat(pg_engine, RARE, 5)
    repeat(pg_engine, FAST, 150)


@pytest.fixture
def plain_role(pg_server: TestServer, pg_engine: Engine) -> Iterator[str]:
    """Yield a new login role with no special role at all (roles are cluster-wide)."""
    name = f"plain_{secrets.token_hex(4)}"
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f"CREATE ROLE {name} LOGIN"))
    try:
        yield name
    finally:
        pg_engine.dispose()
        with pg_server.admin.connect() as conn:
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {name}"))


@pytest.mark.usefixtures("workload")
def test_top_queries_by_total_mean_and_calls(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        by_total = queries_by_total_time(conn, limit=None)
        by_mean = queries_by_mean_time(conn, limit=None)
        by_calls = queries_by_calls(conn, limit=None)
        top_two = queries_by_calls(conn, limit=2)

    slow = probe(by_total, "pgwarden_slow_probe")
    assert slow.query == "SELECT pg_sleep($1) AS pgwarden_slow_probe"
    assert (slow.calls, slow.rows) == (100, 100)
    assert slow.total_ms >= 100 * 20 and slow.mean_ms >= 20
    assert slow.mean_ms == pytest.approx(slow.total_ms / 100)
    assert 0 < slow.share <= 1
    assert sum(s.share for s in by_total) == pytest.approx(1)
    assert slow.queryid is not None
    fast = probe(by_calls, "pgwarden_fast_probe")
    assert (fast.calls, fast.rows) == (150, 150)

    assert [s.total_ms for s in by_total] == sorted((s.total_ms for s in by_total), reverse=True)
    assert [s.mean_ms for s in by_mean] == sorted((s.mean_ms for s in by_mean), reverse=True)
    assert [s.calls for s in by_calls] == sorted((s.calls for s in by_calls), reverse=True)
    # The later read also sees the statements of the reads before it.
    assert {s.queryid for s in by_total} <= {s.queryid for s in by_calls}
    assert len(top_two) == 2 and top_two[0].calls >= 150


@pytest.mark.usefixtures("workload")
def test_slow_queries_need_the_mean_and_the_calls(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        slow = slow_queries(conn)
        with_few_calls = slow_queries(conn, min_calls=5)
        result = check_statements(conn)

    # The rare probe is as slow, but five calls are below the 100 a finding needs.
    assert [s.calls for s in slow if "probe" in s.query] == [100]
    assert probe(slow, "pgwarden_slow_probe").mean_ms >= 20
    assert probe(with_few_calls, "pgwarden_rare_probe").calls == 5

    assert (result.check, result.skipped) == ("slow_queries", None)
    [finding] = [f for f in result.findings if "pgwarden_slow_probe" in f.what]
    assert finding.severity == "warning"
    assert finding.fix is None
    assert "over 100 calls" in finding.what
    assert finding.subject == str(finding.details["queryid"])
    assert finding.details["query"] == "SELECT pg_sleep($1) AS pgwarden_slow_probe"
    assert finding.details["mean_ms"] >= 20
    assert slow_query_findings([]) == []


@pytest.mark.usefixtures("workload")
def test_statements_as_a_pg_monitor_role(pg_engine: Engine, monitor_role: str) -> None:
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {monitor_role}"))
        by_total = queries_by_total_time(conn, limit=None)
        result = check_statements(conn)

    # The probes ran as another role: pg_read_all_stats shows their text.
    assert probe(by_total, "pgwarden_slow_probe").calls == 100
    assert result.skipped is None
    assert any("pgwarden_slow_probe" in f.what for f in result.findings)


def test_skipped_when_the_extension_is_not_installed(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        result = check_statements(conn)
        with pytest.raises(CheckSkipped) as skipped:
            queries_by_total_time(conn)

    assert result.findings == []
    assert result.skipped == (
        "pg_stat_statements is not installed in this database: CREATE EXTENSION "
        "pg_stat_statements (and add it to shared_preload_libraries)"
    )
    assert skipped.value.reason == result.skipped


def test_skipped_when_installed_but_not_preloaded(run, pg_engine: Engine) -> None:
    if preloaded(pg_engine):
        pytest.skip("this server preloads pg_stat_statements")
    run("CREATE EXTENSION pg_stat_statements")
    with pg_engine.connect() as conn:
        result = check_statements(conn)
        with pytest.raises(CheckSkipped, match="shared_preload_libraries and restart"):
            queries_by_mean_time(conn)
        # The failed read was rolled back to its savepoint: the transaction goes on.
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1

    assert result.skipped == (
        "pg_stat_statements is installed but the server does not load it: add it to "
        "shared_preload_libraries and restart the server"
    )


def test_not_preloaded_as_a_pg_monitor_role(run, pg_engine: Engine, monitor_role: str) -> None:
    if preloaded(pg_engine):
        pytest.skip("this server preloads pg_stat_statements")
    run("CREATE EXTENSION pg_stat_statements")
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {monitor_role}"))
        result = check_statements(conn)

    assert result.skipped is not None and "shared_preload_libraries" in result.skipped


@pytest.mark.usefixtures("workload")
def test_a_role_without_pg_read_all_stats_sees_its_own_texts_only(
    pg_engine: Engine, plain_role: str
) -> None:
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {plain_role}"))
        by_calls = queries_by_calls(conn, limit=None)

    assert by_calls  # the view is readable to all...
    assert not any("pgwarden_" in s.query for s in by_calls)  # ...other roles' texts are not
    assert "<insufficient privilege>" in {s.query for s in by_calls}


@pytest.mark.parametrize("schema", [":x", "a :b%s"])
def test_the_extension_in_a_schema_of_any_name(pg_engine: Engine, schema: str) -> None:
    if not preloaded(pg_engine):
        pytest.skip("this server does not preload pg_stat_statements")
    with pg_engine.begin() as conn:
        for statement in [
            f'CREATE SCHEMA "{schema}"',
            f'CREATE EXTENSION pg_stat_statements SCHEMA "{schema}"',
        ]:
            conn.exec_driver_sql(statement, execution_options={"no_parameters": True})
    repeat(pg_engine, SLOW, 12)
    with pg_engine.connect() as conn:
        assert (
            probe(slow_queries(conn, min_calls=10, min_mean_ms=0), "pgwarden_slow_probe").calls
            == 12
        )
        assert any("pgwarden_slow_probe" in q.sql for q in top_queries(conn, min_calls=10))
