"""Compare pgwarden's index advisor with postgres-mcp's database tuning advisor, in one run.

Both advise on the same generated workload: 24 query shapes, each with its number of
calls, over 13 tables (one range-partitioned), on a PostgreSQL with HypoPG (both use
it: pgwarden's ``method="hypopg"``, postgres-mcp's ``DatabaseTuningAdvisor``). Then each
tool's indexes are measured the same way: built for real, the tables analysed, every
query explained, and cost x calls summed; the indexes' size is what the server reports;
then they are dropped again. The baseline is the workload with no new index.
pgwarden's scratch-copy method runs too, as a third row.

postgres-mcp (PyPI) needs Python 3.12 and pins versions this project does not use, so
it runs in a throwaway virtual environment (``--pgmcp-venv``, made on first use with
uv) through a small driver script; the connection URL reaches it in its environment.
On a Python older than 3.12 the package is installed without its interpreter check and
given ``typing.override`` from typing_extensions, the one newer name it imports.

    PGWARDEN_TEST_DSN=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/advisor_vs_postgres_mcp.py

Target: a workload cost lower than or equal to postgres-mcp's at no more index size,
with every query shape served or skipped with a reason.
"""

# ruff: noqa: E501 - the schema and the workload read best one statement a line

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from pgwarden.advise import Query, advise_indexes
from pgwarden.advise.evaluate import explain
from pgwarden.db.engines import create_engine

DATABASE = "pgwarden_bench_advisor"
BUDGETED = "pgwarden (hypopg, <= mcp size)"
UV = Path(__file__).resolve().parents[1] / ".tools" / "bin" / "uv"

