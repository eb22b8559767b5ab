"""Count the machine instructions pgwarden.observe adds per statement, with callgrind.

Timing a few microseconds on a shared machine is noisy; instruction counts are not: the
same program on the same input executes the same instructions. Each variant (bare,
pgwarden, otel; as in observe_overhead.py) runs under ``valgrind --tool=callgrind``
twice, with a small and a large number of statements; the difference between the two
runs divided by the difference in statements is the cost of one statement, free of
start-up. Slow (minutes: valgrind runs Python some 50 times slower), so run by hand:

    .venv/bin/python bench/observe_instructions.py [--small 500] [--large 2500]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import shutil
import subprocess
import sys
from contextlib import AbstractContextManager, nullcontext

from _items import QUERY, items_database

from pgwarden.db.engines import create_engine
from pgwarden.testing.servers import start_test_server

VARIANTS = ("bare", "pgwarden", "otel")


def child(variant: str, url: str, statements: int) -> None:
    """Run ``statements`` executions of QUERY the way ``variant`` says (under valgrind)."""
    from pgwarden import observe
    from pgwarden.logs import configure_logging

    configure_logging(level=logging.INFO, fmt="json", stream=io.StringIO())
    engine = create_engine(url, pool_size=1)
    around: AbstractContextManager[object] = nullcontext()
    if variant == "pgwarden":
        from prometheus_client import CollectorRegistry

        observe.instrument(engine, registry=CollectorRegistry())
        around = observe.watch("bench", mode="log", threshold=10**9)
    elif variant == "otel":
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

        class Drop(SpanExporter):
            def export(self, spans: object) -> object:
                from opentelemetry.sdk.trace.export import SpanExportResult

                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(Drop()))
        SQLAlchemyInstrumentor().instrument(
            engine=engine, tracer_provider=provider, skip_dep_check=True
        )
    with engine.connect() as conn:
        for i in range(200):  # warm up: caches, prepared statements
            conn.execute(QUERY, {"id": i % 100 + 1}).fetchall()
        with around:
            for i in range(statements):
                conn.execute(QUERY, {"id": i % 100 + 1}).fetchall()


def instructions(variant: str, url: str, statements: int) -> int:
    result = subprocess.run(
        [
            "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, __file__, "--child", variant, url, str(statements),
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    match = re.search(r"Collected\s*:\s*(\d+)", result.stderr)
    assert match is not None, result.stderr[-2000:]
    return int(match[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=2500)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    with start_test_server(os.environ.get("PGWARDEN_TEST_DSN")) as server:
        name, url = items_database(server)
        per: dict[str, float] = {}
        for variant in VARIANTS:
            small = instructions(variant, url, args.small)
            large = instructions(variant, url, args.large)
            per[variant] = (large - small) / (args.large - args.small)
            print(f"{variant:<9} {per[variant]:>12,.0f} instructions per statement", flush=True)
        server.drop_database(name)
    mine, theirs = per["pgwarden"] - per["bare"], per["otel"] - per["bare"]
    print(
        f"pgwarden adds {mine:,.0f} ({mine / per['bare']:.1%}); otel adds {theirs:,.0f} "
        f"({theirs / per['bare']:.1%}); pgwarden / otel = {mine / theirs:.3f}"
    )


if __name__ == "__main__":
    main()
