"""Shared fixtures. The server fixtures (pg_server, pg_url, pg_engine) come from
pgwarden's own pytest plugin, pgwarden.testing.plugin."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pgwarden.testing.servers import TestServer

# Variables that would make a test depend on the machine it runs on.
_ISOLATED = [
    "DATABASE_URL", "DATABASE_REPLICA_URL", "DB_POOL_SIZE", "DB_MAX_OVERFLOW",
    "DB_POOL_TIMEOUT", "DB_POOL_RECYCLE", "DB_ECHO", "PGWARDEN_CONFIG",
    "PGWARDEN_LOG_FORMAT", "PGWARDEN_LOG_LEVEL", "PGWARDEN_DATA_DIR",
    "PGWARDEN_SERVER_PORT", "PGWARDEN_STATEMENT_TIMEOUT", "PGWARDEN_APPLICATION_NAME",
    "PGWARDEN_CONNECT_TIMEOUT", "PGWARDEN_ENCRYPTION_KEYS", "LEARNHUB_APP_URL",
    "LEARNHUB_APP_PASSWORD_FILE",
]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run each test in an empty working directory with no pgwarden settings set."""
    for name in _ISOLATED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """Yield a fresh directory an embedded server (run as any user) can live in."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="pgwarden-srv-"))
    os.chmod(path, 0o711)  # noqa: S103 - search only, no listing
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- learnhub databases: migrated, or migrated and seeded, each cloned per test from a
# template built once per session.

# The seeded template's parameters; a test seeding again with them gets the same rows.
SEED_ARGS: dict[str, Any] = {
    "scale": 0.05,
    "seed": 7,
    "anchor": datetime(2026, 11, 1, tzinfo=UTC),
}


@pytest.fixture(scope="session")
def seed_args() -> dict[str, Any]:
    """Return the seed parameters of the seeded template."""
    return dict(SEED_ARGS)


@pytest.fixture(scope="session")
def learnhub_app_role(pg_server: TestServer) -> Iterator[str]:
    """Yield the name of the role learnhub's API connects as in this session, then drop it.

    Roles belong to the whole server, which other sessions may share (PGWARDEN_TEST_DSN):
    a name of this session's own, and its own password, leave any ``learnhub_app``
    there alone. The migrations and the app read both from the environment.
    """
    import secrets

    import sqlalchemy as sa

    name = f"learnhub_app_{secrets.token_hex(4)}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEARNHUB_APP_ROLE", name)
        patch.setenv("LEARNHUB_APP_PASSWORD", secrets.token_urlsafe(24))
        yield name
    # The databases holding its grants are gone by now (they were set up after it).
    with pg_server.admin.connect() as conn:
        try:
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {name}"))
        except sa.exc.DBAPIError as exc:
            warnings.warn(f"could not drop the test role {name}: {exc.orig}", stacklevel=1)


@pytest.fixture(scope="session")
def migrated_template(pg_server: TestServer, learnhub_app_role: str) -> Iterator[str]:
    """Yield the name of a template database migrated to head."""
    from learnhub.migrate import upgrade

    name = pg_server.create_database()
    upgrade(pg_server.url(name))
    yield name
    pg_server.drop_database(name)


@pytest.fixture(scope="session")
def seeded_template(pg_server: TestServer, migrated_template: str) -> Iterator[str]:
    """Yield the name of a template database migrated and seeded at a small scale."""
    from learnhub.seed import seed

    name = pg_server.create_database(template=migrated_template)
    seed(pg_server.url(name), **SEED_ARGS)
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def learnhub_url(pg_server: TestServer, migrated_template: str) -> Iterator[str]:
    """Yield the URL of a fresh migrated, empty learnhub database."""
    name = pg_server.create_database(template=migrated_template)
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture
def seeded_url(pg_server: TestServer, seeded_template: str) -> Iterator[str]:
    """Yield the URL of a fresh seeded learnhub database."""
    name = pg_server.create_database(template=seeded_template)
    yield pg_server.url(name)
    pg_server.drop_database(name)
