"""The scratch copy: what it holds, and that it is always dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from advise_support import ORDERS, build_shop, scratch_databases
from credentials_support import Launches, SecretURL, launches, secret_url
from pgwarden.advise import advise_indexes
from pgwarden.advise.catalog import load_catalog
from pgwarden.advise.scratch import scratch_copy
from pgwarden.db.engines import create_engine

__all__ = ["launches", "secret_url"]  # fixtures

QUERY = "SELECT * FROM orders WHERE customer_id = $1 AND created_at > $2"


def test_the_scratch_database_exists_during_the_run_and_not_after(shop: Engine) -> None:
    seen: list[list[str]] = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "trying candidates":
            seen.append(scratch_databases(shop))

    with shop.connect() as conn:
        advice = advise_indexes(conn, queries=[QUERY], method="scratch", progress=progress)
    assert advice.method == "scratch copy" and advice.recommendations
    assert seen and all(len(names) == 1 for names in seen)
    assert scratch_databases(shop) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_the_scratch_database_is_dropped_when_the_run_fails(
    shop: Engine, error: type[BaseException]
) -> None:
    def progress(phase: str, done: int, total: int) -> None:
        if phase == "trying candidates" and done == 1:
            assert scratch_databases(shop)
            raise error("stop")

    with shop.connect() as conn, pytest.raises(error, match="stop"):
        advise_indexes(conn, queries=[QUERY], method="scratch", progress=progress)
    assert scratch_databases(shop) == []


def test_the_scratch_database_is_dropped_when_copying_fails(shop: Engine) -> None:
    def progress(phase: str, done: int, total: int) -> None:
        if phase == "copying tables":
            raise RuntimeError("copy interrupted")

    with shop.connect() as conn, pytest.raises(RuntimeError, match="copy interrupted"):
        advise_indexes(conn, queries=[QUERY], method="scratch", progress=progress)
    assert scratch_databases(shop) == []


def test_big_tables_are_sampled_and_planned_at_the_sample_size(shop: Engine) -> None:
    with shop.connect() as conn:
        advice = advise_indexes(
            conn, queries=[QUERY], method="scratch", sample_rows=3_000, write_heavy_factor=2
        )
    (orders,) = [t for t in advice.sampled_tables if t.table == "orders"]
    assert 0 < orders.rows_copied <= 3_000 and orders.rows_estimated == ORDERS
    # customers (3,000 rows) fits whole, so it is not listed
    assert [t.table for t in advice.sampled_tables] == ["orders"]
    (index,) = advice.recommendations
    assert index.columns[0] == "customer_id"  # about one order per customer in the sample
    # sized from the original's rows, not the sample's
    with shop.connect() as conn:
        pages = conn.execute(sa.text("SELECT relpages FROM pg_class WHERE relname = 'orders'"))
        assert index.size_bytes > pages.scalar_one() * 8192 // 10


def test_the_copy_has_the_rows_indexes_and_statistics_but_no_foreign_keys(shop: Engine) -> None:
    with shop.connect() as conn:
        catalog = load_catalog(conn, [(None, "orders"), (None, "customers")])
        tables = list(catalog.tables.values())
        with scratch_copy(conn, tables, sample_rows=1_000_000) as copy:
            rows = copy.conn.execute(
                "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM customers)"
            ).fetchone()
            indexes = copy.conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'customers' ORDER BY 1"
            ).fetchall()
            keys = copy.conn.execute("SELECT contype FROM pg_constraint WHERE contype = 'f'")
            planned = copy.plan_sql("SELECT * FROM orders")
            assert keys.fetchall() == []
    assert rows == (ORDERS, 3_000)
    assert [name for (name,) in indexes] == ["customers_email_key", "customers_pkey"]
    # COPY packs pages a little less tightly than the original INSERT did
    assert planned.rows == pytest.approx(ORDERS, rel=0.2)
    assert copy.tables and not any(t.sampled for t in copy.tables)


def test_the_scratch_copy_passes_no_secret_on_a_command_line(
    secret_url: SecretURL, launches: Launches
) -> None:
    engine = create_engine(secret_url.url, poolclass=NullPool)
    try:
        build_shop(engine)
        with engine.connect() as conn:
            advice = advise_indexes(conn, queries=[QUERY], method="scratch")
    finally:
        engine.dispose()
    assert advice.method == "scratch copy" and advice.recommendations
    for launch in launches.seen:
        secret_url.assert_absent(" ".join(launch.args), launch.cmdline, where="command line")
    connected = [launch for launch in launches.seen if "--dbname" in " ".join(launch.args)]
    assert {Path(launch.args[0]).name for launch in connected} == {"pg_dump", "pg_restore"}
    assert all(launch.env["PGPASSWORD"] == secret_url.password for launch in connected)
