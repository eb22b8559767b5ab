"""Time `pgwarden doctor` on a database of 1,000 tables and 3,000 indexes, and count
the statements it sends.

Each table has a primary key, two secondary indexes (one of them a duplicate of the
other on every tenth table, to give the checks something to find), a foreign key to the
previous table on every fifth, and a few hundred rows, analyzed. The doctor runs every
check ``--rounds`` times; the figures are the median wall time, the statements per run
(counted at the driver), and the time of each check on its own.

The baseline is one pass of the same size over the catalog: every index with its size
(`pg_relation_size`), the least any index check can do. The ratio says how much more
than that floor the whole doctor costs.

    .venv/bin/python bench/doctor_scale.py [--tables 1000] [--rounds 5]

PGWARDEN_TEST_DSN runs it against another server instead of an embedded one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from pgwarden.db.engines import create_engine
from pgwarden.insight.doctor import CHECKS, doctor
from pgwarden.testing.servers import start_test_server

BASELINE = sa.text(
    """
SELECT c.relname, pg_relation_size(c.oid)
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'public'
"""
)


def build(engine: Engine, tables: int) -> int:
    """Create the tables in batches (one lock per relation); return the index count."""
    batch = 50
    for start in range(0, tables, batch):
        with engine.begin() as conn:
            for n in range(start, min(start + batch, tables)):
                parent = f", parent_id bigint REFERENCES t{n - 1}" if n % 5 == 0 and n else ""
                conn.execute(sa.text(
                    f"CREATE TABLE t{n} (id bigint PRIMARY KEY, k int, v text,"
                    f" created timestamptz DEFAULT now(){parent})"
                ))  # fmt: skip
                conn.execute(sa.text(f"CREATE INDEX t{n}_k ON t{n} (k)"))
                second = f"t{n} (k)" if n % 10 == 0 else f"t{n} (created)"
                conn.execute(sa.text(f"CREATE INDEX t{n}_second ON {second}"))
                conn.execute(sa.text(
                    f"INSERT INTO t{n} (id, k, v) SELECT g, g % 17, md5(g::text)"
                    " FROM generate_series(1, 200) AS g"
                ))  # fmt: skip
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ANALYZE"))
        count: int = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid"
                " JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
            )
        ).scalar_one()
    return count


def timed(engine: Engine, rounds: int, work: Any) -> tuple[float, int]:
    """Return the median seconds of ``work(conn)`` and the statements one call sends."""
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    times = []
    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.connect() as conn:
            for _ in range(rounds):
                started = time.perf_counter()
                work(conn)
                times.append(time.perf_counter() - started)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return statistics.median(times), statements // rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with start_test_server(os.environ.get("PGWARDEN_TEST_DSN")) as server:
        database = server.create_database()
        engine = create_engine(server.url(database), application_name="pgwarden-bench")
        try:
            started = time.perf_counter()
            indexes = build(engine, args.tables)
            print(f"built {args.tables} tables and {indexes} indexes "
                  f"in {time.perf_counter() - started:.1f} s")  # fmt: skip

            floor, _ = timed(engine, args.rounds, lambda c: c.execute(BASELINE).fetchall())
            whole, statements = timed(engine, args.rounds, lambda c: doctor(c))
            with engine.connect() as conn:
                report = doctor(conn)
            print(f"\ndoctor: {whole * 1000:.0f} ms, {statements} statements, "
                  f"{len(report.results)} checks, {len(report.findings)} findings, "
                  f"{len(report.skipped)} skipped, {len(report.failed)} failed")  # fmt: skip
            print(f"baseline (every index with its size): {floor * 1000:.1f} ms")
            print(f"ratio doctor / baseline: {whole / floor:.1f}")

            print("\nper check (median of rounds):")
            for check in CHECKS:
                seconds, sent = timed(
                    engine, args.rounds, lambda c, name=check.name: doctor(c, checks=[name])
                )
                print(f"  {check.name:<32} {seconds * 1000:8.1f} ms  {sent:3d} statements")
        finally:
            engine.dispose()
            server.drop_database(database)


if __name__ == "__main__":
    main()
