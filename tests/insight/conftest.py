"""Fixtures of the insight tests: statements run as the superuser, a pg_monitor role."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.testing.servers import TestServer
from pgwarden_test_support import drop_role

Run = Callable[..., None]


@pytest.fixture
def run(pg_engine: Engine) -> Run:
    """Return a function that runs statements in one committed transaction."""

    def execute(*statements: str) -> None:
        with pg_engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))

    return execute


@pytest.fixture
def run_autocommit(pg_engine: Engine) -> Run:
    """Return a function that runs statements each on its own, outside a transaction."""

    def execute(*statements: str) -> None:
        with pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for statement in statements:
                conn.execute(sa.text(statement))

    return execute


@pytest.fixture
def monitor_role(pg_server: TestServer, pg_engine: Engine) -> Iterator[str]:
    """Yield the quoted name of a new login role that is a member of pg_monitor only."""
    quoted = f'"monitor_{secrets.token_hex(4)}"'
    # Tests connect with pg_url's user name swapped: the role has the same password.
    password = pg_engine.url.password
    login = f"LOGIN PASSWORD '{password}'" if password else "LOGIN"
    try:
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f"CREATE ROLE {quoted} {login} IN ROLE pg_monitor"))
    except sa.exc.ProgrammingError as exc:
        pytest.skip(f"the test server's role cannot create roles: {exc.orig}")
    try:
        yield quoted
    finally:
        drop_role(pg_engine, pg_server.admin, quoted)
