"""Helpers of the index advisor's tests: a shop schema with data, learnhub grown and
driven, and what the server has (hypopg, scratch databases left behind)."""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from pgwarden.advise.scratch import SCRATCH_PREFIX
from pgwarden.db.engines import create_engine
from pgwarden.observe.fingerprints import normalize

ORDERS = 30_000
CUSTOMERS = 3_000

SHOP_SCHEMA = [
    "CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL UNIQUE,"
    " region text NOT NULL)",
    "CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " customer_id bigint NOT NULL REFERENCES customers, status text NOT NULL,"
    " created_at timestamptz NOT NULL, total numeric NOT NULL)",
    f"INSERT INTO customers SELECT g, 'c' || g || '@example.org',"
    f" (ARRAY['eu', 'us', 'apac'])[1 + g % 3] FROM generate_series(1, {CUSTOMERS}) AS g",
    # one order in 50 is pending; customers' orders are spread over the table
    f"INSERT INTO orders (customer_id, status, created_at, total)"
    f" SELECT 1 + (g * 7919) % {CUSTOMERS},"
    f" CASE WHEN g % 50 = 0 THEN 'pending' ELSE 'done' END,"
    f" timestamptz '2026-01-01' + g * interval '5 minutes', g % 1000"
    f" FROM generate_series(1, {ORDERS}) AS g",
    "ANALYZE customers, orders",
]


def build_shop(engine: Engine) -> None:
    """Create and fill the shop tables: customers, and orders without secondary indexes."""
    with engine.begin() as conn:
        for statement in SHOP_SCHEMA:
            conn.execute(sa.text(statement))


def hypopg_available(engine: Engine) -> bool:
    """Return whether the server has the hypopg extension to install."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'")
        ).first()
    return found is not None


def scratch_databases(engine: Engine) -> list[str]:
    """Return the advisor's scratch databases that exist on the server."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT datname FROM pg_database WHERE starts_with(datname, :prefix)"),
            {"prefix": SCRATCH_PREFIX},
        )
        return sorted(row.datname for row in rows)


def wait_for_writes(engine: Engine, table: str, rows: int, *, attempts: int = 200) -> None:
    """Wait until the server's statistics count ``rows`` inserted into ``table``.

    A session reports its counts when it ends or goes idle, a little later.
    """
    for _ in range(attempts):
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
            seen = conn.execute(
                sa.text("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = :table"),
                {"table": table},
            ).scalar()
        if seen is not None and seen >= rows:
            return
        time.sleep(0.1)
    raise AssertionError(f"the server never counted {rows} rows written to {table}")


def extension_installed(engine: Engine, name: str) -> bool:
    """Return whether ``name`` is installed in the engine's database."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT 1 FROM pg_extension WHERE extname = :name"), {"name": name}
        ).first()
    return found is not None


# learnhub's seed at test scale has 150 pieces of content: too few for any index to
# beat a scan of one or two pages. These rows make the table big enough to matter.
EXTRA_CONTENT = 20_000


def grow_learnhub_content(url: str) -> None:
    """Add EXTRA_CONTENT rows to learnhub's content (triggers off), then ANALYZE it."""
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))  # no audit rows
        conn.execute(
            sa.text(
                "INSERT INTO content (org_id, author_id, title, slug, state, published_at)"
                " SELECT 1 + g % 5, (SELECT min(id) FROM users), 'Extra ' || g,"
                " 'extra-' || g, (enum_range(NULL::workflow_state))[1 + g % 4],"
                " now() - g * interval '1 minute'"
                " FROM generate_series(1, :rows) AS g"
            ),
            {"rows": EXTRA_CONTENT},
        )
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE content"))
    engine.dispose()


def run_learnhub_workload(url: str, *, requests: int = 100) -> list[str]:
    """Run learnhub's workload on ``url``; return its statements as pg_stat_statements
    would show them (parameters as $1, $2), each once."""
    from learnhub.db import make_engine
    from learnhub.workload import run_workload

    seen: dict[str, None] = {}

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.setdefault(normalize(statement))

    async def main() -> None:
        engine = make_engine(url)
        event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            report = await run_workload(engine, requests=requests, seed=3)
            assert not report.errors, report.errors
        finally:
            await engine.dispose()

    asyncio.run(main())
    return list(seen)
