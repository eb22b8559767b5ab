"""Compare `pgwarden backup create` with plain `pg_dump -Fc`, and `pgwarden restore` with
plain `pg_restore`, on the same database of at least 1 GB, in one run.

Both sides use the same pg_dump and pg_restore, the custom format, one job and the same
compression: pgwarden's "auto" (zstd level 3 where pg_dump has it, else gzip 6). pgwarden's
backup adds what makes it a backup: row counts taken in the dump's own snapshot, a
sha256 of the stored bytes, the manifest, the storage lock; its restore adds the sha256
check of the stored file and the row-count check against the manifest afterwards. Both
write to, and read from, the same local disk. Rounds alternate between the two; the
figure is the median wall time of each, and the ratio pgwarden / plain.

    .venv/bin/python bench/backup_vs_pgdump.py [--size-gb 1.0] [--rounds 3] [--encrypt]

PGWARDEN_TEST_DSN runs it against another server instead of an embedded one.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from pgwarden.backup._dump import compress_arg, resolve_compression
from pgwarden.db.binaries import find_binary
from pgwarden.db.engines import create_engine
from pgwarden.testing.servers import TestServer, start_test_server
from pgwarden.urls import libpq_url

PGWARDEN = Path(sys.executable).with_name("pgwarden")


def fill(server: TestServer, database: str, size_gb: float) -> int:
    """Fill ``database`` with about ``size_gb`` GB of varied rows; return its size."""
    engine = create_engine(server.url(database), application_name="pgwarden-bench")
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL,"
                " kind text NOT NULL, payload jsonb, note text)"
            ))  # fmt: skip
            conn.execute(sa.text(
                "CREATE TABLE accounts (id int PRIMARY KEY, email text UNIQUE, tags text[],"
                " active daterange)"
            ))  # fmt: skip
            conn.execute(sa.text(
                "INSERT INTO accounts SELECT g, 'user' || g || '@example.com',"
                " ARRAY['a' || g % 7, 'b' || g % 11], daterange('2020-01-01', NULL)"
                " FROM generate_series(1, 100000) AS g"
            ))  # fmt: skip
        batch = 1_000_000
        start = 0
        size = 0
        while size < size_gb * 1024**3:
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO events SELECT g,"
                        " timestamptz '2026-01-01' + g * interval '1 second',"
                        " (ARRAY['view','click','buy','share'])[1 + g % 4],"
                        " jsonb_build_object('account', g % 100000, 'score', g % 997,"
                        "   'path', '/content/' || (g % 5000)),"
                        " md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text)"
                        " FROM generate_series(:start, :stop) AS g"
                    ),
                    {"start": start + 1, "stop": start + batch},
                )
                size = conn.execute(
                    sa.text("SELECT pg_database_size(current_database())")
                ).scalar_one()
            start += batch
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("CREATE INDEX events_at ON events (at)"))
            conn.execute(sa.text("VACUUM ANALYZE"))
            return int(
                conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
            )
    finally:
        engine.dispose()


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run ``command``; return its wall time and its standard output."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encrypt", action="store_true", help="encrypt pgwarden's backups too")
    args = parser.parse_args()

    dump_binary = find_binary("pg_dump")
    pg_dump, pg_restore = dump_binary.path, find_binary("pg_restore").path
    version = dump_binary.version
    chosen = resolve_compression(dump_binary, "auto", None)  # zstd if this pg_dump has it
    compression, level = chosen.method, chosen.level

    with start_test_server(os.environ.get("PGWARDEN_TEST_DSN")) as server:
        source = server.create_database()
        work = Path(tempfile.mkdtemp(prefix="pgwarden-bench-"))
        targets: list[str] = []
        try:
            started = time.perf_counter()
            size = fill(server, source, args.size_gb)
            built = time.perf_counter() - started
            print(f"database of {size / 1024**3:.2f} GB built in {built:.0f} s")
            url = server.url(source)
            env = {**os.environ, "PGWARDEN_LOG_LEVEL": "WARNING"}
            if args.encrypt:
                key = base64.b64encode(os.urandom(32)).decode()
                env["PGWARDEN_ENCRYPTION_KEYS"] = f"bench:{key}"
            storage = work / "storage"

            plain_dump: list[float] = []
            ours_dump: list[float] = []
            estimated_dump: list[float] = []
            plain_restore: list[float] = []
            ours_restore: list[float] = []
            backup_id = ""
            dump_file = work / "plain.dump"
            for _ in range(args.rounds):
                seconds, _ = timed(
                    [str(pg_dump), "-Fc", compress_arg(dump_binary, chosen), "-f",
                     str(dump_file), "--dbname", libpq_url(url)], env)  # fmt: skip
                plain_dump.append(seconds)
                seconds, out = timed(
                    [str(PGWARDEN), "--database-url", url, "--json", "backup", "create",
                     "--storage", str(storage), "--compression", compression,
                     "--compression-level", str(level),
                     "--encrypt" if args.encrypt else "--no-encrypt"], env)  # fmt: skip
                ours_dump.append(seconds)
                backup_id = json.loads(out)["manifest"]["id"]
                # Where the time goes: the same backup without the exact row counts.
                seconds, _ = timed(
                    [str(PGWARDEN), "--database-url", url, "--json", "backup", "create",
                     "--storage", str(work / "estimated"), "--compression", compression,
                     "--compression-level", str(level), "--row-counts", "estimate",
                     "--encrypt" if args.encrypt else "--no-encrypt"], env)  # fmt: skip
                estimated_dump.append(seconds)

                plain_target = server.create_database(template="template0")
                ours_target = server.create_database(template="template0")
                targets += [plain_target, ours_target]
                seconds, _ = timed(
                    [str(pg_restore), "--no-owner", "--dbname",
                     libpq_url(server.url(plain_target)), str(dump_file)], env)  # fmt: skip
                plain_restore.append(seconds)
                seconds, _ = timed(
                    [str(PGWARDEN), "--database-url", url, "restore", backup_id,
                     "--storage", str(storage), "--no-owner",
                     "--target-url", server.url(ours_target)], env)  # fmt: skip
                ours_restore.append(seconds)
                for target in (plain_target, ours_target):
                    server.drop_database(target)
                    targets.remove(target)

            shutil.rmtree(work / "estimated", ignore_errors=True)
            stored = sum(p.stat().st_size for p in storage.rglob("*") if p.is_file())
            print(
                f"pg_dump {version}, custom format, {compression} "
                f"level {level}, one job{', pgwarden encrypting' if args.encrypt else ''}"
            )
            print(
                f"plain dump file {dump_file.stat().st_size / 1024**2:.0f} MB; pgwarden "
                f"storage {stored / 1024**2 / args.rounds:.0f} MB per backup\n"
            )
            print(f"{'':24}{'plain':>10}{'pgwarden':>10}{'ratio':>8}")
            for name, plain, ours in (
                ("backup (pg_dump -Fc)", plain_dump, ours_dump),
                ("  counts estimated", plain_dump, estimated_dump),
                ("restore (pg_restore)", plain_restore, ours_restore),
            ):
                a, b = statistics.median(plain), statistics.median(ours)
                print(f"{name:<24}{a:>9.1f}s{b:>9.1f}s{b / a:>8.2f}")
        finally:
            for target in targets:
                server.drop_database(target)
            server.drop_database(source)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
