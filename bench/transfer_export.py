"""Time `pgwarden export` against a raw COPY of the same rows, and two ways of transforming.

A database of ``authors`` (--rows / 10) and ``posts`` (--rows, each with an author, a
title, a 100-byte body, a timestamp and a price). Each figure is the median of
``--rounds`` runs, in rows per second:

- **raw COPY**: ``COPY posts TO STDOUT`` through psycopg into a file, the floor;
- **export**: ``export_bundle`` of both tables whole (one snapshot, manifest, hashes);
- **export, filtered**: half the posts by ``--where``, their authors by closure (the
  temporary tables of row ids at work);
- **transform, COPY parse**: posts with a mask on the body and a hash on author_id
  (which follows to authors.id), the way pgwarden does it: COPY text parsed in Python;
- **transform, server cursor**: the alternative, rows fetched through a server-side
  cursor as text, transformed and written as COPY text.

    .venv/bin/python bench/transfer_export.py [--rows 1000000] [--rounds 3]

PGWARDEN_TEST_DSN runs it against another server instead of an embedded one.
"""

from __future__ import annotations

import argparse
import os
import statistics
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
from pgwarden.transfer.catalog import load_catalog
from pgwarden.transfer.copytext import format_copy_row
from pgwarden.transfer.export import export_bundle
from pgwarden.transfer.transforms import TransformSpec, compile_transforms

SPEC = {"tables": {"public.posts": {"body": {"kind": "mask", "keep": 4}, "author_id": "hash"}}}


def build(engine: Engine, rows: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE authors (id bigint PRIMARY KEY, name text NOT NULL);"
            "CREATE TABLE posts (id bigint PRIMARY KEY, author_id bigint NOT NULL"
            " REFERENCES authors, title text NOT NULL, body text, created_at timestamptz"
            " NOT NULL, price numeric(10,2));"
        ))  # fmt: skip
        conn.execute(
            sa.text("INSERT INTO authors SELECT g, 'author ' || g FROM generate_series(1, :n) g"),
            {"n": max(rows // 10, 1)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO posts SELECT g, 1 + g % :a, 'post ' || g,"
                " repeat(md5(g::text), 3), '2026-01-01'::timestamptz + g * interval '1 second',"
                " (g % 10000) / 100.0 FROM generate_series(1, :n) g"
            ),
            {"n": rows, "a": max(rows // 10, 1)},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))


def median(rounds: int, work: Callable[[Path], None]) -> float:
    times = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            began = time.perf_counter()
            work(Path(tmp) / "out")
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def raw_copy(url: str) -> Callable[[Path], None]:
    def work(out: Path) -> None:
        with (
            psycopg.connect(url) as conn,
            conn.cursor() as cursor,
            out.open("wb") as file,
            cursor.copy("COPY posts TO STDOUT") as copy,
        ):
            for data in copy:
                file.write(data)

    return work


def export(engine: Engine, **options: object) -> Callable[[Path], None]:
    def work(out: Path) -> None:
        with engine.connect() as conn:
            export_bundle(conn, out, **options)  # type: ignore[arg-type]

    return work


def server_cursor(engine: Engine, url: str) -> Callable[[Path], None]:
    """Transform rows fetched as text through a server-side cursor, written as COPY text."""
    with engine.connect() as conn:
        catalog = load_catalog(conn)
    spec = TransformSpec.from_mapping(SPEC, salt=b"bench").propagate(catalog.tables.values())
    posts = catalog.tables["public.posts"]
    transform = compile_transforms(spec, posts)
    names = posts.column_names
    select = ", ".join(f"{name}::text" for name in names)

    def work(out: Path) -> None:
        with (
            psycopg.connect(url) as conn,
            out.open("wb") as file,
            conn.cursor(name="bench") as cursor,
        ):
            cursor.itersize = 10_000
            cursor.execute(f"SELECT {select} FROM posts")  # type: ignore[arg-type]
            buffer = bytearray()
            for record in cursor:
                row = transform(dict(zip(names, record, strict=True)))
                buffer += format_copy_row([row[n] for n in transform.columns])
                if len(buffer) > 1 << 20:
                    file.write(buffer)
                    buffer.clear()
            file.write(buffer)

    return work


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
            spec = TransformSpec.from_mapping(SPEC, salt=b"bench")
            half = f"id <= {args.rows // 2}"
            cases = [
                ("raw COPY (posts)", args.rows, raw_copy(url)),
                ("export posts (+ authors closure)", args.rows,
                 export(engine, tables=["public.posts"])),
                ("export posts, filtered to half", args.rows // 2,
                 export(engine, tables=["public.posts"], where=[half])),
                ("transform, COPY parse (pgwarden)", args.rows,
                 export(engine, tables=["public.posts"], transforms=spec)),
                ("transform, server cursor", args.rows, server_cursor(engine, url)),
            ]  # fmt: skip
            base = None
            for label, rows, work in cases:
                seconds = median(args.rounds, work)
                base = base or seconds
                print(
                    f"{label:36} {seconds:7.2f} s  {rows / seconds:>12,.0f} rows/s"
                    f"  x{seconds / base:5.2f} of raw COPY"
                )
        finally:
            engine.dispose()
            server.drop_database(name)


if __name__ == "__main__":
    main()
