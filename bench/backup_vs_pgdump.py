"""Compare `pgwarden backup create` with plain pg_dump, and `pgwarden restore` with plain
pg_restore, on the same database of at least 1 GB, in one run.

Backups: plain `pg_dump -Fc` at its default compression (gzip), plain `pg_dump -Fd -j N`
(N = the CPUs), and pgwarden's default (`backup create` with no option: for a database
this large, the directory format with one job per CPU, pg_dump writing uncompressed and
pgwarden compressing with zstd). pgwarden's backup adds what makes it a backup: row
counts taken in the dump's own snapshot, the SHA-256 of the plaintext and of the stored
bytes, the manifest, the storage lock. Restores: plain `pg_restore` of the -Fc archive in
one job and with `-j N`, and pgwarden's default `restore` of its backup (one job per
CPU for a backup this large), which proves every stored file before it touches the
target and checks every table's rows against the manifest after. Every restore goes
into a new database made from template0, without owners.

Everything reads and writes the same local disk. Rounds alternate between the sides;
each figure is the median wall time, and the ratio is pgwarden / plain.

    .venv/bin/python bench/backup_vs_pgdump.py [--size-gb 1.0] [--rounds 2] [--encrypt]

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

from pgwarden.backup._dump import threads
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


def size_of(path: Path) -> int:
    """Return the bytes of a file, or of every file under a directory."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def load() -> str:
    """Return the load averages, to tell whether something else was running."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--encrypt", action="store_true", help="encrypt pgwarden's backups too")
    args = parser.parse_args()

    dump_binary = find_binary("pg_dump")
    pg_dump, pg_restore = dump_binary.path, find_binary("pg_restore").path
    jobs = threads()

    with start_test_server(os.environ.get("PGWARDEN_TEST_DSN")) as server:
        source = server.create_database()
        work = Path(tempfile.mkdtemp(prefix="pgwarden-bench-"))
        targets: list[str] = []
        try:
            started = time.perf_counter()
            size = fill(server, source, args.size_gb)
            built = time.perf_counter() - started
            print(f"database of {size / 1024**3:.2f} GB built in {built:.0f} s; {load()}")
            url = server.url(source)
            env = {**os.environ, "PGWARDEN_LOG_LEVEL": "WARNING"}
            if args.encrypt:
                key = base64.b64encode(os.urandom(32)).decode()
                env["PGWARDEN_ENCRYPTION_KEYS"] = f"bench:{key}"
            crypt = "--encrypt" if args.encrypt else "--no-encrypt"
            storage = work / "storage"
            dump_file, dump_dir = work / "plain.dump", work / "plain.dir"
            times: dict[str, list[float]] = {}
            sizes: dict[str, int] = {}
            mode = ""

            def restore_into(command: list[str], name: str) -> None:
                target = server.create_database(template="template0")
                targets.append(target)
                seconds, _ = timed([*command, server.url(target)], env)
                times.setdefault(name, []).append(seconds)
                server.drop_database(target)
                targets.remove(target)

            for _ in range(args.rounds):
                shutil.rmtree(dump_dir, ignore_errors=True)
                shutil.rmtree(storage, ignore_errors=True)
                seconds, _ = timed(
                    [str(pg_dump), "-Fc", "-f", str(dump_file), "--dbname", libpq_url(url)], env
                )
                times.setdefault("pg_dump -Fc", []).append(seconds)
                seconds, _ = timed(
                    [str(pg_dump), "-Fd", f"-j{jobs}", "-f", str(dump_dir),
                     "--dbname", libpq_url(url)], env)  # fmt: skip
                times.setdefault(f"pg_dump -Fd -j{jobs}", []).append(seconds)
                seconds, out = timed(
                    [str(PGWARDEN), "--database-url", url, "--json", "backup", "create",
                     "--storage", str(storage), crypt], env)  # fmt: skip
                times.setdefault("pgwarden backup", []).append(seconds)
                manifest = json.loads(out)["manifest"]
                backup_id = manifest["id"]
                compression = manifest["compression"]
                mode = (
                    f"{manifest['dump_format']} format, {manifest['options']['jobs']} job(s), "
                    f"{compression['method']} {compression['level']} by "
                    f"{compression.get('applied_by', 'pg_dump')}"
                )
                sizes = {
                    "pg_dump -Fc": size_of(dump_file),
                    f"pg_dump -Fd -j{jobs}": size_of(dump_dir),
                    "pgwarden backup": int(manifest["size"]),
                }

                restore_into(
                    [str(pg_restore), "--no-owner", str(dump_file), "--dbname"], "pg_restore"
                )
                restore_into(
                    [str(pg_restore), "--no-owner", f"-j{jobs}", str(dump_file), "--dbname"],
                    f"pg_restore -j{jobs}",
                )
                restore_into(
                    [str(PGWARDEN), "--database-url", url, "restore", backup_id, "--storage",
                     str(storage), "--no-owner", "--target-url"], "pgwarden restore")  # fmt: skip

            median = {name: statistics.median(values) for name, values in times.items()}
            print(f"pg_dump {dump_binary.version}, {jobs} CPUs, {args.rounds} round(s); {load()}")
            print(f"pgwarden's backup: {mode}{', encrypted' if args.encrypt else ''}\n")
            print(f"{'':22}{'median':>9}{'runs':>22}{'stored':>10}")
            for name, values in times.items():
                runs = " ".join(f"{v:.1f}" for v in values)
                stored = f"{sizes[name] / 1024**2:.0f} MB" if name in sizes else ""
                print(f"{name:<22}{median[name]:>8.1f}s{runs:>22}{stored:>10}")
            print()
            ours_dump, ours_restore = median["pgwarden backup"], median["pgwarden restore"]
            for name in ("pg_dump -Fc", f"pg_dump -Fd -j{jobs}"):
                print(f"backup  pgwarden / {name:<18}{ours_dump / median[name]:>6.2f}x time, "
                      f"{sizes['pgwarden backup'] / sizes[name]:.2f}x size")  # fmt: skip
            for name in ("pg_restore", f"pg_restore -j{jobs}"):
                print(f"restore pgwarden / {name:<18}{ours_restore / median[name]:>6.2f}x time")
        finally:
            for target in targets:
                server.drop_database(target)
            server.drop_database(source)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
