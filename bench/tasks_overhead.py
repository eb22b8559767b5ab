"""Jobs per minute one Celery worker sustains for snapshots and doctor runs over 50
databases, and what the broker and the catalogue cost per job, in one run.

Three ways to run the same jobs, one after the other on the same databases:

1. **plain loop**: the library functions in a loop (``insight.snapshot``,
   ``insight.doctor``), one pooled engine per database: the baseline;
2. **run_job loop**: :func:`pgwarden.tasks.jobs.run_job` in a loop: the same call plus
   the advisory lock and the two catalogue writes each job makes, no broker;
3. **Celery**: one worker process (``pgwarden worker --concurrency 1``), each job sent
   as a task and timed until the catalogue records all of them done.

Each path has a warm-up round first (the first snapshot of a database creates its
tables); then the paths take turns for ``--rounds`` rounds, so the load of a shared
machine weighs on each alike, and the median round counts. The figures are jobs per
minute; the ratios are each path's time per job over
the plain loop's, and the last line says whether one worker keeps 100 targets on a
1-minute snapshot schedule (100 snapshots a minute).

    .venv/bin/python bench/tasks_overhead.py [--databases 50] [--rounds 5] [--broker redis]

``--broker`` is ``postgresql`` (a database of the same server, no other service) or
``redis`` (redis://127.0.0.1:6379/0). PGWARDEN_TEST_DSN runs it against another server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from pgwarden.config import load_settings
from pgwarden.db.engines import create_engine
from pgwarden.insight.doctor import doctor
from pgwarden.insight.history import snapshot
from pgwarden.tasks import catalogue, parse_fleet
from pgwarden.tasks.app import create_app
from pgwarden.tasks.jobs import run_job
from pgwarden.testing.servers import TestServer, start_test_server

PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))
JOBS = {"snapshot": "insight.snapshot", "doctor": "doctor.run"}


def build(server: TestServer, count: int) -> dict[str, str]:
    """Create ``count`` databases with a few tables each; return target name -> URL."""
    urls = {}
    for index in range(count):
        url = server.url(server.create_database())
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE item (id bigint PRIMARY KEY, note text)"))
            conn.execute(sa.text("CREATE INDEX item_note ON item (note)"))
            conn.execute(
                sa.text("INSERT INTO item SELECT g, md5(g::text) FROM generate_series(1, 500) g")
            )
            conn.execute(sa.text("ANALYZE item"))
        engine.dispose()
        urls[f"db{index:03d}"] = url
    return urls


def plain_loop(engines: dict[str, Engine], job: str) -> None:
    for engine in engines.values():
        with engine.connect() as conn:
            if job == "snapshot":
                with conn.begin():
                    snapshot(conn, keep_days=90)
            else:
                doctor(conn)


def _seconds(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def config(urls: dict[str, str], broker: str, env: dict[str, str]) -> str:
    lines = ["[tasks]", broker, f'queue = "bench-{secrets.token_hex(4)}"']
    lines += ['catalogue_env = "BENCH_CATALOGUE"', "retries = 0", 'deadman = "off"']
    for name, url in urls.items():
        env[f"BENCH_{name.upper()}"] = url
        lines += [f"[targets.{name}]", f'url_env = "BENCH_{name.upper()}"']
    return "\n".join(lines) + "\n"


def done(catalogue_url: str, ids: set[str]) -> int:
    with catalogue.catalogue(catalogue_url) as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pgwarden.task_run "
                    "WHERE task_id = ANY(:ids) AND status IN ('ok', 'failed', 'skipped')"
                ),
                {"ids": list(ids)},
            ).scalar_one()
        )


def celery_round(app: object, catalogue_url: str, targets: list[str], job: str) -> float:
    """Send one task per target; return the seconds until the catalogue has them all."""
    started = time.perf_counter()
    ids = {app.send_task(JOBS[job], args=[t]).id for t in targets}  # type: ignore[attr-defined]
    while done(catalogue_url, ids) < len(ids):
        time.sleep(0.05)
    return time.perf_counter() - started


def main() -> None:
    # Stopped with SIGTERM, still stop the server and the worker (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--broker", choices=["postgresql", "redis"], default="postgresql")
    parser.add_argument(
        "--keep-connections",
        action="store_true",
        help="[tasks] keep_connections: pool the targets' connections, as the plain loop does",
    )
    args = parser.parse_args()
    n, rounds = args.databases, args.rounds
    with (
        contextlib.ExitStack() as stack,
        start_test_server(os.environ.get("PGWARDEN_TEST_DSN")) as server,
    ):
        print(f"building {n} databases ...", flush=True)
        urls = build(server, n)
        catalogue_url = server.url(server.create_database())
        env = {"BENCH_CATALOGUE": catalogue_url}
        if args.broker == "redis":
            broker = 'broker = "redis://127.0.0.1:6379/0"'
        else:
            env["BENCH_BROKER"] = server.url(server.create_database())
            broker = 'broker_env = "BENCH_BROKER"'
        if args.keep_connections:
            broker += "\nkeep_connections = true"
        text = config(urls, broker, env)
        fleet = parse_fleet(tomllib.loads(text), environ=env)
        settings = load_settings()
        engines = {
            name: create_engine(url, pool_size=1, max_overflow=1) for name, url in urls.items()
        }
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pgwarden-bench-")))
        (directory / "pgwarden.toml").write_text(text)
        os.environ.update(env)
        worker = subprocess.Popen(
            [PGWARDEN, "--config", str(directory / "pgwarden.toml"), "worker", "-c", "1",
             "--loglevel", "WARNING"],
            env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        app = create_app(directory / "pgwarden.toml")
        targets = list(urls)
        paths: dict[str, Callable[[str], float]] = {
            "plain": lambda job: _seconds(lambda: plain_loop(engines, job)),
            "run_job": lambda job: _seconds(
                lambda: [run_job(fleet, settings, name, job) for name in targets]
            ),
            "celery": lambda job: celery_round(app, catalogue_url, targets, job),
        }
        results: dict[str, dict[str, float]] = {}
        try:
            for job in JOBS:
                for path in paths.values():
                    path(job)  # warm-up: schemas made, engines and the worker ready
                # The paths take turns, round by round, so that the load of a shared
                # machine weighs on each alike; the median round counts.
                times: dict[str, list[float]] = {name: [] for name in paths}
                for _ in range(rounds):
                    for name, path in paths.items():
                        times[name].append(path(job))
                results[job] = {name: statistics.median(t) / n for name, t in times.items()}
        finally:
            worker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=60)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            for engine in engines.values():
                engine.dispose()
            catalogue.dispose_engines()

    kept = "pooled" if args.keep_connections else "a connection per job"
    print(f"\n{n} databases, broker {args.broker}, one worker process, targets: {kept}")
    print(f"{'job':10} {'path':14} {'ms/job':>8} {'jobs/min':>9} {'vs plain':>9}")
    for job, paths in results.items():
        for path, per_job in paths.items():
            ratio = per_job / paths["plain"]
            print(f"{job:10} {path:14} {per_job * 1000:8.1f} {60 / per_job:9.0f} {ratio:8.2f}x")
        extra = (paths["celery"] - paths["plain"]) * 1000
        broker_ms = (paths["celery"] - paths["run_job"]) * 1000
        catalogue_ms = (paths["run_job"] - paths["plain"]) * 1000
        print(
            f"{job:10} overhead per job: {extra:.1f} ms "
            f"(broker and worker {broker_ms:.1f} ms, lock and catalogue {catalogue_ms:.1f} ms)"
        )
    per_minute = 60 / results["snapshot"]["celery"]
    print(
        f"\none worker: {per_minute:.0f} snapshots/min; 100 targets every minute need 100: "
        f"{'keeps up' if per_minute >= 100 else 'falls behind'} ({per_minute / 100:.1f}x)"
    )


if __name__ == "__main__":
    main()
