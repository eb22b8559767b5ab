"""Fixtures of the logical backup tests, loaded with ``pytest_plugins``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from logical_support import LARGE_OBJECT, execute

from pgwarden.backup.storage import LocalStorage
from pgwarden.testing.servers import TestServer


@pytest.fixture
def source_url(seeded_url: str) -> str:
    """Return a seeded learnhub database that also holds a large object."""
    execute(seeded_url, f"SELECT lo_from_bytea(0, '\\x{LARGE_OBJECT.hex()}'::bytea)")
    return seeded_url


@pytest.fixture
def target_url(pg_server: TestServer) -> Iterator[str]:
    """Yield a new, empty database to restore into."""
    name = pg_server.create_database(template="template0")
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def backups(tmp_path: Path) -> LocalStorage:
    """Return an empty local backup storage."""
    return LocalStorage(tmp_path / "backups")
