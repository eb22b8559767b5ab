"""Index checks, each against a condition made for real in a fresh database."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pgwarden.insight import (
    check_indexes,
    duplicate_index_findings,
    duplicate_indexes,
    foreign_key_findings,
    foreign_keys_without_index,
    invalid_index_findings,
    invalid_indexes,
    unused_index_findings,
    unused_indexes,
)

ORDERS = (
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int, note text)",
    "INSERT INTO orders SELECT g, g % 100, md5(g::text) FROM generate_series(1, 2000) AS g",
    "ANALYZE orders",
)


def scans(conn: Connection, index: str) -> int:
    """Return the scans of ``index``, reading fresh statistics."""
    conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
    value = conn.execute(
        sa.text("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = :index"),
        {"index": index},
    ).scalar_one()
    conn.commit()
    return int(value)


def scan_index(engine: Engine, index: str, query: str) -> None:
    """Run ``query`` with sequential scans off and wait until ``index`` counts a scan."""
    with engine.connect() as conn:
        conn.execute(sa.text("SET enable_seqscan = off"))
        plan = "\n".join(conn.execute(sa.text(f"EXPLAIN {query}")).scalars())
        assert index in plan
        conn.execute(sa.text(query))
        if conn.dialect.server_version_info >= (15,):
            conn.execute(sa.text("SELECT pg_stat_force_next_flush()"))
        conn.commit()
        conn.execute(sa.text("RESET enable_seqscan"))
        conn.commit()
    # Statistics reach the shared view when the backend goes idle; poll, do not sleep.
    with engine.connect() as conn:
        deadline = time.monotonic() + 10
        while scans(conn, index) == 0:
            assert time.monotonic() < deadline, f"no scan of {index} ever counted"
            time.sleep(0.05)


def test_unused_index_is_reported_with_its_drop(run, pg_engine: Engine) -> None:
    run(*ORDERS, "CREATE INDEX ix_orders_note ON orders (note)")
    with pg_engine.connect() as conn:
        found = unused_indexes(conn, min_size_bytes=0)
        by_default = unused_indexes(conn)

    [index] = [i for i in found if i.index == "ix_orders_note"]
    assert (index.schema, index.table, index.scans) == ("public", "orders", 0)
    assert index.size_bytes > 8192
    # The primary key enforces something even unread; the 10 MB default skips a small one.
    assert "orders_pkey" not in {i.index for i in found}
    assert by_default == []
    [finding] = unused_index_findings([index])
    assert finding.severity == "warning"
    assert finding.fix == "DROP INDEX CONCURRENTLY public.ix_orders_note;"
    assert "ix_orders_note" in finding.what and "0 scans" in finding.what


def test_scanned_index_is_not_reported(run, pg_engine: Engine) -> None:
    run(*ORDERS, "CREATE INDEX ix_orders_customer ON orders (customer_id)")
    scan_index(pg_engine, "ix_orders_customer", "SELECT count(*) FROM orders WHERE customer_id = 5")
    with pg_engine.connect() as conn:
        unused = unused_indexes(conn, min_size_bytes=0)
        lenient = unused_indexes(conn, max_scans=1000, min_size_bytes=0)

    assert "ix_orders_customer" not in {i.index for i in unused}
    [index] = [i for i in lenient if i.index == "ix_orders_customer"]
    assert index.scans >= 1


def test_duplicate_and_prefix_indexes_name_the_covering_index(run, pg_engine: Engine) -> None:
    run(
        "CREATE TABLE t (id int PRIMARY KEY, a int, b int, c int)",
        "CREATE INDEX ix_ab ON t (a, b)",
        "CREATE INDEX ix_ab_copy ON t (a, b)",
        "CREATE INDEX ix_a ON t (a)",
        "CREATE INDEX ix_id ON t (id)",
        # Not redundant: a different predicate, a unique key the wider index does not
        # enforce, a different order of columns, a different access method.
        "CREATE INDEX ix_a_positive ON t (a) WHERE a > 0",
        "CREATE UNIQUE INDEX ux_c ON t (c)",
        "CREATE INDEX ix_c_a ON t (c, a)",
        "CREATE INDEX ix_b_a ON t (b, a)",
        "CREATE INDEX ix_c_hash ON t USING hash (c)",
    )
    with pg_engine.connect() as conn:
        found = {d.index: d for d in duplicate_indexes(conn)}

    assert set(found) == {"ix_ab_copy", "ix_a", "ix_id"}
    assert (found["ix_ab_copy"].covering_index, found["ix_ab_copy"].exact) == ("ix_ab", True)
    assert (found["ix_a"].covering_index, found["ix_a"].exact) == ("ix_ab", False)
    assert (found["ix_id"].covering_index, found["ix_id"].exact) == ("t_pkey", True)
    assert found["ix_a"].covering_definition.endswith("USING btree (a, b)")
    findings = {f.subject: f for f in duplicate_index_findings(found.values())}
    assert findings["public.ix_a"].fix == "DROP INDEX CONCURRENTLY public.ix_a;"
    assert findings["public.ix_a"].details["covering_index"] == "public.ix_ab"
    assert "covered by ix_ab" in findings["public.ix_a"].what
    assert "duplicate of ix_ab" in findings["public.ix_ab_copy"].what


def test_unique_index_is_redundant_only_to_a_unique_one(run, pg_engine: Engine) -> None:
    run(
        "CREATE TABLE u (a int, b int)",
        "CREATE INDEX ix_u_a ON u (a)",
        "CREATE UNIQUE INDEX ux_u_a ON u (a)",
        "CREATE UNIQUE INDEX ux_u_b ON u (b)",
        "CREATE UNIQUE INDEX ux_u_b_copy ON u (b)",
    )
    with pg_engine.connect() as conn:
        found = {d.index: d.covering_index for d in duplicate_indexes(conn)}

    # The plain index goes, never the unique one; of two unique twins, one.
    assert found == {"ix_u_a": "ux_u_a", "ux_u_b_copy": "ux_u_b"}


def test_failed_concurrent_build_leaves_an_invalid_index(
    run, run_autocommit, pg_engine: Engine
) -> None:
    run("CREATE TABLE dup (v int)", "INSERT INTO dup VALUES (1), (1), (2)")
    with pytest.raises(sa.exc.IntegrityError):
        run_autocommit("CREATE UNIQUE INDEX CONCURRENTLY ux_dup_v ON dup (v)")
    with pg_engine.connect() as conn:
        found = invalid_indexes(conn)
        unused = unused_indexes(conn, min_size_bytes=0)
        duplicates = duplicate_indexes(conn)

    [index] = found
    assert (index.schema, index.table, index.index) == ("public", "dup", "ux_dup_v")
    assert "UNIQUE INDEX ux_dup_v" in index.definition
    assert unused == [] and duplicates == []  # reported once, as invalid
    [finding] = invalid_index_findings(found)
    assert finding.fix == "DROP INDEX CONCURRENTLY public.ux_dup_v;"
    run_autocommit(finding.fix)
    with pg_engine.connect() as conn:
        assert invalid_indexes(conn) == []


def test_foreign_keys_without_a_leading_index(run, pg_engine: Engine) -> None:
    run(
        "CREATE TABLE parent (id int PRIMARY KEY)",
        "CREATE TABLE pair (a int, b int, PRIMARY KEY (a, b))",
        "CREATE TABLE child_bare (id int, parent_id int REFERENCES parent)",
        "CREATE TABLE child_indexed (id int, parent_id int REFERENCES parent)",
        "CREATE INDEX ON child_indexed (parent_id)",
        "CREATE TABLE child_partial (id int, parent_id int REFERENCES parent)",
        "CREATE INDEX ON child_partial (parent_id) WHERE parent_id > 0",
        "CREATE TABLE pair_half (a int, b int, FOREIGN KEY (a, b) REFERENCES pair)",
        "CREATE INDEX ON pair_half (a)",
        "CREATE TABLE pair_swapped (a int, b int, c int, FOREIGN KEY (a, b) REFERENCES pair)",
        "CREATE INDEX ON pair_swapped (b, a, c)",
        "CREATE TABLE pair_trailing (a int, b int, FOREIGN KEY (a, b) REFERENCES pair)",
        "CREATE INDEX ON pair_trailing (b) INCLUDE (a)",
    )
    with pg_engine.connect() as conn:
        found = {k.table: k for k in foreign_keys_without_index(conn)}

    assert set(found) == {"child_bare", "child_partial", "pair_half", "pair_trailing"}
    assert found["pair_half"].columns == ["a", "b"]
    assert found["pair_half"].referenced_table == "pair"
    fixes = {f.subject: f.fix for f in foreign_key_findings(found.values())}
    assert (
        fixes["public.child_bare"] == "CREATE INDEX CONCURRENTLY ON public.child_bare (parent_id);"
    )
    assert fixes["public.pair_half"] == "CREATE INDEX CONCURRENTLY ON public.pair_half (a, b);"


def test_fix_sql_quotes_names_and_runs(run, run_autocommit, pg_engine: Engine) -> None:
    run(
        'CREATE SCHEMA "Sales"',
        'CREATE TABLE "Sales"."Customer" (id int PRIMARY KEY)',
        'CREATE TABLE "Sales"."Order Items" '
        '(id int, "Customer Id" int REFERENCES "Sales"."Customer")',
        'CREATE INDEX "Ix Items" ON "Sales"."Order Items" (id)',
    )
    with pg_engine.connect() as conn:
        [key] = foreign_keys_without_index(conn)
        [index] = [i for i in unused_indexes(conn, min_size_bytes=0) if i.index == "Ix Items"]

    [create] = foreign_key_findings([key])
    [drop] = unused_index_findings([index])
    assert create.fix == 'CREATE INDEX CONCURRENTLY ON "Sales"."Order Items" ("Customer Id");'
    assert drop.fix == 'DROP INDEX CONCURRENTLY "Sales"."Ix Items";'
    assert create.fix and drop.fix
    run_autocommit(create.fix, drop.fix)
    with pg_engine.connect() as conn:
        assert foreign_keys_without_index(conn) == []
        assert "Ix Items" not in {i.index for i in unused_indexes(conn, min_size_bytes=0)}


def test_check_indexes_reports_every_check(run, pg_engine: Engine) -> None:
    run(
        "CREATE TABLE parent (id int PRIMARY KEY)",
        "CREATE TABLE child (id int, parent_id int REFERENCES parent)",
    )
    with pg_engine.connect() as conn:
        results = check_indexes(conn, min_size_bytes=0)

    assert [r.check for r in results] == [
        "unused_indexes",
        "duplicate_indexes",
        "invalid_indexes",
        "foreign_keys_without_index",
    ]
    assert all(r.skipped is None for r in results)
    by_check = {r.check: r.findings for r in results}
    assert by_check["unused_indexes"] == by_check["duplicate_indexes"] == []
    [finding] = by_check["foreign_keys_without_index"]
    assert finding.subject == "public.child" and finding.details["columns"] == ["parent_id"]


def test_every_index_check_runs_as_a_pg_monitor_role(
    run, run_autocommit, pg_engine: Engine, monitor_role: str
) -> None:
    run(
        *ORDERS,
        "CREATE INDEX ix_orders_note ON orders (note)",
        "CREATE INDEX ix_orders_note_copy ON orders (note)",
        "CREATE TABLE line (id int, order_id bigint REFERENCES orders)",
        "CREATE TABLE dup (v int)",
        "INSERT INTO dup VALUES (1), (1)",
    )
    with pytest.raises(sa.exc.IntegrityError):
        run_autocommit("CREATE UNIQUE INDEX CONCURRENTLY ux_dup_v ON dup (v)")
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {monitor_role}"))
        unused = {i.index for i in unused_indexes(conn, min_size_bytes=0)}
        duplicates = {d.index for d in duplicate_indexes(conn)}
        invalid = {i.index for i in invalid_indexes(conn)}
        keys = {k.constraint for k in foreign_keys_without_index(conn)}
        results = check_indexes(conn, min_size_bytes=0)
        is_super = conn.execute(
            sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        ).scalar_one()

    assert is_super is False
    assert {"ix_orders_note", "ix_orders_note_copy"} <= unused
    assert duplicates == {"ix_orders_note_copy"}
    assert invalid == {"ux_dup_v"}
    assert keys == {"line_order_id_fkey"}
    assert all(r.skipped is None and r.findings for r in results)


def test_check_without_a_privilege_is_skipped_not_failed(
    run, pg_engine: Engine, monitor_role: str
) -> None:
    # Per database: the test database is dropped afterwards.
    run(
        "CREATE TABLE parent (id int PRIMARY KEY)",
        "CREATE TABLE child (id int, parent_id int REFERENCES parent)",
        "REVOKE EXECUTE ON FUNCTION pg_relation_size(regclass) FROM PUBLIC",
        "REVOKE EXECUTE ON FUNCTION pg_relation_size(regclass, text) FROM PUBLIC",
    )
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {monitor_role}"))
        results = {r.check: r for r in check_indexes(conn, min_size_bytes=0)}

    for check in ("unused_indexes", "duplicate_indexes", "invalid_indexes"):
        assert results[check].findings == []
        assert "permission denied for function pg_relation_size" in str(results[check].skipped)
    # Each failed check's savepoint rolled back; the transaction went on to the next one.
    assert results["foreign_keys_without_index"].skipped is None
    assert [f.subject for f in results["foreign_keys_without_index"].findings] == ["public.child"]
