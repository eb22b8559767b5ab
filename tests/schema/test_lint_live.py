"""With a database, the verdict follows the live table: its rows, its writes, its locks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.schema.lint import LintConfig, LintFinding, lint_sql

# Without sampling, writes are averaged since the statistics began, which a test's own
# inserts can make look busy: these tests weigh rows and locks, not writes.
QUIET = LintConfig(squawk=False, sample_seconds=0, busy_writes_per_second=1e12)


@pytest.fixture
def orders(pg_engine: Engine) -> Engine:
    with pg_engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint, note varchar(10))"
        ))  # fmt: skip
    return pg_engine


def fill(engine: Engine, rows: int, table: str = "orders") -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO {table} (id, customer_id, note) "
                    "SELECT i, i % 97, 'n' FROM generate_series(1, :n) AS i"),
            {"n": rows},
        )  # fmt: skip
        conn.execute(sa.text(f"ANALYZE {table}"))


def lint(engine: Engine, sql: str, config: LintConfig = QUIET) -> list[LintFinding]:
    with engine.connect() as conn:
        return lint_sql(sql, conn=conn, config=config)


def only(findings: list[LintFinding], rule: str) -> LintFinding:
    (found,) = [f for f in findings if f.rule == rule]
    return found


INDEX = "SET lock_timeout = '2s';\nCREATE INDEX ix_orders_customer ON orders (customer_id);"


def test_an_index_on_an_empty_table_is_low(orders: Engine) -> None:
    finding = only(lint(orders, INDEX), "require-concurrent-index-creation")
    assert finding.severity == "low"
    assert finding.table is not None and finding.table.rows == 0
    assert any("empty" in note and "downgraded" in note for note in finding.notes)


def test_an_index_on_a_large_table_is_high_with_its_figures(orders: Engine) -> None:
    fill(orders, 5000)
    finding = only(lint(orders, INDEX, replace(QUIET, large_rows=1000)),
                   "require-concurrent-index-creation")  # fmt: skip
    assert finding.severity == "high"
    assert finding.table is not None and finding.table.table == "public.orders"
    assert finding.table.rows == 5000 and finding.table.size_bytes > 0
    assert any("5,000 rows" in note for note in finding.notes)
    # Under the default threshold the same table keeps the rule's own severity.
    assert only(lint(orders, INDEX), "require-concurrent-index-creation").severity == "medium"


@pytest.fixture
def busy(orders: Engine) -> Iterator[None]:
    """Insert into orders from another session, one row a transaction, until the test ends."""
    stop = threading.Event()

    def write() -> None:
        with orders.connect() as conn:
            n = 1_000_000
            while not stop.is_set():
                n += 1
                conn.execute(sa.text("INSERT INTO orders (id) VALUES (:n)"), {"n": n})
                conn.commit()
                time.sleep(0.002)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(1.5)  # writes reach the statistics at most once a second
    try:
        yield
    finally:
        stop.set()
        writer.join(timeout=10)


def test_an_index_on_a_busy_table_is_high_with_its_writes(orders: Engine, busy: None) -> None:
    config = LintConfig(squawk=False, sample_seconds=2.0, busy_writes_per_second=5)
    finding = only(lint(orders, INDEX, config), "require-concurrent-index-creation")
    assert finding.table is not None and finding.table.writes_per_second >= 5
    assert finding.severity == "high"
    assert any("writes per second" in note for note in finding.notes)


@pytest.fixture
def holder(orders: Engine) -> Iterator[int]:
    """Hold ACCESS SHARE on orders in an open transaction, as a long report would."""
    with orders.connect() as conn:
        conn.execute(sa.text("SET application_name = 'nightly-report'"))
        conn.execute(sa.text("SELECT count(*) FROM orders"))
        yield int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        conn.rollback()


def test_a_held_lock_names_the_session_it_would_wait_behind(orders: Engine, holder: int) -> None:
    findings = lint(orders, "ALTER TABLE orders ADD COLUMN archived boolean;")
    finding = only(findings, "require-lock-timeout")
    assert finding.severity == "high"
    assert finding.table is not None
    (blocker,) = finding.table.blockers
    assert (blocker.pid, blocker.mode, blocker.granted) == (holder, "AccessShareLock", True)
    assert blocker.application_name == "nightly-report"
    assert any(f"pid {holder}" in note and "nightly-report" in note for note in finding.notes)


def test_a_lock_that_does_not_conflict_names_nobody(orders: Engine, holder: int) -> None:
    # CREATE INDEX takes SHARE, which waits for writers, not for a reader.
    finding = only(lint(orders, INDEX), "require-concurrent-index-creation")
    assert finding.table is not None and finding.table.blockers == ()


def test_the_column_type_in_the_database_decides_a_rewrite(orders: Engine) -> None:
    fill(orders, 10)
    grow = lint(
        orders,
        "SET lock_timeout = '1s';\nALTER TABLE orders ALTER COLUMN note TYPE varchar(20);",
        replace(QUIET, squawk=True),
    )
    finding = only(grow, "changing-column-type")
    assert finding.severity == "info" and "only raises the limit" in finding.message
    assert "changing-column-type" in finding.squawk_rules  # squawk's doubt, answered
    widen = lint(
        orders, "SET lock_timeout = '1s';\nALTER TABLE orders ALTER COLUMN customer_id TYPE int;"
    )
    assert only(widen, "changing-column-type").severity == "high"


def test_a_check_validated_by_an_earlier_migration_makes_set_not_null_safe(orders: Engine) -> None:
    fill(orders, 10)
    sql = "SET lock_timeout = '1s';\nALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;"
    assert only(lint(orders, sql), "adding-not-nullable-field").severity == "medium"
    with orders.begin() as conn:
        conn.execute(
            sa.text("ALTER TABLE orders ADD CONSTRAINT c_nn CHECK (customer_id IS NOT NULL)")
        )
    finding = only(lint(orders, sql), "adding-not-nullable-field")
    assert finding.severity == "info" and "already has a validated CHECK" in finding.message


def test_a_function_default_is_judged_by_its_volatility(orders: Engine) -> None:
    with orders.begin() as conn:
        conn.execute(
            sa.text("CREATE FUNCTION pick() RETURNS int VOLATILE LANGUAGE sql AS 'SELECT 1'")
        )
        conn.execute(
            sa.text("CREATE FUNCTION fixed() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 1'")
        )
    fill(orders, 10)
    volatile = "SET lock_timeout = '1s';\nALTER TABLE orders ADD COLUMN a int DEFAULT pick();"
    stable = "SET lock_timeout = '1s';\nALTER TABLE orders ADD COLUMN a int DEFAULT fixed();"
    assert only(lint(orders, volatile), "adding-field-with-default").severity == "high"
    assert only(lint(orders, stable), "adding-field-with-default").severity == "info"
    # Without the database nothing says pick() is volatile.
    assert only(lint_sql(volatile, config=QUIET), "adding-field-with-default").severity == "info"


def test_a_required_column_fails_on_rows_and_not_on_an_empty_table(orders: Engine) -> None:
    sql = "SET lock_timeout = '1s';\nALTER TABLE orders ADD COLUMN region text NOT NULL;"
    assert only(lint(orders, sql), "adding-required-field").severity == "low"
    fill(orders, 3)
    finding = only(lint(orders, sql), "adding-required-field")
    assert finding.severity == "high" and any("fails" in note for note in finding.notes)


def test_a_table_created_in_the_migration_is_not_weighed(orders: Engine) -> None:
    sql = "CREATE TABLE invoices (id bigint);\nCREATE INDEX ix ON invoices (id);"
    (finding,) = lint(orders, sql)
    assert finding.severity == "info" and finding.table is None
    assert "created earlier in this migration" in finding.message


def test_hostile_names_are_weighed_too(pg_engine: Engine) -> None:
    with pg_engine.begin() as conn:
        conn.execute(sa.text('CREATE SCHEMA "select"'))
        conn.execute(
            sa.text('CREATE TABLE "select".U&"Mixed ""Case"" \\0025(x)s" (U&"\\003Ax" int)')
        )
        conn.execute(
            sa.text(
                'INSERT INTO "select".U&"Mixed ""Case"" \\0025(x)s" SELECT generate_series(1, 20)'
            )
        )
        conn.execute(sa.text('ANALYZE "select".U&"Mixed ""Case"" \\0025(x)s"'))
    sql = (
        "SET lock_timeout = '1s';\n"
        'CREATE INDEX "ix %s" ON "select"."Mixed ""Case"" %(x)s" (":x");'
    )
    finding = only(lint(pg_engine, sql), "require-concurrent-index-creation")
    assert finding.table is not None and finding.table.rows == 20
    assert finding.subject == '"select"."Mixed ""Case"" %(x)s"'


def test_a_blocker_query_holding_a_password_is_shown_without_it(orders: Engine) -> None:
    with orders.connect() as conn:
        conn.execute(sa.text("SELECT count(*) FROM orders WHERE note <> $$PASSWORD 'hunter2'$$"))
        sql = "ALTER TABLE orders ADD COLUMN x text;"
        finding = only(lint(orders, sql), "require-lock-timeout")
        conn.rollback()
    assert finding.table is not None and finding.table.blockers
    assert "hunter2" not in repr(finding)


def test_a_whole_table_backfill_is_weighed_by_its_rows(orders: Engine) -> None:
    sql = "UPDATE orders SET note = 'n';"
    config = replace(QUIET, large_rows=1000)
    assert only(lint(orders, sql, config), "unbatched-backfill").severity == "low"
    fill(orders, 5000)
    assert only(lint(orders, sql, config), "unbatched-backfill").severity == "high"


def test_linting_leaves_no_lock_behind(orders: Engine) -> None:
    fill(orders, 10)
    with orders.connect() as conn:
        lint_sql(INDEX, conn=conn, config=QUIET)
        assert not conn.in_transaction()
        with orders.connect() as other:
            held = other.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks "
                    "WHERE relation = 'orders'::regclass AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        assert held == 0
