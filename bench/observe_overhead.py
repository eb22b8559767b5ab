"""Measure what pgwarden.observe adds to each statement, against OpenTelemetry's
SQLAlchemy instrumentation, in one process and one run.

The same small statement runs ``--statements`` times per round:

- bare:      a pgwarden engine with nothing attached;
- pgwarden:  instrument(engine): metrics on, logging configured at INFO, inside an N+1
             watch (observe.watch);
- otel:      opentelemetry-instrumentation-sqlalchemy with the SDK's TracerProvider and a
             span processor whose exporter drops every span.

pgwarden's rounds alternate with bare rounds on the same connection (instrument and
uninstrument leave nothing behind). OpenTelemetry's listeners cannot be removed without
leaving SQLAlchemy's event dispatch switched on, so its rounds alternate with bare rounds
on a second engine. The figure is CPU time of this process, which is what
instrumentation adds to; the wait for the server is left out. Each overhead is the
median of the per-round differences, and this process and the server are pinned to
different cores where there are two, which keeps the noise of a shared machine down.

    .venv/bin/python bench/observe_overhead.py [--statements 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from _items import QUERY, items_database
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Connection

from pgwarden import observe
from pgwarden.db.engines import create_engine
from pgwarden.logs import configure_logging
from pgwarden.testing.servers import start_test_server


class DropExporter(SpanExporter):
    """Export nothing: the cost measured is making the spans, not shipping them."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def cpu_per_statement(
    conn: Connection, statements: int, around: Callable[[], AbstractContextManager[object]]
) -> float:
    """Return CPU microseconds of this process per execution of QUERY."""
    started = time.process_time()
    with around():
        for i in range(statements):
            conn.execute(QUERY, {"id": i % 100 + 1}).fetchall()
    return (time.process_time() - started) / statements * 1e6


def pin(server: Any) -> None:
    """Put this process on the first core and the embedded server on the others."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or server.embedded is None:
        return
    pid = server.embedded.status().pid
    try:
        import psutil

        postmaster = psutil.Process(pid)
        for process in [postmaster, *postmaster.children(recursive=True)]:
            process.cpu_affinity(cores[1:])
        os.sched_setaffinity(0, {cores[0]})
    except (OSError, psutil.Error):
        pass  # not allowed here: measure unpinned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    n, rounds = args.statements, args.rounds
    runs: dict[str, list[float]] = {"bare": [], "pgwarden": [], "otel bare": [], "otel": []}

    with start_test_server(os.environ.get("PGWARDEN_TEST_DSN")) as server:
        pin(server)
        name, url = items_database(server)
        configure_logging(level=logging.INFO, fmt="json", stream=io.StringIO())

        mine = create_engine(url, pool_size=1)
        with mine.connect() as conn:
            cpu_per_statement(conn, n // 10, nullcontext)  # warm up
            for _ in range(rounds):
                runs["bare"].append(cpu_per_statement(conn, n, nullcontext))
                observe.instrument(mine, registry=CollectorRegistry(), slow_ms=100)
                runs["pgwarden"].append(
                    cpu_per_statement(
                        conn, n, lambda: observe.watch("bench", mode="log", threshold=10**9)
                    )
                )
                observe.uninstrument(mine)
        mine.dispose()

        plain, traced = create_engine(url, pool_size=1), create_engine(url, pool_size=1)
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(DropExporter()))
        # The instrumentor declares support below SQLAlchemy 2.1 only; the events it uses
        # are unchanged in 2.1, so the check is skipped rather than the comparison.
        SQLAlchemyInstrumentor().instrument(
            engine=traced, tracer_provider=provider, skip_dep_check=True
        )
        with plain.connect() as bare_conn, traced.connect() as traced_conn:
            cpu_per_statement(bare_conn, n // 10, nullcontext)
            cpu_per_statement(traced_conn, n // 10, nullcontext)
            for _ in range(rounds):
                runs["otel bare"].append(cpu_per_statement(bare_conn, n, nullcontext))
                runs["otel"].append(cpu_per_statement(traced_conn, n, nullcontext))
        SQLAlchemyInstrumentor().uninstrument()
        plain.dispose()
        traced.dispose()
        server.drop_database(name)

    median = {variant: statistics.median(values) for variant, values in runs.items()}
    pgwarden = statistics.median(p - b for p, b in zip(runs["pgwarden"], runs["bare"], strict=True))
    otel = statistics.median(o - b for o, b in zip(runs["otel"], runs["otel bare"], strict=True))
    print(f"{n} statements x {rounds} rounds; CPU µs per statement, median of rounds")
    for variant, values in runs.items():
        print(f"  {variant:<10} {median[variant]:8.2f}   (min {min(values):.2f})")
    print(f"pgwarden overhead: {pgwarden:6.2f} µs/statement  (target < 10)")
    print(f"otel overhead:     {otel:6.2f} µs/statement")
    print(f"pgwarden / otel:   {pgwarden / otel:6.2f}            (target <= 0.5)")
    print(
        f"ratios to bare:    pgwarden {median['pgwarden'] / median['bare']:.3f}x, "
        f"otel {median['otel'] / median['otel bare']:.3f}x"
    )


if __name__ == "__main__":
    main()
