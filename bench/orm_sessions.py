"""What replica routing and transaction-scoped timeouts cost a session, in one run.

Each path runs the same transactions, reading one row by key (``--reads`` reads per
transaction), on the same server:

1. **plain**: a SQLAlchemy ``Session`` on one engine: the baseline;
2. **routing**: a :class:`~pgwarden.orm.RoutingSession` whose replica is a second engine
   on the same server (so only pgwarden's routing differs: choosing per transaction, a
   lag probe once per ``check_interval``);
3. **timeouts**: the plain session on an engine with :func:`~pgwarden.orm.enable_timeouts`,
   inside ``timeouts(statement="5s", lock="1s")``: one ``set_config`` round trip per
   transaction.

The paths take turns for ``--rounds`` rounds, so the load of a shared machine weighs on
each alike; the median round counts. Printed: microseconds per transaction and each
path's ratio to plain.

    .venv/bin/python bench/orm_sessions.py [--transactions 2000] [--reads 1] [--rounds 5]

PGWARDEN_TEST_DSN runs it against another server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).parent))

from _items import items_database

from pgwarden.db.engines import create_engine
from pgwarden.orm import ReplicaSet, enable_timeouts, routing_sessionmaker, timeouts
from pgwarden.testing.servers import start_test_server

ITEM = sa.table("bench_item", sa.column("id"), sa.column("name"))


def run(make: Callable[[], Session], transactions: int, reads: int) -> float:
    """Return the seconds ``transactions`` transactions of ``reads`` reads take."""
    started = time.perf_counter()
    for number in range(transactions):
        with make() as session:
            for read in range(reads):
                key = (number + read) % 100 + 1
                session.execute(sa.select(ITEM).where(ITEM.c.id == key)).all()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with start_test_server(os.environ.get("PGWARDEN_TEST_DSN")) as server:
        _, url = items_database(server)
        plain = create_engine(url, pool_size=1)
        primary = create_engine(url, pool_size=1)
        replica = create_engine(url, pool_size=1)
        limited = create_engine(url, pool_size=1)
        enable_timeouts(limited)
        routed = routing_sessionmaker(ReplicaSet(primary, [replica]))

        def with_timeouts() -> float:
            with timeouts(statement="5s", lock="1s"):
                return run(lambda: Session(limited), args.transactions, args.reads)

        paths: dict[str, Callable[[], float]] = {
            "plain": lambda: run(lambda: Session(plain), args.transactions, args.reads),
            "routing": lambda: run(routed, args.transactions, args.reads),
            "timeouts": with_timeouts,
        }
        for path in paths.values():  # warm-up: pools, caches, the first lag probe
            path()
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, path in paths.items():
                times[name].append(path())
        per = {name: statistics.median(t) / args.transactions * 1e6 for name, t in times.items()}
        print(f"{args.transactions} transactions of {args.reads} read(s), median of {args.rounds}")
        for name, micros in per.items():
            print(f"{name:>9}: {micros:8.1f} us/transaction  {micros / per['plain']:5.2f}x plain")
        for engine in (plain, primary, replica, limited):
            engine.dispose()


if __name__ == "__main__":
    main()
