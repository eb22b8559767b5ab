"""Fixtures of the query cache tests: a real Redis, a cache on a fresh database."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from cache_support import Base
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from pgwarden.cache import QueryCache
from pgwarden.testing.redis_server import start_redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """Yield PGWARDEN_TEST_REDIS_URL, else the URL of a redis-server started for the session."""
    with start_redis(os.environ.get("PGWARDEN_TEST_REDIS_URL") or None) as url:
        yield url


@pytest.fixture
def namespace() -> str:
    """Return a namespace of the test's own, so tests sharing a Redis never meet."""
    return f"pgwarden-test:{secrets.token_hex(4)}"


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    """Return an engine on a fresh database holding the test schema."""
    Base.metadata.create_all(pg_engine)
    return pg_engine


@pytest.fixture
def cache(redis_url: str, namespace: str, engine: Engine) -> Iterator[QueryCache]:
    """Yield a cache instrumenting ``engine``."""
    cache = QueryCache(redis_url, namespace=namespace)
    cache.instrument(engine)
    yield cache
    cache.store.client.close()


@pytest.fixture
def sessions(cache: QueryCache, engine: Engine) -> sessionmaker[Session]:
    """Return a session factory whose marked SELECTs go through ``cache``."""
    factory = sessionmaker(engine)
    cache.attach(factory)
    return factory
