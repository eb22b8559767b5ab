"""Bloat, estimated and measured, against tables bloated for real by updates and deletes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.insight.bloat import (
    check_bloat,
    has_pgstattuple,
    index_bloat,
    index_bloat_findings,
    table_bloat,
    table_bloat_findings,
    unreadable_statistics,
)
from pgwarden.insight.findings import CheckSkipped

MB = 1024**2

# 60,000 rows, each updated three times with autovacuum off: four versions of every
# row, three of them dead. Updating the indexed column makes every version a new
# entry in both indexes. "fresh" is the same table, written once.
CHURN = (
    "CREATE TABLE churn (id int PRIMARY KEY, n int, note text) WITH (autovacuum_enabled = false)",
    "CREATE INDEX churn_n ON churn (n)",
    "INSERT INTO churn SELECT g, g, md5(g::text) FROM generate_series(1, 60000) AS g",
    "UPDATE churn SET n = n + 1",
    "UPDATE churn SET n = n + 1",
    "UPDATE churn SET n = n + 1",
    "CREATE TABLE fresh (id int PRIMARY KEY, n int, note text) WITH (autovacuum_enabled = false)",
    "INSERT INTO fresh SELECT g, g, md5(g::text) FROM generate_series(1, 60000) AS g",
    "ANALYZE churn, fresh",
)


@pytest.fixture
def pgstattuple(run) -> None:
    """Install pgstattuple in the test database, or skip where the server lacks it."""
    try:
        run("CREATE EXTENSION pgstattuple")
    except sa.exc.DBAPIError as error:
        pytest.skip(f"pgstattuple is not available on this server: {error.orig}")


def relation_size(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.text("SELECT pg_relation_size(:name)"), {"name": name}).scalar_one()
        )


def test_updated_table_is_bloated_by_the_estimate(run, run_autocommit, pg_engine: Engine) -> None:
    run(*CHURN)
    with pg_engine.connect() as conn:
        tables = table_bloat(conn)
        indexes = index_bloat(conn, min_wasted_bytes=MB)
        everything = table_bloat(conn, min_bloat_fraction=0, min_wasted_bytes=0)

    [churn] = tables
    assert (churn.schema, churn.table, churn.exact) == ("public", "churn", False)
    assert churn.size_bytes == relation_size(pg_engine, "churn")
    # Three of four row versions are dead: three quarters of the table, give or take.
    assert 0.7 < churn.bloat_fraction < 0.8 and churn.wasted_bytes > 10 * MB
    [fresh] = [t for t in everything if t.table == "fresh"]
    assert fresh.bloat_fraction < 0.05  # the model fits a table written once
    assert {i.index for i in indexes} == {"churn_pkey", "churn_n"}
    assert all(i.bloat_fraction > 0.4 for i in indexes)
    [finding] = table_bloat_findings(tables)
    assert finding.fix == "VACUUM (FULL, ANALYZE) public.churn;"
    assert "ACCESS EXCLUSIVE" in finding.why and "pg_repack" in finding.why
    assert "estimated" in finding.what and finding.details["exact"] is False
    fixes = sorted(f.fix or "" for f in index_bloat_findings(indexes))
    assert fixes == [
        "REINDEX INDEX CONCURRENTLY public.churn_n;",
        "REINDEX INDEX CONCURRENTLY public.churn_pkey;",
    ]

    run_autocommit(*fixes)
    with pg_engine.connect() as conn:
        assert index_bloat(conn, min_wasted_bytes=MB) == []
    run_autocommit(finding.fix)
    with pg_engine.connect() as conn:
        assert table_bloat(conn, min_wasted_bytes=0) == []


def test_exact_figures_from_pgstattuple(
    run, run_autocommit, pg_engine: Engine, pgstattuple: None
) -> None:
    run(*CHURN)
    with pg_engine.connect() as conn:
        assert has_pgstattuple(conn)
        [estimate] = table_bloat(conn)
        [measured] = table_bloat(conn, exact=True)
        before_vacuum = index_bloat(conn, exact=True, min_wasted_bytes=MB)

    assert (measured.table, measured.exact) == ("churn", True)
    assert measured.size_bytes == relation_size(pg_engine, "churn")
    assert 0.7 < measured.bloat_fraction < 0.8
    assert abs(measured.wasted_bytes - estimate.wasted_bytes) < 0.05 * measured.size_bytes
    # pgstatindex counts entries dead or alive alike: the waste shows after a VACUUM.
    assert before_vacuum == []
    run_autocommit("VACUUM churn")
    with pg_engine.connect() as conn:
        indexes = index_bloat(conn, exact=True, min_wasted_bytes=MB)
        healthy = index_bloat(conn, exact=True, min_bloat_fraction=0, min_wasted_bytes=0)
    assert {i.index for i in indexes} == {"churn_pkey", "churn_n"}
    assert all(i.exact and i.bloat_fraction > 0.5 for i in indexes)
    [fresh] = [i for i in healthy if i.index == "fresh_pkey"]
    assert fresh.bloat_fraction < 0.05
    [finding] = index_bloat_findings([i for i in indexes if i.index == "churn_n"])
    assert "measured" in finding.what and finding.subject == "public.churn_n"


def test_exact_without_pgstattuple_says_how_to_install_it(run, pg_engine: Engine) -> None:
    run("CREATE TABLE t (id int)")
    with pg_engine.connect() as conn:
        assert not has_pgstattuple(conn)
        with pytest.raises(CheckSkipped, match="CREATE EXTENSION pgstattuple"):
            table_bloat(conn, exact=True)
        results = check_bloat(conn, exact=True)
        estimated = check_bloat(conn)

    assert [r.check for r in results] == ["table_bloat", "index_bloat"]
    assert all("CREATE EXTENSION pgstattuple" in str(r.skipped) for r in results)
    assert all(r.skipped is None and r.findings == [] for r in estimated)


def test_quoted_names_and_a_table_emptied_by_deletes(
    run, run_autocommit, pg_engine: Engine
) -> None:
    run(
        'CREATE SCHEMA "Sales"',
        'CREATE TABLE "Sales"."Line Items" (id int PRIMARY KEY, note text) '
        "WITH (autovacuum_enabled = false)",
        """INSERT INTO "Sales"."Line Items" SELECT g, md5(g::text)
           FROM generate_series(1, 20000) AS g""",
        'DELETE FROM "Sales"."Line Items" WHERE id % 5 <> 0',
        'ANALYZE "Sales"."Line Items"',
    )
    with pg_engine.connect() as conn:
        [table] = table_bloat(conn, min_wasted_bytes=0)
        [index] = index_bloat(conn, min_wasted_bytes=0)

    assert table.bloat_fraction > 0.7 and index.bloat_fraction > 0.7
    [table_finding] = table_bloat_findings([table])
    [index_finding] = index_bloat_findings([index])
    assert table_finding.fix == 'VACUUM (FULL, ANALYZE) "Sales"."Line Items";'
    assert index_finding.fix == 'REINDEX INDEX CONCURRENTLY "Sales"."Line Items_pkey";'
    run_autocommit(table_finding.fix)
    with pg_engine.connect() as conn:
        assert table_bloat(conn, min_wasted_bytes=0) == []
        assert index_bloat(conn, min_wasted_bytes=0) == []


def test_bloat_as_a_pg_monitor_role(run, pg_engine: Engine, pg_url: str, monitor_role: str) -> None:
    run(
        "CREATE TABLE emptied (id int, note text) WITH (autovacuum_enabled = false)",
        "INSERT INTO emptied SELECT g, md5(g::text) FROM generate_series(1, 20000) AS g",
        "DELETE FROM emptied WHERE id % 4 <> 0",
        "ANALYZE emptied",
    )
    role = monitor_role.strip('"')
    engine = sa.create_engine(
        sa.make_url(pg_url).set(drivername="postgresql+psycopg", username=role)
    )
    try:
        with engine.connect() as conn:
            thresholds = {"min_wasted_bytes": 0}
            hidden = unreadable_statistics(conn)
            estimated = {r.check: r for r in check_bloat(conn, **thresholds)}
            conn.rollback()
            try:
                run("CREATE EXTENSION pgstattuple")
            except sa.exc.DBAPIError as error:
                pytest.skip(f"pgstattuple is not available on this server: {error.orig}")
            measured = {r.check: r for r in check_bloat(conn, exact=True, **thresholds)}
    finally:
        engine.dispose()

    # pg_stats hides the statistics of a table the role may not read: it says so.
    assert hidden == ["public.emptied"]
    [info] = estimated["table_bloat"].findings
    assert info.severity == "info" and info.details == {"tables": ["public.emptied"]}
    assert info.fix == "CREATE EXTENSION pgstattuple;"
    assert [f.severity for f in estimated["index_bloat"].findings] == ["info"]
    # pgstattuple needs no access to the data: pg_monitor may measure every table.
    assert measured["table_bloat"].skipped is None
    [finding] = measured["table_bloat"].findings
    assert (finding.subject, finding.severity, finding.details["exact"]) == (
        "public.emptied",
        "warning",
        True,
    )


def test_exact_check_without_execute_on_pgstattuple_is_skipped(
    run, pg_engine: Engine, monitor_role: str, pgstattuple: None
) -> None:
    # Per database: the test database is dropped afterwards.
    run(
        "CREATE TABLE t (id int PRIMARY KEY)",
        "INSERT INTO t SELECT generate_series(1, 1000)",
        "REVOKE EXECUTE ON FUNCTION pgstattuple(regclass) FROM pg_stat_scan_tables",
    )
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {monitor_role}"))
        results = {r.check: r for r in check_bloat(conn, exact=True, min_wasted_bytes=0)}

    assert "permission denied for function pgstattuple" in str(results["table_bloat"].skipped)
    # pgstatindex is still granted: the index check ran, after the first one rolled back.
    assert results["index_bloat"].skipped is None and results["index_bloat"].findings == []


@pytest.mark.parametrize("schema", [":x", "a :b%s", "Mixed Case"])
def test_pgstattuple_in_a_schema_of_any_name(pg_engine: Engine, schema: str) -> None:
    quoted = '"' + schema + '"'
    with pg_engine.begin() as conn:
        for statement in [
            f"CREATE SCHEMA {quoted}",
            f"CREATE EXTENSION pgstattuple SCHEMA {quoted}",
            "CREATE TABLE t (id int PRIMARY KEY)",
            "INSERT INTO t SELECT generate_series(1, 1000)",
        ]:
            try:
                conn.exec_driver_sql(statement, execution_options={"no_parameters": True})
            except sa.exc.DBAPIError as error:
                pytest.skip(f"pgstattuple is not available on this server: {error.orig}")
    with pg_engine.connect() as conn:
        [table] = table_bloat(conn, exact=True, min_bloat_fraction=0, min_wasted_bytes=0)
        [index] = index_bloat(conn, exact=True, min_bloat_fraction=0, min_wasted_bytes=0)
    assert (table.table, table.exact, index.index) == ("t", True, "t_pkey")
