"""Fixtures of the ORM pattern tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from orm_support import Role
from pgwarden.orm import keyring_from_settings
from pgwarden.testing.servers import TestServer
from pgwarden_test_support import drop_role


@pytest.fixture(autouse=True)
def no_encryption_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run each test with no PGWARDEN_ENCRYPTION_KEYS and no keyring cached from one."""
    monkeypatch.delenv("PGWARDEN_ENCRYPTION_KEYS", raising=False)
    keyring_from_settings.cache_clear()
    yield
    keyring_from_settings.cache_clear()


@pytest.fixture
def app_role(pg_server: TestServer, pg_url: str, pg_engine: Engine) -> Iterator[Role]:
    """Yield a new ordinary login role on the test database, dropped afterwards."""
    name = f"app_{secrets.token_hex(4)}"
    password = secrets.token_hex(16)
    quoted = f'"{name}"'
    try:
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f"CREATE ROLE {quoted} LOGIN PASSWORD '{password}'"))
    except sa.exc.ProgrammingError as exc:
        pytest.skip(f"the test server's role cannot create roles: {exc.orig}")
    role = Role(quoted, make_url(pg_url).set(username=name, password=password))
    try:
        probe = role.engine()
        try:
            with probe.connect():
                pass
        except sa.exc.OperationalError as exc:
            pytest.skip(f"role {name} cannot log in to this server: {exc.orig}")
        finally:
            probe.dispose()
        yield role
    finally:
        drop_role(pg_engine, pg_server.admin, quoted)
