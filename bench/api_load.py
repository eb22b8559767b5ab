"""Load the admin API's health and summary routes on loopback, against a bare FastAPI app
answering the same JSON, and count the statements the API sends to the database.

For each route and each server: the most requests per second 16 concurrent clients get
in ``--seconds`` (with p50 and p99 latency), then a steady 200 requests per second for
``--seconds`` (p50, p99, and the statements per second the database received, read from
``pg_stat_statements`` and ``pg_stat_database``). Both servers run ``uvicorn`` with one
worker in a process of their own; the load comes from this process (httpx, asyncio).
The baseline is the bare app; the ratios say what pgwarden's routes cost on top of it.

    .venv/bin/python bench/api_load.py [--seconds 5] [--rate 200]

PGWARDEN_TEST_DSN runs it against another server instead of an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from pgwarden.api import create_token
from pgwarden.db.engines import create_engine
from pgwarden.testing.servers import free_port, start_test_server

BARE = """
import json, sys
from fastapi import FastAPI
summary = json.load(open(sys.argv[2]))
app = FastAPI()

@app.get("/v1/database/health")
async def health():
    return {"status": "ok"}

@app.get("/v1/database/summary")
async def summary():
    return summary

import uvicorn
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""

_TIMEOUT = httpx.Timeout(30, pool=None)  # an overloaded machine queues, it does not fail

COUNTS = sa.text(
    """
SELECT (SELECT CAST(COALESCE(sum(calls), 0) AS bigint) FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()))
         AS statements,
       (SELECT xact_commit + xact_rollback FROM pg_stat_database
        WHERE datname = current_database()) AS transactions
"""
)


def _wait(url: str) -> None:
    for _ in range(400):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"no server answered at {url}")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def _get(client: httpx.AsyncClient, url: str) -> bool:
    """Return whether a GET of ``url`` was answered 200; a timeout counts as an error."""
    try:
        return (await client.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


def _figures(latencies: list[float], errors: int, spent: float) -> dict[str, float]:
    return {
        "rps": len(latencies) / spent,
        "p50": statistics.median(latencies),
        "p99": _percentile(latencies, 0.99),
        "errors": errors,
    }


async def _closed(url: str, headers: dict[str, str], seconds: float) -> dict[str, float]:
    """Keep 16 requests in flight for ``seconds``; return req/s and latencies (ms)."""
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds
    async with httpx.AsyncClient(headers=headers, timeout=_TIMEOUT) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                started = time.perf_counter()
                ok = await _get(client, url)
                latencies.append((time.perf_counter() - started) * 1000)
                errors += not ok

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(16)))
        spent = time.perf_counter() - began
    return _figures(latencies, errors, spent)


async def _steady(
    url: str, headers: dict[str, str], seconds: float, rate: float
) -> dict[str, float]:
    """Send ``rate`` requests per second for ``seconds``, each on its schedule."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(headers=headers, timeout=_TIMEOUT, limits=limits) as client:

        async def one(at: float) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            ok = await _get(client, url)
            latencies.append((time.perf_counter() - at) * 1000)  # from when it was due
            errors += not ok

        start = time.perf_counter() + 0.2
        count = int(seconds * rate)
        began = time.perf_counter()
        await asyncio.gather(*(one(start + i / rate) for i in range(count)))
        spent = time.perf_counter() - began
    return _figures(latencies, errors, spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    with start_test_server(os.environ.get("PGWARDEN_TEST_DSN")) as server:
        database = server.create_database()
        url = server.url(database)
        engine = create_engine(url, poolclass=NullPool, application_name="pgwarden-bench")
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
            for n in range(20):
                conn.execute(sa.text(f"CREATE TABLE t{n} (id int PRIMARY KEY, v text)"))
                conn.execute(
                    sa.text(f"INSERT INTO t{n} SELECT g, 'v' FROM generate_series(1, 500) g")
                )
            secret = create_token(conn, scope="read").secret
        headers = {"Authorization": f"Bearer {secret}"}
        work = Path(tempfile.mkdtemp(prefix="pgwarden-bench-"))
        ports = {"pgwarden": free_port(), "bare": free_port()}
        pgwarden = Path(sys.executable).parent / "pgwarden"
        env = {**os.environ, "DATABASE_URL": url}
        api = subprocess.Popen([str(pgwarden), "serve", "--port", str(ports["pgwarden"])], env=env)
        bare = None
        try:
            base = {name: f"http://127.0.0.1:{port}/v1/database" for name, port in ports.items()}
            _wait(f"{base['pgwarden']}/health")
            summary = httpx.get(f"{base['pgwarden']}/summary", headers=headers).json()
            (work / "summary.json").write_text(json.dumps(summary))
            (work / "bare.py").write_text(BARE)
            bare = subprocess.Popen(
                [
                    sys.executable,
                    str(work / "bare.py"),
                    str(ports["bare"]),
                    str(work / "summary.json"),
                ]
            )
            _wait(f"{base['bare']}/health")
            print(f"{args.seconds:g} s per measurement; summary cached {10:g} s (the default)")
            steady_head = f"   at {args.rate:g}/s:"
            print(
                f"{'route':<10}{'server':<10}{'max req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
                f"{steady_head}{'p50 ms':>8}{'p99 ms':>9}{'stmts/s':>9}{'xacts/s':>9}"
            )
            results: dict[
                tuple[str, str], tuple[dict[str, float], dict[str, float], float, float]
            ] = {}
            for route in ("health", "summary"):
                for name in ("pgwarden", "bare"):
                    target = f"{base[name]}/{route}"
                    closed = asyncio.run(_closed(target, headers, args.seconds))
                    with engine.connect() as conn:
                        before = conn.execute(COUNTS).one()
                    clock = time.perf_counter()
                    steady = asyncio.run(_steady(target, headers, args.seconds, args.rate))
                    with engine.connect() as conn:
                        conn.execute(sa.text("SELECT pg_stat_force_next_flush()"))
                        after = conn.execute(COUNTS).one()
                    spent = time.perf_counter() - clock
                    # The reads of the counters are statements and transactions too.
                    stmts = max(0, after.statements - before.statements - 2) / spent
                    xacts = max(0, after.transactions - before.transactions - 2) / spent
                    results[route, name] = (closed, steady, stmts, xacts)
                    bad = closed["errors"] + steady["errors"]
                    print(
                        f"{route:<10}{name:<10}{closed['rps']:>10.0f}{closed['p50']:>9.2f}"
                        f"{closed['p99']:>9.2f}{'':>{len(steady_head)}}"
                        f"{steady['p50']:>8.2f}{steady['p99']:>9.2f}{stmts:>9.1f}{xacts:>9.1f}"
                        + (f"  ({bad:.0f} errors)" if bad else "")
                    )
            print()
            for route in ("health", "summary"):
                ours, theirs = results[route, "pgwarden"], results[route, "bare"]
                print(
                    f"{route}: pgwarden/bare max req/s {ours[0]['rps'] / theirs[0]['rps']:.2f}x, "
                    f"p99 at {args.rate:g}/s {ours[1]['p99'] / theirs[1]['p99']:.2f}x "
                    f"({ours[1]['p99']:.1f} ms vs {theirs[1]['p99']:.1f} ms); "
                    f"statements per request at {args.rate:g}/s: "
                    f"{ours[2] / args.rate:.3f}"
                )
        finally:
            api.terminate()
            if bare is not None:
                bare.terminate()
            api.wait(30)
            if bare is not None:
                bare.wait(30)
            engine.dispose()
            server.drop_database(database)


if __name__ == "__main__":
    main()
