"""Time `pgwarden import` against a raw `COPY ... FROM STDIN` of the same rows.

One table ``items`` of --rows rows (bigint key, text, timestamptz, jsonb, numeric) is
built in a source database and written once as a bundle (plain ``COPY ... TO STDOUT``,
see ``tests/transfer_import_support.py``). Each figure is the median of ``--rounds``
runs into the same empty table of a second database, truncated between runs:

- **raw COPY**: the bundle's data file through ``COPY items FROM STDIN``, the floor;
- **import**: ``import_bundle`` in insert mode, journaled (committed);
- **import, transformed**: the same with an anonymizing transform (``fake_name`` on the
  ``name`` column), rewritten a column at a time;
- **upsert, 10 % differ**: ``--mode upsert`` into the table holding every row
  already, a tenth of them with another ``name``, as a dry run and committed;
- **rollback**: rolling the journaled import back (1,000,000 rows deleted).

    .venv/bin/python bench/transfer_import.py [--rows 1000000] [--rounds 3]

PGWARDEN_TEST_DSN runs it against another server instead of an embedded one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from pgwarden.db.engines import create_engine
from pgwarden.testing.servers import start_test_server
from pgwarden.transfer import TransformSpec, import_bundle, rollback_run

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from transfer_import_support import write_bundle

SPEC = {"tables": {"public.items": {"name": "fake_name"}}}

TABLE = (
    "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz"
    " NOT NULL, doc jsonb, price numeric(12,2))"
)


def build(engine: Engine, rows: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(TABLE))
        conn.execute(
            sa.text(
                "INSERT INTO items SELECT g, 'name ' || md5(g::text),"
                " '2026-01-01'::timestamptz + g * interval '1 second',"
                " jsonb_build_object('n', g, 'tag', 't' || g % 100),"
                " (g % 100000) / 100.0 FROM generate_series(1, :n) g"
            ),
            {"n": rows},
        )


def median(rounds: int, work: Callable[[], None], reset: Callable[[], None]) -> float:
    times = []
    for _ in range(rounds):
        reset()
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with start_test_server(os.environ.get("PGWARDEN_TEST_DSN")) as server, \
            tempfile.TemporaryDirectory() as tmp:  # fmt: skip
        source_db, target_db = server.create_database(), server.create_database()
        source_url, url = server.url(source_db), server.url(target_db)
        source = create_engine(source_url, poolclass=NullPool)
        engine = create_engine(url, poolclass=NullPool)
        try:
            build(source, args.rows)
            bundle = write_bundle(source_url, Path(tmp) / "bundle", tables=["public.items"])
            data = next(bundle.glob("data/*")) if (bundle / "data").is_dir() else None
            data = data or next(p for p in bundle.iterdir() if p.name != "manifest.json")
            with engine.begin() as conn:
                conn.execute(sa.text(TABLE))
            spec = TransformSpec.from_mapping(SPEC, salt=b"bench")
            last_run: list[int] = []

            def reset() -> None:
                with engine.begin() as conn:
                    conn.execute(sa.text("TRUNCATE items"))
                    if conn.execute(sa.text("SELECT to_regclass('pgwarden.import_journal')")
                                    ).scalar() is not None:  # fmt: skip
                        conn.execute(sa.text("TRUNCATE pgwarden.import_journal"))
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(sa.text("VACUUM ANALYZE items"))
                    conn.execute(sa.text("CHECKPOINT"))

            def raw_copy() -> None:
                with (
                    psycopg.connect(url) as conn,
                    conn.cursor() as cursor,
                    cursor.copy("COPY items FROM STDIN") as copy,
                    data.open("rb") as file,
                ):
                    while chunk := file.read(1 << 20):
                        copy.write(chunk)

            def load(**options: object) -> Callable[[], None]:
                def work() -> None:
                    with engine.connect() as conn:
                        report = import_bundle(conn, bundle, **options)  # type: ignore[arg-type]
                        assert report.totals["inserted"] == args.rows, report.totals
                        if report.run_id is not None:
                            last_run.append(report.run_id)

                return work

            def loaded() -> None:
                reset()
                load()()

            def loaded_then_edited() -> None:
                reset()
                raw_copy()
                with engine.begin() as conn:
                    conn.execute(sa.text("UPDATE items SET name = 'edited' WHERE id % 10 = 0"))
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(sa.text("VACUUM ANALYZE items"))

            def upsert(dry_run: bool) -> Callable[[], None]:
                def work() -> None:
                    with engine.connect() as conn:
                        report = import_bundle(conn, bundle, mode="upsert", dry_run=dry_run)
                        assert report.totals["updated"] == args.rows // 10, report.totals

                return work

            def rollback() -> None:
                with engine.connect() as conn:
                    rollback_run(conn, last_run[-1])

            cases = [
                ("raw COPY FROM", raw_copy, reset),
                ("import (insert, journaled)", load(), reset),
                ("import --dry-run", load(dry_run=True), reset),
                ("import, anonymizing transform", load(transforms=spec), reset),
                ("upsert, 10 % differ (dry run)", upsert(True), loaded_then_edited),
                ("upsert, 10 % differ (committed)", upsert(False), loaded_then_edited),
                ("rollback of the insert", rollback, loaded),
            ]
            base = None
            print(f"{args.rows:,} rows, median of {args.rounds}")
            for label, work, before in cases:
                seconds = median(args.rounds, work, before)
                base = base or seconds
                print(
                    f"{label:32} {seconds:7.2f} s  {args.rows / seconds:>12,.0f} rows/s"
                    f"  x{seconds / base:5.2f} of raw COPY"
                )
        finally:
            source.dispose()
            engine.dispose()
            server.drop_database(source_db)
            server.drop_database(target_db)


if __name__ == "__main__":
    main()