SCHEMA = [
    "CREATE EXTENSION IF NOT EXISTS hypopg",
    "CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL, region text NOT NULL,"
    " signup timestamp NOT NULL)",
    "INSERT INTO customers SELECT g, 'C' || g || '@Example.org', (ARRAY['eu','us','apac'])[1 + g % 3],"
    " timestamp '2025-01-01' + g * interval '10 minutes' FROM generate_series(1, 50000) g",
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, status text NOT NULL,"
    " created_at timestamp NOT NULL, total numeric NOT NULL)",
    "INSERT INTO orders SELECT g, 1 + (g * 7919) % 50000,"
    " CASE WHEN g % 50 = 0 THEN 'pending' ELSE 'done' END,"
    " timestamp '2026-01-01' + g * interval '2 minutes', g % 1000 FROM generate_series(1, 150000) g",
    "CREATE TABLE products (id bigint PRIMARY KEY, sku text NOT NULL, category text NOT NULL,"
    " price numeric NOT NULL)",
    "INSERT INTO products SELECT g, 'SKU-' || g, 'c' || g % 200, g % 997 FROM generate_series(1, 40000) g",
    "CREATE TABLE inventory (product_id bigint NOT NULL, warehouse_id int NOT NULL,"
    " quantity int NOT NULL, updated_at timestamp NOT NULL)",
    "INSERT INTO inventory SELECT 1 + g % 40000, g % 20, (g * 31) % 500,"
    " timestamp '2026-01-01' + (g * 7) % 100000 * interval '1 minute' FROM generate_series(1, 120000) g",
    "CREATE TABLE shipments (id bigint PRIMARY KEY, order_id bigint NOT NULL, dest text NOT NULL,"
    " weight int NOT NULL)",
    "INSERT INTO shipments SELECT g, 1 + (g * 13) % 150000, 'D' || lpad((g % 40)::text, 3, '0'),"
    " (g * 7919) % 5000 FROM generate_series(1, 100000) g",
    "CREATE TABLE invoices (id bigint PRIMARY KEY, customer_id bigint NOT NULL, paid boolean NOT NULL,"
    " amount numeric NOT NULL)",
    "INSERT INTO invoices SELECT g, 1 + (g * 17) % 50000, g % 10 <> 0, g % 500"
    " FROM generate_series(1, 100000) g",
    "CREATE TABLE payments (id bigint PRIMARY KEY, invoice_id bigint NOT NULL,"
    " paid_at timestamp NOT NULL, amount numeric NOT NULL)",
    "INSERT INTO payments SELECT g, 1 + (g * 29) % 100000,"
    " timestamp '2026-01-01' + (g * 37) % 200000 * interval '1 minute', g % 500"
    " FROM generate_series(1, 100000) g",
    "CREATE TABLE sessions (id bigint PRIMARY KEY, data jsonb NOT NULL)",
    "INSERT INTO sessions SELECT g, jsonb_build_object('device', 'd' || g % 5000, 'plan', 'p' || g % 300)"
    " FROM generate_series(1, 60000) g",
    "CREATE TABLE articles (id bigint PRIMARY KEY, tags text[] NOT NULL, title text NOT NULL)",
    "INSERT INTO articles SELECT g, ARRAY['t' || g % 900, 'u' || g % 31], 'title ' || g"
    " FROM generate_series(1, 50000) g",
    "CREATE TABLE tickets (id bigint PRIMARY KEY, assignee int NOT NULL, state text NOT NULL,"
    " opened timestamp NOT NULL)",
    "INSERT INTO tickets SELECT g, g % 300, CASE WHEN g % 100 = 0 THEN 'lost' WHEN g % 3 = 0"
    " THEN 'open' ELSE 'closed' END, timestamp '2026-01-01' + g * interval '3 minutes'"
    " FROM generate_series(1, 80000) g",
    "CREATE TABLE events (device_id int NOT NULL, at timestamp NOT NULL, kind text NOT NULL)"
    " PARTITION BY RANGE (at)",
    *[
        f"CREATE TABLE events_2026_0{m} PARTITION OF events"
        f" FOR VALUES FROM ('2026-0{m}-01') TO ('2026-0{m + 1}-01')"
        for m in (1, 2, 3, 4)
    ],
    "INSERT INTO events SELECT g % 5000, timestamp '2026-01-01' + (g % 118) * interval '1 day'"
    " + g * interval '1 second', 'k' || g % 7 FROM generate_series(1, 200000) g",
    "CREATE TABLE audit_log (id bigint PRIMARY KEY, at timestamp NOT NULL, actor int NOT NULL,"
    " detail text NOT NULL)",
    "INSERT INTO audit_log SELECT g, timestamp '2026-01-01' + g * interval '20 seconds', g % 400,"
    " repeat('x', 40) FROM generate_series(1, 200000) g",
    "CREATE TABLE bookings (id bigint PRIMARY KEY, room_id int NOT NULL, slot tsrange NOT NULL)",
    "INSERT INTO bookings SELECT g, g % 500, tsrange(timestamp '2026-01-01' + g * interval '5 minutes',"
    " timestamp '2026-01-01' + g * interval '5 minutes' + interval '1 hour')"
    " FROM generate_series(1, 60000) g",
    "ANALYZE",
]

