from __future__ import annotations

import asyncio
import json
import logging

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden import observe
from pgwarden.db.engines import create_async_engine
from pgwarden.logs import configure_logging
from pgwarden_test_support import line_of


def test_every_statement_is_logged_with_its_shape_and_call_site(
    pg_engine: Engine, records: list[logging.LogRecord]
) -> None:
    observe.instrument(pg_engine, metrics=False)
    try:
        with pg_engine.connect() as conn:
            conn.execute(sa.text("SELECT generate_series(1, :n)"), {"n": 3})  # logged line
    finally:
        observe.uninstrument(pg_engine)
    [record] = [r for r in records if "generate_series" in getattr(r, "statement", "")]
    assert record.levelno == logging.DEBUG
    assert record.fingerprint == observe.fingerprint("SELECT generate_series(1, 9)")  # type: ignore[attr-defined]
    assert record.rows == 3  # type: ignore[attr-defined]
    assert record.duration_ms >= 0  # type: ignore[attr-defined]
    assert record.call_site.endswith(f"test_instrument.py:{line_of(__file__, '# logged line')}")  # type: ignore[attr-defined]
    assert not hasattr(record, "parameters")


def test_parameters_only_when_asked(pg_engine: Engine, records: list[logging.LogRecord]) -> None:
    observe.instrument(pg_engine, metrics=False, log_parameters=True)
    try:
        with pg_engine.connect() as conn:
            conn.execute(sa.text("SELECT :dsn"), {"dsn": "postgresql://u:hunter2@h/d"})
    finally:
        observe.uninstrument(pg_engine)
    [record] = [r for r in records if getattr(r, "statement", "").startswith("SELECT %(dsn)s")]
    assert "u:***@h" in record.parameters  # type: ignore[attr-defined]
    assert "hunter2" not in record.parameters  # type: ignore[attr-defined]


def test_slow_queries_warn_with_call_site_and_plan(
    pg_engine: Engine, records: list[logging.LogRecord]
) -> None:
    observe.instrument(pg_engine, metrics=False, slow_ms=20, explain_slow=True)
    try:
        with pg_engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (id int)"))
            conn.execute(sa.text("SELECT pg_sleep(0.05), count(*) FROM t"))  # slow select
            conn.execute(sa.text("INSERT INTO t SELECT 1 FROM pg_sleep(0.05)"))  # slow write
            assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 1
    finally:
        observe.uninstrument(pg_engine)
    slow = [r for r in records if r.levelno == logging.WARNING]
    assert len(slow) == 2
    select, write = slow
    assert select.call_site.endswith(str(line_of(__file__, "# slow select")))  # type: ignore[attr-defined]
    assert "Seq Scan on t" in select.plan  # type: ignore[attr-defined]
    assert "slow query" in select.getMessage() and "threshold 20 ms" in select.getMessage()
    assert not hasattr(write, "plan")  # a write is never explained
    assert write.call_site.endswith(str(line_of(__file__, "# slow write")))  # type: ignore[attr-defined]


def test_explaining_a_parameterised_select_leaves_the_transaction_usable(
    pg_engine: Engine, records: list[logging.LogRecord]
) -> None:
    observe.instrument(pg_engine, metrics=False, slow_ms=0, explain_slow=True)
    try:
        with pg_engine.begin() as conn:
            conn.execute(sa.text("SELECT relname FROM pg_class WHERE oid = :oid"), {"oid": 1259})
            assert conn.execute(sa.text("SELECT 2")).scalar_one() == 2
    finally:
        observe.uninstrument(pg_engine)
    [explained] = [r for r in records if "pg_class WHERE" in getattr(r, "statement", "")]
    assert "Index Scan" in explained.plan or "Seq Scan" in explained.plan  # type: ignore[attr-defined]


def test_instrument_is_idempotent_and_removable(
    pg_engine: Engine, records: list[logging.LogRecord]
) -> None:
    first = observe.instrument(pg_engine, metrics=False)
    assert observe.instrument(pg_engine, metrics=False) is first
    assert observe.instrumentation(pg_engine) is first
    assert observe.uninstrument(pg_engine) is True
    assert observe.uninstrument(pg_engine) is False
    with pg_engine.connect() as conn:
        conn.execute(sa.text("SELECT 'after removal'"))
    assert not [r for r in records if "after removal" in getattr(r, "statement", "")]


def test_async_engines_are_observed_with_the_awaiting_line(
    pg_url: str, records: list[logging.LogRecord]
) -> None:
    async def main() -> None:
        engine = create_async_engine(pg_url)
        observe.instrument(engine, metrics=False, slow_ms=10)
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT pg_sleep(0.03)"))  # async slow
        finally:
            observe.uninstrument(engine)
            await engine.dispose()

    asyncio.run(main())
    # Only the sleep counts: on a loaded machine the dialect's own start-up queries
    # can pass 10 ms too.
    [slow] = [
        r
        for r in records
        if r.levelno == logging.WARNING and "pg_sleep" in getattr(r, "statement", "")
    ]
    assert slow.call_site.endswith(str(line_of(__file__, "# async slow")))  # type: ignore[attr-defined]


def test_json_log_lines_carry_the_fields(pg_engine: Engine) -> None:
    import io

    stream = io.StringIO()
    configure_logging(level="DEBUG", fmt="json", stream=stream)
    observe.instrument(pg_engine, metrics=False)
    try:
        with pg_engine.connect() as conn:
            conn.execute(sa.text("SELECT 7"))
    finally:
        observe.uninstrument(pg_engine)
        configure_logging(level="WARNING")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [line] = [item for item in lines if item.get("statement") == "SELECT 7"]
    assert line["logger"] == "pgwarden.observe.query"
    assert {"fingerprint", "duration_ms", "rows", "call_site"} <= set(line)
