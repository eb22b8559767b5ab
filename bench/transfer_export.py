"""Time `pgwarden export` against a raw COPY of the same rows, with and without anonymizing.

A database of ``authors`` (--rows / 10: id, name) and ``posts`` (--rows: id, author_id,
title, a 100-byte body, a timestamp, a price, and the poster's own name and e-mail,
distinct on every row, so no cache helps the fakes). Every round runs each case once,
in turn, on the same database, so load from elsewhere falls on all of them alike; each
figure is the median of ``--rounds`` rounds:

- **raw COPY (psycopg)**: ``COPY authors TO STDOUT`` and ``COPY posts TO STDOUT``
  through psycopg into files: the same rows the export writes, as a Python program
  reads them; the ratios are to this;
- **raw COPY (psql)**: the same two statements run by ``psql`` into files: the server's
  floor, which a C client reaches (the export hands big tables to psql too);
- **export**: ``export_bundle`` of both tables whole (one snapshot, checksums, manifest);
- **export, anonymized**: the same with ``fake_email`` on posts.email, ``fake_name`` on
  posts.name and authors.name, and a keyed ``hash`` on posts.author_id (and so on
  authors.id, which it references);
- **export posts (+ authors closure)**, **filtered to half**, and **mask + hash** (a
  mask on posts.body, a hash on posts.author_id), for reference, as earlier versions of
  this script measured them: the authors the posts need are found by closure on the
  server, in temporary tables of row ids.

The last two columns divide each median by the raw COPYs'. On a two-CPU machine the
server, psql and pgwarden share the CPUs. The import half (``COPY FROM`` against
``pgwarden import``) is measured by its own script.

    .venv/bin/python bench/transfer_export.py [--rows 1000000] [--rounds 3]

PGWARDEN_TEST_DSN runs it against another server instead of an embedded one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from pgwarden.db.binaries import find_binary
from pgwarden.db.clients import client_args
from pgwarden.db.engines import create_engine
from pgwarden.testing.servers import start_test_server
from pgwarden.transfer import TransformSpec, export_bundle

ANONYMIZE = {
    "tables": {
        "public.posts": {"email": "fake_email", "name": "fake_name", "author_id": "hash"},
        "public.authors": {"name": "fake_name"},
    }
}
MASK_AND_HASH = {
    "tables": {"public.posts": {"body": {"kind": "mask", "keep": 4}, "author_id": "hash"}}
}


def build(engine: Engine, rows: int) -> None:
    authors = max(rows // 10, 1)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE authors (id bigint PRIMARY KEY, name text NOT NULL);"
            "CREATE TABLE posts (id bigint PRIMARY KEY, author_id bigint NOT NULL"
            " REFERENCES authors, title text NOT NULL, body text, created_at timestamptz"
            " NOT NULL, price numeric(10,2), name text NOT NULL, email text NOT NULL);"
        ))  # fmt: skip
        conn.execute(
            sa.text("INSERT INTO authors SELECT g, 'Author ' || g FROM generate_series(1, :n) g"),
            {"n": authors},
        )
        conn.execute(
            sa.text(
                "INSERT INTO posts SELECT g, 1 + g % :a, 'post ' || g,"
                " repeat(md5(g::text), 3), '2026-01-01'::timestamptz + g * interval '1 second',"
                " (g % 10000) / 100.0, 'Poster ' || g, 'poster' || g || '@mail.example'"
                " FROM generate_series(1, :n) g"
            ),
            {"n": rows, "a": authors},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))


def raw_copy(url: str) -> Callable[[Path], None]:
    def work(out: Path) -> None:
        out.mkdir()
        with psycopg.connect(url) as conn, conn.cursor() as cursor:
            for table in ("authors", "posts"):
                with (
                    (out / table).open("wb") as file,
                    cursor.copy(f"COPY {table} TO STDOUT") as copy,  # type: ignore[arg-type]
                ):
                    for data in copy:
                        file.write(data)

    return work


def psql_copy(url: str) -> Callable[[Path], None]:
    psql = str(find_binary("psql").path)
    client = client_args(url, application_name="bench")

    def work(out: Path) -> None:
        out.mkdir()
        for table in ("authors", "posts"):
            with (out / table).open("wb") as file:
                subprocess.run(
                    [psql, "-X", "-q", "-d", client.dbname, "-c", f"COPY {table} TO STDOUT"],
                    stdout=file, env=client.env, check=True,
                )  # fmt: skip

    return work


def export(engine: Engine, **options: object) -> Callable[[Path], None]:
    def work(out: Path) -> None:
        with engine.connect() as conn:
            export_bundle(conn, out, **options)  # type: ignore[arg-type]

    return work


def timed(work: Callable[[Path], None]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        work(Path(tmp) / "out")
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with start_test_server(os.environ.get("PGWARDEN_TEST_DSN")) as server:
        name = server.create_database()
        url = server.url(name)
        engine = create_engine(url, poolclass=NullPool)
        try:
            build(engine, args.rows)
            total = args.rows + max(args.rows // 10, 1)
            spec = TransformSpec.from_mapping(ANONYMIZE, salt=b"bench-salt")
            mask = TransformSpec.from_mapping(MASK_AND_HASH, salt=b"bench-salt")
            half = f"id <= {args.rows // 2}"
            cases = [
                ("raw COPY TO STDOUT, psycopg", total, raw_copy(url)),
                ("raw COPY TO STDOUT, psql", total, psql_copy(url)),
                ("export, both tables whole", total, export(engine)),
                ("export, anonymized", total, export(engine, transforms=spec)),
                ("export posts (+ authors closure)", total,
                 export(engine, tables=["public.posts"])),
                ("export posts, filtered to half", args.rows // 2,
                 export(engine, tables=["public.posts"], where=[half])),
                ("export posts, mask + hash", total,
                 export(engine, tables=["public.posts"], transforms=mask)),
            ]  # fmt: skip
            times: dict[str, list[float]] = {label: [] for label, _, _ in cases}
            for _ in range(args.rounds):
                for label, _, work in cases:
                    times[label].append(timed(work))
            base = statistics.median(times[cases[0][0]])
            floor = statistics.median(times[cases[1][0]])
            print(f"{args.rows:,} posts, {total - args.rows:,} authors; median of {args.rounds}")
            print(f"{'':36} {'time':>9}  {'rows/s':>12}  {'x psycopg':>9}  {'x psql':>6}")
            for label, rows, _ in cases:
                seconds = statistics.median(times[label])
                print(
                    f"{label:36} {seconds:7.2f} s  {rows / seconds:>12,.0f}"
                    f"  {seconds / base:9.2f}  {seconds / floor:6.2f}"
                )
        finally:
            engine.dispose()
            server.drop_database(name)


if __name__ == "__main__":
    main()