# (query, calls): literals as an application sends them, a few parameters as
# pg_stat_statements shows them.
WORKLOAD: list[tuple[str, int]] = [
    ("SELECT * FROM customers WHERE lower(email) = 'c77@example.org'", 500),
    ("SELECT * FROM customers WHERE region = 'eu' AND signup > '2025-12-20'", 40),
    ("SELECT * FROM orders WHERE customer_id = 123 ORDER BY created_at DESC LIMIT 10", 800),
    ("SELECT count(*) FROM orders WHERE status = 'pending' AND created_at > '2026-05-01'", 60),
    ("SELECT sum(total) FROM orders WHERE created_at >= '2026-02-01' AND created_at < '2026-02-02'", 90),
    ("SELECT * FROM products WHERE sku = 'SKU-777'", 700),
    ("SELECT * FROM products WHERE category = 'c7' ORDER BY price LIMIT 20", 300),
    ("SELECT * FROM inventory WHERE product_id = 55 AND warehouse_id = 15", 400),
    ("SELECT * FROM shipments WHERE dest = 'D007' AND weight > 4990 ORDER BY weight DESC LIMIT 5", 120),
    ("SELECT * FROM shipments WHERE order_id = 999", 600),
    ("SELECT * FROM invoices WHERE customer_id = 42 AND paid = false", 250),
    ("SELECT * FROM payments WHERE invoice_id = 1234", 450),
    ("SELECT count(*) FROM payments WHERE date_trunc('day', paid_at) = '2026-03-03'", 30),
    ("SELECT * FROM sessions WHERE (data ->> 'device') = 'd42'", 350),
    ("SELECT id FROM sessions WHERE data @> '{\"plan\": \"p7\"}'", 50),
    ("SELECT id FROM articles WHERE tags && ARRAY['t42']", 80),
    ("SELECT * FROM tickets WHERE state = 'lost' ORDER BY opened DESC LIMIT 20", 150),
    ("SELECT * FROM tickets WHERE assignee = 17 AND state = 'open'", 200),
    ("SELECT count(*) FROM events WHERE device_id = 77", 300),
    ("SELECT * FROM events WHERE device_id = 5 AND at >= '2026-03-01' AND at < '2026-03-05'", 200),
    ("SELECT count(*) FROM audit_log WHERE at >= '2026-01-10' AND at < '2026-01-10 02:00'", 40),
    ("SELECT * FROM bookings WHERE room_id = 7 AND slot && tsrange('2026-02-01', '2026-02-02')", 100),
    ("SELECT * FROM inventory WHERE quantity < 2 ORDER BY updated_at LIMIT 50", 60),
    ("SELECT o.* FROM orders AS o JOIN shipments AS s ON s.order_id = o.id WHERE s.dest = 'D001'"
     " AND s.weight > 4995", 70),
]  # fmt: skip

DRIVER = r"""
import asyncio, json, os, sys, time
from postgres_mcp.index.dta_calc import DatabaseTuningAdvisor
from postgres_mcp.sql import SqlDriver

async def main():
    workload = json.load(sys.stdin)
    driver = SqlDriver(engine_url=os.environ["PGMCP_DSN"])
    driver.connect()
    started = time.perf_counter()
    result = await DatabaseTuningAdvisor(driver).analyze_workload(workload=workload)
    took = time.perf_counter() - started
    print(json.dumps({
        "seconds": took,
        "error": result.error,
        "indexes": [r.index_recommendation.definition for r in result.recommendations],
    }))

asyncio.run(main())
"""


def prepare_postgres_mcp(venv: Path) -> tuple[Path, dict[str, str]]:
    """Make (once) a virtual environment with postgres-mcp; return its python and env."""
    python = venv / "bin" / "python"
    packages = venv / "pgmcp"
    shim = venv / "shim"
    if not (packages / "postgres_mcp").exists():
        subprocess.run([UV, "venv", "-q", str(venv)], check=True)
        subprocess.run(
            [UV, "pip", "install", "-q", "--python-version", "3.12", "--no-deps",
             "--target", str(packages), "postgres-mcp==0.3.0"],
            check=True,
        )  # fmt: skip
        # its dependencies, at versions that still run its code (mcp 1.x, pglast 7)
        subprocess.run(
            [UV, "pip", "install", "-q", "--python", str(python), "attrs>=25.3", "humanize",
             "instructor>=1.7.9", "mcp[cli]>=1.5,<2", "pglast>=7,<8", "psycopg-pool>=3.2.6",
             "psycopg[binary]>=3.2.6", "typing_extensions"],
            check=True,
        )  # fmt: skip
        shim.mkdir(exist_ok=True)
        (shim / "sitecustomize.py").write_text(
            "import typing\nimport typing_extensions\n"
            "if not hasattr(typing, 'override'):\n"
            "    typing.override = typing_extensions.override\n"
        )
    env = {**os.environ, "PYTHONPATH": f"{shim}{os.pathsep}{packages}"}
    return python, env


