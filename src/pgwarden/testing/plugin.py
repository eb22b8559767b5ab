"""pytest plugin: a real PostgreSQL server per test session, a fresh database per test.

By default the server is an embedded one started in a temporary directory for the
session and removed after it. With ``PGWARDEN_TEST_DSN`` set to the URL of a role that
may create databases, the same tests run against that server instead.

Each test that asks for ``pg_url`` (or ``pg_engine``) gets a new database cloned from a
template made once per session, and dropped after the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from pgwarden.testing.servers import TestServer, start_test_server

__all__ = ["pg_engine", "pg_server", "pg_url"]

TEST_DSN_VARIABLE = "PGWARDEN_TEST_DSN"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TestServer]:
    """Yield the PostgreSQL server this test session runs against."""
    with start_test_server(os.environ.get(TEST_DSN_VARIABLE) or None) as server:
        yield server


@pytest.fixture
def pg_url(pg_server: TestServer) -> Iterator[str]:
    """Yield the URL of a new, empty database, dropped after the test."""
    name = pg_server.create_database()
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """Yield a pgwarden engine on a new, empty database."""
    from pgwarden.db.engines import create_engine

    engine = create_engine(pg_url, pool_size=2, max_overflow=2)
    try:
        yield engine
    finally:
        engine.dispose()
