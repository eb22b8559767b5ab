"""Redis going away changes no answer: reads go to the database, writes are not lost."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from cache_support import Course
from sqlalchemy.engine import Engine

from pgwarden.cache import QueryCache, cached
from pgwarden.testing.redis_server import RedisServer, running_redis

TITLE = sa.select(Course.title).where(Course.id == 1).options(cached(ttl=600))


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
def course(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(Course).values(id=1, title="v0"))


def title(cache: QueryCache, engine: Engine) -> str:
    with engine.connect() as conn:
        return str(cache.execute(conn, TITLE).scalar_one())


def set_title(engine: Engine, value: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(Course).values(title=value))


def eventually(check: object, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "did not happen in time"
        time.sleep(0.05)


@pytest.mark.usefixtures("course")
def test_redis_killed_mid_run_changes_no_answer(
    redis: RedisServer, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    cache = QueryCache(redis.url, namespace="outage", timeout=0.2, retry_interval=0.2)
    cache.instrument(engine)
    assert [title(cache, engine) for _ in range(2)] == ["v0", "v0"]
    redis.stop()
    with caplog.at_level(logging.WARNING, logger="pgwarden.cache"):
        assert title(cache, engine) == "v0"
        set_title(engine, "v1")  # its invalidation cannot be published now
        assert [title(cache, engine) for _ in range(3)] == ["v1"] * 3
        redis.start()
        eventually(lambda: cache.store.lookup([], "probe", lock_ttl=1) is not None)
        assert [title(cache, engine) for _ in range(2)] == ["v1", "v1"]
    stats = cache.stats()
    assert stats.errors >= 1 and stats.bypasses >= 4 and stats.hits == 2
    warnings = [r for r in caplog.records if "cannot reach Redis" in r.getMessage()]
    assert len(warnings) == 1  # logged once per outage, not per query


@pytest.mark.usefixtures("course")
def test_entries_from_before_an_outage_are_not_served_after_it(
    redis: RedisServer, engine: Engine
) -> None:
    # Redis frozen, not emptied: its entries survive the outage. Reader and writer are
    # two caches, as two processes would be; only the writer saw the outage.
    reader = QueryCache(redis.url, namespace="frozen", timeout=0.2, retry_interval=0.2)
    writer = QueryCache(redis.url, namespace="frozen", timeout=0.2, retry_interval=0.2)
    reader_engine = sa.create_engine(engine.url)
    reader.instrument(reader_engine)
    writer.instrument(engine)
    assert [title(reader, reader_engine) for _ in range(2)] == ["v0", "v0"]
    assert redis.process is not None
    redis.process.send_signal(signal.SIGSTOP)
    try:
        set_title(engine, "v1")
        assert writer.stats().errors == 1
    finally:
        redis.process.send_signal(signal.SIGCONT)
    # The writer publishes what it owes as soon as Redis answers, on its own.
    eventually(lambda: writer.stats().invalidations >= 2)
    assert title(reader, reader_engine) == "v1"
    reader_engine.dispose()
