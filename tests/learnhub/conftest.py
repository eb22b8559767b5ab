"""learnhub databases for tests: migrated, or migrated and seeded, each cloned per test
from a template built once per session."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from pgwarden.testing.servers import TestServer

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
def migrated_template(pg_server: TestServer) -> Iterator[str]:
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
