"""pytest plugin: a real PostgreSQL server per test session, a fresh database per test.

By default the server is an embedded one started in a temporary directory for the
session and removed after it. With ``PGWARDEN_TEST_DSN`` set to the URL of a role that
may create databases, the same tests run against that server instead.

Each test that asks for ``pg_url`` (or ``pg_engine``) gets a new database cloned from a
template made once per session, and dropped after the test.

``--pgwarden-nplusone=raise`` fails every test that triggers an N+1 query, printing the
report (the relationship, the lines, the loader option to add); ``warn`` turns each into
a warning in pytest's summary. Per test, ``@pytest.mark.nplusone_allow("Model.attr")``
allows a pattern; ``pgwarden_nplusone_allow`` in the ini file allows some everywhere.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Generator, Iterator

import pytest
from sqlalchemy.engine import Engine

from pgwarden.testing.servers import TestServer, start_test_server

__all__ = ["pg_engine", "pg_server", "pg_url", "pytest_addoption", "pytest_runtest_call"]

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


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pgwarden")
    group.addoption(
        "--pgwarden-nplusone",
        choices=["off", "warn", "raise"],
        default="off",
        help="Watch each test for N+1 queries: warn, or fail the test (raise).",
    )
    group.addoption(
        "--pgwarden-nplusone-threshold",
        type=int,
        default=2,
        help="Lazy loads of one relationship that make an N+1 (default 2).",
    )
    parser.addini(
        "pgwarden_nplusone_allow",
        type="linelist",
        default=[],
        help="N+1 patterns to allow: Model.relationship, path:line or file globs.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "nplusone_allow(*patterns): N+1 patterns this test may trigger"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    mode = item.config.getoption("--pgwarden-nplusone")
    if mode == "off":
        return (yield)
    from pgwarden.observe.nplusone import watch

    allow = list(item.config.getini("pgwarden_nplusone_allow"))
    for marker in item.iter_markers("nplusone_allow"):
        allow.extend(marker.args)
    threshold = item.config.getoption("--pgwarden-nplusone-threshold")
    with watch(item.nodeid, mode="log", threshold=threshold, allow=allow) as current:
        result = yield
    findings = current.findings()
    if findings:
        report = "\n".join(f"  {finding.message()}" for finding in findings)
        if mode == "raise":
            pytest.fail(f"N+1 queries in {item.nodeid}:\n{report}", pytrace=False)
        for finding in findings:
            warnings.warn(finding.message(), stacklevel=1)
    return result
