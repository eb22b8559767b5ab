"""Fixtures of the maintenance tests: the test database, to set up and inspect."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from maintain_support import Database


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    """Yield the test database behind ``pg_url`` and ``pg_engine``."""
    database = Database(pg_url)
    try:
        yield database
    finally:
        database.dispose()
