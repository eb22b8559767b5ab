"""pytest plugin: a real PostgreSQL server per test session, a fresh database per test.

By default the server is an embedded one started in a temporary directory for the
session and removed after it. With ``PGWARDEN_TEST_DSN`` set to the URL of a role that
may create databases, the same tests run against that server instead.

Each test that asks for ``pg_url`` (or ``pg_engine``) gets a new database cloned from a
template made once per session, and dropped after the test.

``--pgwarden-nplusone=raise`` fails every test that triggers an N+1 query, printing the
report (the relationship, the lines, the loader option to add); ``warn`` turns each into
a warning in pytest's summary. The watch covers the test's fixtures too, whatever runs
the test (plain pytest, anyio, pytest-asyncio) and in any thread: an N+1 in a fixture's
setup is reported with the test and marked with the fixture; one in a fixture's teardown
fails that teardown. Per test, ``@pytest.mark.nplusone_allow("Model.attr")``
allows a pattern; ``pgwarden_nplusone_allow`` in the ini file allows some everywhere.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.engine import Engine

from pgwarden.testing.servers import TestServer, start_test_server

if TYPE_CHECKING:
    from pgwarden.observe.nplusone import NPlusOneFinding, Watch

__all__ = [
    "pg_engine",
    "pg_server",
    "pg_url",
    "pytest_addoption",
    "pytest_fixture_post_finalizer",
    "pytest_fixture_setup",
    "pytest_runtest_call",
    "pytest_runtest_setup",
    "pytest_runtest_teardown",
]

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


@dataclass
class _TestWatch:
    """The N+1 watch around one test: its setup, its call and its teardown."""

    stack: ExitStack
    watch: Watch
    mode: str
    # (fixture, what ``during`` said before its teardown began), innermost last
    tearing_down: list[tuple[object, str | None]] = field(default_factory=list)


_TEST_WATCH = pytest.StashKey[_TestWatch]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    # The watch opens before the test's fixtures and closes after their teardown. It is
    # opened everywhere=True: a test coroutine run by anyio or pytest-asyncio, an async
    # fixture's event loop, a thread from run_in_executor all run in a context copied
    # before the test began, and pytest runs one test at a time per process.
    mode = item.config.getoption("--pgwarden-nplusone")
    if mode == "off":
        return (yield)
    from pgwarden.observe.nplusone import watch

    allow = list(item.config.getini("pgwarden_nplusone_allow"))
    for marker in item.iter_markers("nplusone_allow"):
        allow.extend(marker.args)
    threshold = item.config.getoption("--pgwarden-nplusone-threshold")
    stack = ExitStack()
    current = stack.enter_context(
        watch(item.nodeid, mode="log", threshold=threshold, allow=allow, everywhere=True)
    )
    item.config.stash[_TEST_WATCH] = _TestWatch(stack, current, mode)
    current.during = "setup"
    try:
        return (yield)
    finally:
        current.during = None


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    state = request.config.stash.get(_TEST_WATCH, None)
    if state is None:
        return (yield)
    current = state.watch
    previous = current.during
    current.during = f"setup of fixture {fixturedef.argname!r}"
    try:
        return (yield)
    finally:
        current.during = previous
        # Finalizers run last in, first out: this one runs just before the fixture's own
        # teardown, perhaps in a later test (a module or session fixture).
        config = request.config
        fixturedef.addfinalizer(lambda: _teardown_begins(config, fixturedef))


def _teardown_begins(config: pytest.Config, fixturedef: pytest.FixtureDef[object]) -> None:
    state = config.stash.get(_TEST_WATCH, None)
    if state is not None:
        state.tearing_down.append((fixturedef, state.watch.during))
        state.watch.during = f"teardown of fixture {fixturedef.argname!r}"


def pytest_fixture_post_finalizer(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> None:
    state = request.config.stash.get(_TEST_WATCH, None)
    if state is not None and state.tearing_down and state.tearing_down[-1][0] is fixturedef:
        state.watch.during = state.tearing_down.pop()[1]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    state = item.config.stash.get(_TEST_WATCH, None)
    if state is None:
        return (yield)
    result = yield  # a test that failed is reported as it failed, without the N+1s
    findings = [finding for finding in state.watch.findings() if not _in_teardown(finding)]
    _report(item, state.mode, findings)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    state = item.config.stash.get(_TEST_WATCH, None)
    if state is None:
        return (yield)
    state.watch.during = "teardown"
    try:
        result = yield
    finally:
        del item.config.stash[_TEST_WATCH]
        state.stack.close()
    _report(item, state.mode, [f for f in state.watch.findings() if _in_teardown(f)])
    return result


def _in_teardown(finding: NPlusOneFinding) -> bool:
    return finding.during is not None and finding.during.startswith("teardown")


def _report(item: pytest.Item, mode: str, findings: list[NPlusOneFinding]) -> None:
    if not findings:
        return
    if mode == "raise":
        report = "\n".join(f"  {finding.message()}" for finding in findings)
        pytest.fail(f"N+1 queries in {item.nodeid}:\n{report}", pytrace=False)
    for finding in findings:
        warnings.warn(finding.message(), stacklevel=1)
