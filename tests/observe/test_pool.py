"""Pool figures, waits and leaks, on real pools of real connections."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from pgwarden.db.engines import create_async_engine, create_engine
from pgwarden.observe.pool import PoolMonitor, pool_status
from pgwarden_test_support import line_of


@pytest.fixture
def leak_log() -> Iterator[list[logging.LogRecord]]:
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    logger = logging.getLogger("pgwarden.observe.pool")
    handler = Keep(level=logging.WARNING)
    logger.addHandler(handler)
    yield captured
    logger.removeHandler(handler)


@pytest.fixture
def single(pg_url: str) -> Iterator[Engine]:
    """Yield an engine whose pool holds one connection and never overflows."""
    engine = create_engine(pg_url, pool_size=1, max_overflow=0, pool_timeout=5)
    yield engine
    engine.dispose()


def test_pool_status_counts_connections_held_and_overflow(pg_engine: Engine) -> None:
    assert pool_status(pg_engine).checked_out == 0
    with pg_engine.connect() as a, pg_engine.connect() as b, pg_engine.connect() as c:
        for conn in (a, b, c):
            conn.execute(sa.text("SELECT 1"))
        held = pool_status(pg_engine)
        assert (held.size, held.checked_out, held.checked_in) == (2, 3, 0)
        assert (held.overflow, held.max_overflow) == (1, 2)
        assert held.waits == 0 and held.longest_held_seconds == 0.0  # no monitor
    after = pool_status(pg_engine)
    assert (after.checked_out, after.checked_in, after.overflow) == (0, 2, 0)


def test_wait_time_is_measured_when_the_pool_is_exhausted(single: Engine) -> None:
    with PoolMonitor(single) as monitor:
        got: list[float] = []
        asking = threading.Event()

        def second() -> None:
            asking.set()
            started = time.perf_counter()
            with single.connect() as conn:
                got.append(time.perf_counter() - started)
                conn.execute(sa.text("SELECT 1"))

        with single.connect():
            assert monitor.status().waits == 0
            waiter = threading.Thread(target=second)
            waiter.start()
            asking.wait(5)
            time.sleep(0.3)
            assert pool_status(single).checked_out == 1
        waiter.join()
        status = pool_status(single)
        assert status.waits == 1
        assert 0.25 <= status.wait_seconds_total <= got[0]
        assert status.longest_wait_seconds == status.wait_seconds_total
        with single.connect():  # a free connection: no wait
            pass
        assert pool_status(single).waits == 1


def test_a_wait_that_times_out_counts_too(pg_url: str) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        with PoolMonitor(engine) as monitor, engine.connect():
            with pytest.raises(sa_exc.TimeoutError):
                engine.connect()
            status = monitor.status()
            assert status.waits == 1 and status.wait_seconds_total >= 0.19
    finally:
        engine.dispose()


def test_a_connection_held_too_long_is_logged_once_with_the_stack_that_took_it(
    pg_engine: Engine, leak_log: list[logging.LogRecord]
) -> None:
    with PoolMonitor(pg_engine, leak_seconds=0.2) as monitor:
        conn = pg_engine.connect()  # leaky checkout
        try:
            assert monitor.check_leaks() == []
            time.sleep(0.25)
            with pg_engine.connect():  # any later checkout notices it
                pass
            [leak] = monitor.check_leaks()  # still held, but not logged again
            assert leak.age_seconds >= 0.2
            assert monitor.status().longest_held_seconds >= 0.2
        finally:
            conn.close()
        assert monitor.check_leaks() == [] and monitor.held() == []
    taken = f"test_pool.py:{line_of(__file__, '# leaky checkout')}"
    [record] = leak_log
    assert record.levelno == logging.WARNING
    assert record.call_site.endswith(taken)  # type: ignore[attr-defined]
    assert record.holder == threading.current_thread().name  # type: ignore[attr-defined]
    message = record.getMessage()
    assert f"{taken}\n" in message.splitlines(keepends=True)[0]
    # The stack reads outermost first; the test's line is marked as application code.
    marked = [line for line in message.splitlines() if line.startswith("  > ")]
    assert marked[-1].endswith(f"{taken} in {sys._getframe().f_code.co_name}")
    assert "sqlalchemy/engine/base.py" in message


def test_the_watcher_thread_finds_leaks_without_a_checkout(
    pg_engine: Engine, leak_log: list[logging.LogRecord]
) -> None:
    before = set(threading.enumerate())
    with PoolMonitor(pg_engine, leak_seconds=0.2, check_interval=0.05), pg_engine.connect():
        deadline = time.monotonic() + 5
        while not leak_log and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
    assert len(leak_log) == 1
    assert set(threading.enumerate()) <= before  # the watcher thread has ended


def test_held_connections_name_their_thread_and_the_line_that_took_them(
    pg_engine: Engine,
) -> None:
    with PoolMonitor(pg_engine) as monitor:
        ready, done = threading.Event(), threading.Event()

        def worker() -> None:
            with pg_engine.connect():  # worker checkout
                ready.set()
                done.wait(5)

        thread = threading.Thread(target=worker, name="report-builder")
        thread.start()
        ready.wait(5)
        with pg_engine.connect():  # main checkout
            held = monitor.held()
        done.set()
        thread.join()
    assert [h.thread for h in held] == ["report-builder", threading.current_thread().name]
    assert held[0].call_site is not None
    assert held[0].call_site.endswith(f":{line_of(__file__, '# worker checkout')}")
    assert held[1].call_site is not None
    assert held[1].call_site.endswith(f":{line_of(__file__, '# main checkout')}")


def test_close_removes_everything(pg_engine: Engine, leak_log: list[logging.LogRecord]) -> None:
    pool = pg_engine.pool
    monitor = PoolMonitor(pg_engine, leak_seconds=0.0, check_interval=0.01)
    assert "connect" in vars(pool)
    monitor.close()
    monitor.close()  # idempotent
    assert "connect" not in vars(pool)
    for name in ("checkout", "checkin", "detach"):
        assert not getattr(pool.dispatch, name)
    assert not pg_engine._has_events  # no engine-level listener slows its statements
    with pg_engine.connect():
        time.sleep(0.05)
        with pg_engine.connect():  # would report the first, were anything left
            pass
    assert leak_log == []
    assert monitor.held() == []
    assert pool_status(pg_engine).waits == 0


def test_the_monitor_follows_the_engine_through_dispose(pg_url: str) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0, pool_timeout=0.1)
    with PoolMonitor(engine) as monitor:
        engine.dispose()
        with engine.connect() as conn:  # the first checkout of the new pool
            conn.execute(sa.text("SELECT 1"))
            assert len(monitor.held()) == 1
            assert "connect" in vars(engine.pool)
            with pytest.raises(sa_exc.TimeoutError):
                engine.connect()
        assert monitor.status().waits == 1
    assert "connect" not in vars(engine.pool)
    assert not engine.pool.dispatch.checkout
    engine.dispose()


def test_pool_status_on_an_async_engine(pg_url: str) -> None:
    engine = create_async_engine(pg_url, pool_size=3, max_overflow=1)

    async def main() -> None:
        with PoolMonitor(engine) as monitor:
            async with engine.connect() as a, engine.connect() as b:  # async checkout
                await a.execute(sa.text("SELECT 1"))
                await b.execute(sa.text("SELECT 1"))
                status = pool_status(engine)
                assert (status.size, status.checked_out, status.max_overflow) == (3, 2, 1)
                held = monitor.held()
            assert pool_status(engine).checked_out == 0
        line = line_of(__file__, "# async checkout")
        assert [h.call_site and h.call_site.endswith(f":{line}") for h in held] == [True, True]
        assert all("task" in h.thread for h in held)
        await engine.dispose()

    asyncio.run(main())