def run_postgres_mcp(python: Path, env: dict[str, str], dsn: str) -> dict[str, Any]:
    workload = [
        {"query": sql, "queryid": str(i), "calls": calls, "avg_exec_time": 1.0}
        for i, (sql, calls) in enumerate(WORKLOAD)
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(DRIVER)
    started = time.perf_counter()
    done = subprocess.run(
        [str(python), script.name],
        input=json.dumps(workload),
        capture_output=True,
        text=True,
        env={**env, "PGMCP_DSN": dsn},
        check=False,
    )
    wall = time.perf_counter() - started
    Path(script.name).unlink()
    if done.returncode != 0:
        sys.exit(f"postgres-mcp failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def run_pgwarden(url: str, method: str, max_size_bytes: int | None = None) -> dict[str, Any]:
    engine = create_engine(url)
    started = time.perf_counter()
    with engine.connect() as conn:
        advice = advise_indexes(
            conn,
            queries=[Query(sql, calls=calls) for sql, calls in WORKLOAD],
            method=method,  # type: ignore[arg-type]
            max_size_bytes=max_size_bytes,
        )
    took = time.perf_counter() - started
    engine.dispose()
    statements = [s for r in advice.recommendations for s in r.statements]
    return {
        "seconds": took,
        "wall": took,
        "indexes": statements,
        "advice": advice,
        "count": len(advice.recommendations),
    }


def measure(conn: psycopg.Connection[Any], statements: list[str]) -> tuple[float, int, list[float]]:
    """Build ``statements``' indexes, then return the workload's cost x calls and their size."""
    before = _index_oids(conn)
    for statement in statements:
        conn.execute(statement)
    conn.execute("ANALYZE")
    made = _index_oids(conn) - before
    costs = [explain(conn, sql, params=sql.count("$")).cost for sql, _ in WORKLOAD]
    size = conn.execute(
        "SELECT coalesce(sum(pg_relation_size(oid)), 0)::bigint FROM pg_class WHERE oid = ANY(%s)",
        [list(made)],
    ).fetchone()
    # a partitioned index drops its partitions' with it: drop only the top ones
    tops = conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class AS c WHERE c.oid = ANY(%s)"
        " AND NOT EXISTS (SELECT 1 FROM pg_inherits AS i WHERE i.inhrelid = c.oid)",
        [list(made)],
    ).fetchall()
    for (name,) in tops:
        conn.execute(f"DROP INDEX {name}")
    total = sum(cost * calls for cost, (_, calls) in zip(costs, WORKLOAD, strict=True))
    return total, int(size[0]) if size else 0, costs


def _index_oids(conn: psycopg.Connection[Any]) -> set[int]:
    rows = conn.execute(
        "SELECT c.oid FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('i', 'I') AND n.nspname = 'public'"
    ).fetchall()
    return {int(row[0]) for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pgmcp-venv", type=Path, default=Path(tempfile.gettempdir()) / "pgwarden-bench-pgmcp"
    )
    args = parser.parse_args()
    base = os.environ.get("PGWARDEN_TEST_DSN")
    if not base:
        sys.exit("set PGWARDEN_TEST_DSN to a PostgreSQL with HypoPG available")
    python, env = prepare_postgres_mcp(args.pgmcp_venv)
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    url = psycopg.conninfo.make_conninfo(base, dbname=DATABASE)
    sa_url = "postgresql://" + base.split("://", 1)[1].rsplit("/", 1)[0] + f"/{DATABASE}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in SCHEMA:
                conn.execute(statement)
        print(f"{len(WORKLOAD)} query shapes over 13 tables, {sum(c for _, c in WORKLOAD):,} calls")
        runs = {
            "pgwarden (hypopg)": run_pgwarden(sa_url, "hypopg"),
            "pgwarden (scratch copy)": run_pgwarden(sa_url, "scratch"),
            "postgres-mcp DTA": run_postgres_mcp(python, env, sa_url),
        }
        with psycopg.connect(url, autocommit=True) as conn:
            baseline, _, base_costs = measure(conn, [])
            figures = {name: measure(conn, run["indexes"]) for name, run in runs.items()}
            # pgwarden again, held to the size of postgres-mcp's indexes as built: its
            # budget counts hypopg's size estimates, so it is raised by how far the
            # built size falls short, while the built indexes still fit
            limit = figures["postgres-mcp DTA"][1]
            budget = limit
            for _ in range(4):
                run = run_pgwarden(sa_url, "hypopg", max_size_bytes=budget)
                built = measure(conn, run["indexes"])
                run["budget"] = budget
                if built[1] > limit and BUDGETED in runs:
                    break  # the previous, smaller budget fits: keep it
                runs[BUDGETED], figures[BUDGETED] = run, built
                if built[1] == 0 or built[1] > 0.95 * limit:  # full (or over: said below)
                    break
                budget = int(budget * limit / built[1])
        report(baseline, base_costs, runs, figures)
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def report(
    baseline: float,
    base_costs: list[float],
    runs: dict[str, dict[str, Any]],
    figures: dict[str, tuple[float, int, list[float]]],
) -> None:
    print(f"\nbaseline (no new index): workload cost {baseline:,.0f}\n")
    print(f"{'tool':<26}{'indexes':>8}{'cost x calls':>16}{'vs base':>9}{'size':>12}{'seconds':>9}")
    for name, run in runs.items():
        cost, size, _ = figures[name]
        count = run.get("count", len(run["indexes"]))
        print(
            f"{name:<26}{count:>8}{cost:>16,.0f}{cost / baseline:>9.3f}"
            f"{size / 1024:>10,.0f}kB{run['seconds']:>9.1f}"
        )
    theirs = figures["postgres-mcp DTA"]
    print(f"\n{BUDGETED}: max_size_bytes={runs[BUDGETED]['budget']:,} (of estimated sizes)")
    for name in ("pgwarden (hypopg)", BUDGETED):
        ours = figures[name]
        print(
            f"\n{name} / postgres-mcp: workload cost {ours[0] / theirs[0]:.3f}, "
            f"index size {ours[1] / max(theirs[1], 1):.3f}, time "
            f"{runs[name]['seconds'] / runs['postgres-mcp DTA']['seconds']:.3f}"
        )
    if runs["postgres-mcp DTA"].get("error"):
        print("postgres-mcp said:", runs["postgres-mcp DTA"]["error"])
    for name in ("pgwarden (hypopg)", BUDGETED, "postgres-mcp DTA"):
        print(f"\n{name} indexes:")
        for statement in runs[name]["indexes"]:
            print("  ", statement)
    print("\nper query (cost before -> pgwarden hypopg / scratch / postgres-mcp):")
    columns = [
        figures[n][2] for n in ("pgwarden (hypopg)", "pgwarden (scratch copy)", "postgres-mcp DTA")
    ]
    for i, (sql, calls) in enumerate(WORKLOAD):
        after = " / ".join(f"{c[i]:,.1f}" for c in columns)
        print(f"  {base_costs[i]:>9,.1f} -> {after}  x{calls}  {sql[:70]}")
    advice = runs["pgwarden (hypopg)"]["advice"]
    served = {q.sql for r in advice.recommendations for q in r.queries}
    print(f"\npgwarden (hypopg): {len(served)} shapes served; the others, with the reason:")
    for skipped in [*advice.skipped, *advice.unserved]:
        print(f"  {skipped.sql[:60]}: {skipped.reason}")
    for note in advice.notes:
        print("  note:", note)


if __name__ == "__main__":
    main()
